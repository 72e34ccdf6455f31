"""Folders written once: built in a temporary sibling, then renamed into place.

Artifacts, compile cache entries and demo models all use this, so a failed, interrupted or
concurrent writer never leaves a half-written folder under the final name. Temporary and trash
siblings carry the writer's pid in their name, so leftovers of a dead writer can be told apart.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ArtifactError, NeuronExportError
from .manifest import MANIFEST

TEMPORARY, TRASH = "tmp", "trash"


def sibling(final: Path, purpose: str) -> Path:
    """A hidden sibling of `final` for a temporary or trash copy: .NAME.PURPOSE-PID-RANDOM."""
    return final.parent / f".{final.name}.{purpose}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


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


def inside(folder: Path, relative: str) -> Path:
    """`folder / relative`, refusing a name that leads outside the folder (a manifest is untrusted data)."""
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ArtifactError(f"{folder} is not a valid artifact: {relative!r} points outside it")
    return path
