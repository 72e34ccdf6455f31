"""Folders written once: built in a temporary sibling, then renamed into place.

Artifacts, compile cache entries and demo models all use this, so a failed, interrupted or
concurrent writer never leaves a half-written folder under the final name. Temporary and trash
siblings carry the writer's pid and host in their name, so leftovers of a dead writer can be told apart
and removed (clean_stale) without ever touching a live writer's folder, also on storage shared by
several hosts (a compile cache that every worker of a farm uses): another host's pid says nothing here.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ..errors import ArtifactError, NeuronExportError, first_line
from .manifest import TOOL_MARKER, Manifest

TEMPORARY, TRASH = "tmp", "trash"
# .NAME.PURPOSE-PID-RANDOM[@HOST], as sibling() names them (no host: written by an earlier version, on this host)
SIBLING_NAME = re.compile(rf"^\.(?P<name>.+)\.(?:{TEMPORARY}|{TRASH})-(?P<pid>\d+)-[0-9a-f]{{8}}(?:@(?P<host>[^@/]+))?$")
# A process's start time (from its boot-relative start tick) and a file's ctime come from two
# clocks; boot time is known to the second only. A process that started within this margin
# after a folder was last changed counts as its possible owner: kept, never removed by mistake.
CLOCK_SLACK_S = 2.0
# Errors that mean "cannot write here", whatever the file: said in one line, never a traceback.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"


def sibling(final: Path, purpose: str) -> Path:
    """A hidden sibling of `final` for a temporary or trash copy: .NAME.PURPOSE-PID-RANDOM@HOST."""
    return final.parent / f".{final.name}.{purpose}-{os.getpid()}-{uuid.uuid4().hex[:8]}@{_HOST}"


def remove_tree(path: Path) -> None:
    """Rename aside, then delete: a concurrent reader never sees a half-deleted folder under its name."""
    trash = sibling(path, TRASH)
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A temporary sibling of `final` to build in (not created yet: the builder makes it); removed
    unless it was published."""
    final.parent.mkdir(parents=True, exist_ok=True)
    folder = sibling(final, TEMPORARY)
    try:
        yield folder
    finally:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)


def publish(folder: Path, final: Path, replace: bool) -> bool:
    """Rename a built folder to `final`. With replace, an existing `final` is swapped out and removed;
    without, an existing one wins (another writer was first) and False is returned."""
    if final.exists():
        if not replace:
            return False
        old = sibling(final, TRASH)
        os.replace(final, old)
        os.replace(folder, final)
        shutil.rmtree(old, ignore_errors=True)
        return True
    try:
        os.replace(folder, final)
    except OSError:
        if not final.exists():
            raise
        return False  # another writer published the same folder first
    return True


def clean_stale(parent: Path) -> list[Path]:
    """Remove the temporary and trash siblings in `parent` whose writer is dead (killed, crashed);
    a live writer's folder is never touched. Returns what was removed."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:  # no folder (yet), or not readable: nothing of ours to clean
        return removed
    for path in entries:
        match = SIBLING_NAME.match(path.name)
        if match is None or path.is_symlink() or not path.is_dir() or match["host"] not in (None, _HOST):
            continue  # not ours, or another host's writer: whether it runs cannot be told from here
        try:
            changed = path.stat().st_ctime
        except FileNotFoundError:
            continue
        if not writer_alive(int(match["pid"]), changed):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def writer_alive(pid: int, changed: float) -> bool:
    """Whether process `pid` may still own a folder last changed at `changed` (a ctime): it runs,
    and it started before that change (else the pid was reused by a later process). Unsure: alive."""
    if pid == os.getpid():
        return True
    try:
        import psutil
    except ImportError:  # the engine runs without psutil: only "no such process" counts as dead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= changed + CLOCK_SLACK_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def check_output_dir(output: Path, force: bool, protected: Sequence[Path] = ()) -> None:
    """Refuse before any work if OUTPUT exists (without --force), is something --force must not delete
    (anything but an artifact this tool wrote), or is, holds or lies in one of the `protected` model folders."""
    check_apart(output, protected)
    if not output.exists():
        return
    if not output.is_dir():
        raise NeuronExportError(f"{output} exists and is a file; choose another output folder")
    if not force:
        raise NeuronExportError(f"{output} already exists; pass --force to replace it")
    if not any(output.iterdir()):
        return
    try:
        tool = Manifest.read(output).tool
    except ArtifactError:
        tool = ""
    if not tool.startswith(TOOL_MARKER):
        raise NeuronExportError(
            f"{output} is not an artifact written by neuron-export; --force only replaces those "
            "(choose another output folder)"
        )


def check_apart(output: Path, protected: Sequence[Path]) -> None:
    """OUTPUT must not be, contain or lie inside a model folder it is compiled from."""
    target = output.expanduser().resolve()
    for folder in protected:
        model = Path(folder).expanduser().resolve()
        if target == model or model.is_relative_to(target) or target.is_relative_to(model):
            where = "is" if target == model else "contains" if model.is_relative_to(target) else "lies inside"
            raise NeuronExportError(
                f"the output folder {output} {where} the model folder {folder}; write the artifact somewhere else"
            )


def inside(folder: Path, relative: str) -> Path:
    """`folder / relative`, refusing a name that leads outside the folder (a manifest is untrusted data)."""
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ArtifactError(f"{folder} is not a valid artifact: {relative!r} points outside it")
    return path


def write_error(error: OSError, where: Path) -> Optional[NeuronExportError]:
    """The one-line error for an OSError that means `where` cannot be written (disk full, read-only,
    no permission); None for other errors."""
    if error.errno not in WRITE_ERRNOS:
        return None
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
              errno.EROFS: "it is on a read-only file system"}.get(error.errno, error.strerror or first_line(error))
    # A file of its own temporary folder is named as OUTPUT; another file (a compiler's cache) as itself.
    file = str(error.filename or "")
    what = file if file and not file.startswith(str(where.parent)) else where
    return NeuronExportError(f"cannot write {what}: {reason}; nothing was written")


class GuardedFile(io.RawIOBase):
    """A file for C++ serializers (torch.jit.save, AOTInductor packages). They abort the whole
    process when a write fails (a full disk gives exit 134 and a C++ trace); this file records the
    first OSError and accepts the rest, and `guarded_file` raises it once the serializer is done."""

    def __init__(self, path: Path):
        super().__init__()
        self._file = open(path, "wb")
        self.error: Optional[OSError] = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if self.error is None:
            try:
                self._file.write(data)
            except OSError as error:
                self.error = error
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        if self.error is None and not self._file.closed:
            try:
                self._file.flush()
            except OSError as error:
                self.error = error

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            try:
                self._file.close()
            except OSError as error:
                self.error = self.error or error
        super().close()


@contextmanager
def guarded_file(path: Path) -> Iterator[GuardedFile]:
    """Open `path` for a C++ serializer; an OSError of any of its writes is raised here, as Python's."""
    file = GuardedFile(path)
    try:
        yield file
    finally:
        file.close()
    if file.error is not None:
        raise OSError(file.error.errno, file.error.strerror, str(path))
