"""Artifact folders: the manifest, atomic publishing, and loading a compiled model safely.

A compiled model (AOTInductor package, traced TorchScript or Neuron module) runs whatever it is
given: a wrong shape or a stride-0 tensor returns garbage silently. CompiledModel checks every
call against the manifest, makes inputs contiguous and places them, so callers never get that.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from .errors import ArtifactError, InputMismatchError, NeuronExportError, first_line

MANIFEST = "manifest.json"
VALIDATION_REPORT = "validation.json"
FORMAT_VERSION = 1


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{path} is not a compiled artifact (no {MANIFEST})")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ArtifactError(f"{file} is corrupt: {first_line(error)}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path} has manifest format {manifest.get('format_version')}, this tool reads {FORMAT_VERSION}")
    return manifest


def read_validation(path: str | Path) -> Optional[dict[str, Any]]:
    file = Path(path) / VALIDATION_REPORT
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def check_output_dir(output: Path, force: bool) -> None:
    """Refuse before any work if OUTPUT exists (without --force) or is something --force must not delete."""
    if not output.exists():
        return
    if not output.is_dir():
        raise NeuronExportError(f"{output} exists and is a file; choose another output folder")
    if not force:
        raise NeuronExportError(f"{output} already exists; pass --force to replace it")
    if any(output.iterdir()) and not (output / MANIFEST).is_file() and not (output / "model_index.json").is_file():
        raise NeuronExportError(f"{output} is a non-empty folder that is not an artifact; --force only replaces artifacts")


@contextmanager
def staging_dir(output: Path, force: bool) -> Iterator[Path]:
    """A temporary sibling of OUTPUT to build the artifact in; renamed into place only on success.

    Interrupted or failed exports remove it, so OUTPUT is never half-written, and an existing
    artifact is only replaced (with --force) once the new one is complete.
    """
    check_output_dir(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(staging: Path, output: Path, force: bool) -> None:
    check_output_dir(output, force)
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output, old)
    os.replace(staging, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class CompiledModel:
    """A loaded artifact: call with named tensors, get a dict of named output tensors."""

    def __init__(self, path: Path, manifest: dict[str, Any], runner, native_dynamic_batch: bool):
        self.path = path
        self.manifest = manifest
        self._runner = runner
        self._native_dynamic_batch = native_dynamic_batch
        self.inputs: dict[str, dict[str, Any]] = {spec["name"]: spec for spec in manifest["inputs"]}
        self.input_names = list(self.inputs)
        self.output_names: list[str] = list(manifest["outputs"])
        self.device = torch.device(manifest["device"])
        self.dynamic_batch = bool(manifest.get("dynamic_batch"))
        self.batch_size = manifest["inputs"][0]["shape"][0]

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        tensors = self.prepare(inputs)
        batch = tensors[0].shape[0]
        if self.dynamic_batch and not self._native_dynamic_batch and batch != self.batch_size:
            return self._run_in_chunks(tensors, batch)
        return self._run(tensors)

    def prepare(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Check names, shapes and dtypes against the compiled signature; contiguous, on the device."""
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.inputs]
        if missing or extra:
            raise InputMismatchError(
                f"inputs {sorted(inputs)} do not match the compiled inputs {self.input_names}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unexpected {extra})" if extra else "")
            )
        prepared = []
        batches = set()
        for name in self.input_names:
            spec, tensor = self.inputs[name], inputs[name]
            if not isinstance(tensor, torch.Tensor):
                raise InputMismatchError(f"input {name!r} must be a torch.Tensor, got {type(tensor).__name__}")
            compiled = tuple(spec["shape"])
            shape = tuple(tensor.shape)
            ok = shape == compiled or (self.dynamic_batch and len(shape) == len(compiled) and shape[1:] == compiled[1:] and shape[0] > 0)
            if not ok:
                hint = "any batch size, " if self.dynamic_batch else ""
                raise InputMismatchError(
                    f"input {name!r} has shape {shape}; the model was compiled for {compiled} ({hint}pad to the compiled shape)"
                )
            batches.add(shape[0])
            prepared.append(_convert_dtype(name, tensor, getattr(torch, spec["dtype"])).to(self.device).contiguous())
        if len(batches) > 1:
            raise InputMismatchError(f"inputs have different batch sizes {sorted(batches)}")
        return prepared

    def _run(self, tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = self._runner(*tensors)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        if len(outputs) != len(self.output_names):
            raise ArtifactError(f"the compiled model returned {len(outputs)} outputs, its manifest lists {len(self.output_names)}")
        return dict(zip(self.output_names, outputs))

    def _run_in_chunks(self, tensors: list[torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
        """Dynamic batch for backends whose compiled model has a fixed batch: run compiled-size
        chunks, padding the last one by repeating its final row, then drop the padding."""
        size = self.batch_size
        results: list[dict[str, torch.Tensor]] = []
        for start in range(0, batch, size):
            chunk = [t[start : start + size] for t in tensors]
            short = size - chunk[0].shape[0]
            if short:
                chunk = [torch.cat([c, c[-1:].expand(short, *c.shape[1:])]).contiguous() for c in chunk]
            results.append(self._run(chunk))
        return {name: torch.cat([r[name] for r in results])[:batch] for name in self.output_names}


def _convert_dtype(name: str, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Lossless-in-practice conversions within a kind (int32 ids -> int64); never float <-> int."""
    if tensor.dtype == dtype:
        return tensor
    if tensor.is_floating_point() != dtype.is_floating_point or tensor.dtype == torch.bool:
        raise InputMismatchError(f"input {name!r} has dtype {tensor.dtype}; the model was compiled for {dtype}")
    return tensor.to(dtype)


def load_artifact(path: str | Path) -> CompiledModel:
    """Load a compiled artifact, refusing clearly when this host cannot run it."""
    from .backends import get_backend

    path = Path(path)
    manifest = read_manifest(path)
    if "components" in manifest:
        raise ArtifactError(
            f"{path} is a compiled {manifest.get('task')} pipeline of {len(manifest['components'])} components; load it with "
            "neuron_export.NeuronStableDiffusionPipeline (or the XL / Img2Img variants), or one component with "
            f"load_artifact({str(path / manifest['components'][0])!r})"
        )
    try:
        backend = get_backend(manifest["backend"])
    except NeuronExportError as error:  # made by a newer tool, or a hand-edited manifest
        raise ArtifactError(f"cannot run {path} here: {error}") from None
    problem = backend.runtime_problem(manifest)
    if problem:
        raise ArtifactError(f"cannot run {path} here: {problem}")
    model_file = path / manifest["model_file"]
    if not model_file.is_file():
        raise ArtifactError(f"{path} is incomplete: {manifest['model_file']} is missing")
    try:
        runner = backend.load(model_file, manifest)
    except NeuronExportError:
        raise
    except Exception as error:
        raise ArtifactError(f"cannot load {model_file}: {first_line(error)}") from None
    return CompiledModel(path, manifest, runner, backend.native_dynamic_batch)
