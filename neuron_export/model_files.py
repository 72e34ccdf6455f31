"""Reading a model folder's files as untrusted input: JSON of the expected kind, and never a file
that a symlink places outside the model folder (`shadow -> /etc/shadow` is refused, not copied).

Everything that reads, hashes or copies a model folder's files goes through here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import NeuronExportError, first_line

# Hugging Face hub cache layout: models--OWNER--NAME/snapshots/REVISION/FILE -> ../../blobs/HASH
HUB_REPO_PREFIXES = ("models--", "datasets--", "spaces--")


def read_json(path: Path, kind: type = dict) -> Any:
    """A JSON file that must hold an object (or, with kind=list, an array); one-line error otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NeuronExportError(f"cannot read {path}: {first_line(error)}") from None
    if not isinstance(data, kind):
        expected = "object" if kind is dict else "array"
        raise NeuronExportError(f"{path} must hold a JSON {expected}, not {_json_kind(data)}")
    return data


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def model_root(folder: Path) -> Path:
    """The folder a model's files may live in: the folder itself, or for a Hugging Face hub snapshot
    (whose files link into the repo's blobs/) the repo's cache folder."""
    folder = Path(folder).resolve()
    for path in (folder, *folder.parents):
        if path.parent.name == "snapshots" and path.parent.parent.name.startswith(HUB_REPO_PREFIXES):
            return path.parent.parent
    return folder


def contained_files(folder: Path) -> Iterator[Path]:
    """Every file under `folder` (links to folders not followed; hidden folders such as .git, which
    nothing reads, skipped), refusing a symlink whose target lies outside the model's root (model_root)."""
    folder = Path(folder)
    root = model_root(folder)
    for directory, subfolders, files in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in subfolders + files:
            path = Path(directory, name)
            if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root):
                raise NeuronExportError(
                    f"{path.relative_to(folder)} in {folder} is a link to a file outside the model folder; "
                    "refusing to read it (copy the file into the folder instead)"
                )
        for name in files:
            yield Path(directory, name)


def check_links(folder: Path) -> None:
    """Refuse a model folder with a symlink that leads outside it (see contained_files)."""
    for _ in contained_files(folder):
        pass
