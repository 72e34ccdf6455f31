"""User-facing errors: each carries one readable line; the CLI prints it and exits with its code."""


class NeuronExportError(Exception):
    """A problem with the user's input or environment, reported as one line (CLI exit code 2)."""

    exit_code = 2


class BackendUnavailableError(NeuronExportError):
    """The chosen backend cannot run on this host (missing package, device or version)."""


class ArtifactError(NeuronExportError):
    """An artifact folder is missing, corrupt, or was made for another host."""


class InputMismatchError(NeuronExportError):
    """A compiled model was called with inputs that differ from the compiled signature."""


class ValidationFailedError(NeuronExportError):
    """The compiled model's outputs differ from eager PyTorch beyond atol (artifact and report kept)."""

    exit_code = 1


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message: what a one-line error may quote of a library's error."""
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0]
    if line.endswith(":") and len(lines) > 1:  # "Validation error for field 'x':" says what comes next
        line = f"{line} {lines[1]}"
    return line[:limit]


def out_of_memory(error: BaseException) -> bool:
    """Whether an error is the host (or GPU) running out of memory: too big shapes, not a bug."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in ("can't allocate memory", "out of memory"))
