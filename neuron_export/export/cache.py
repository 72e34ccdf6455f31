"""The compile cache: a finished artifact stored under a key of everything that determines it.

A second export with the same model files, task, shapes, options, backend, compiler and torch
copies the stored artifact instead of compiling. Entries are written atomically (built in a
temporary folder, then renamed) and carry a SHA-256 of every file; a file that no longer
matches is reported, the entry deleted and the model compiled again, never loaded.

Location: $NEURON_EXPORT_CACHE, else ~/.cache/neuron_export/compiled. (`--cache_dir` is the
Hugging Face download cache, a different thing.)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..version import __version__
from ..artifact import MANIFEST, Manifest, publish, remove_tree, staging, write_json
from ..artifact.folders import clean_stale
from ..model_files import contained_files
from ..errors import NeuronExportError, first_line
from ..options import SHAPE_FIELDS, ExportOptions

log = logging.getLogger("neuron_export")

CACHE_ENV = "NEURON_EXPORT_CACHE"
# Bump when the key or the entry layout changes: older entries are then simply never hit.
CACHE_FORMAT = 2  # 2: entries' manifests name their key
ENTRY_RECORD = "entry.json"
ENTRY_ARTIFACT = "artifact"
ENTRY_NAME = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20

# ExportOptions fields left out of the key because they do not change the compiled artifact.
NOT_IN_KEY = frozenset(
    {
        "force",  # what happens to an existing OUTPUT
        "use_cache",  # whether to use this cache at all
        "cache_dir",  # where hub downloads go; the downloaded files' digest is in the key
        "trust_remote_code",  # a permission; the model's code files are in the digest
        "compiler_workdir",  # the cache is bypassed when set: the compiler's files are the point
        "backend",  # replaced by the resolved backend ("auto" -> inductor, ...)
        "task",  # replaced by the resolved task
        *SHAPE_FIELDS,  # replaced by the resolved shapes (defaults filled in, ignored ones dropped)
        "length_histogram",  # the buckets it chose are in the resolved shapes
    }
)


class CorruptEntry(Exception):
    """A cache entry whose files do not match the checksums recorded when it was stored, or whose
    artifact is not the one its key asks for."""


def _check_entry_manifest(manifest: Manifest, key: str, expected: dict[str, Any]) -> None:
    stored_for = (manifest.compile_cache or {}).get("key")
    if stored_for != key:
        raise CorruptEntry(f"its artifact was stored for another key ({str(stored_for)[:12]})")
    wrong = [name for name, value in expected.items() if getattr(manifest, name) != value]
    if wrong:
        raise CorruptEntry(f"its artifact has another {', '.join(wrong)} than this export asks for")


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neuron_export" / "compiled"


def hash_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _copy_hashing(source: Path, target: Path) -> str:
    """Copy a file and return the sha256 of the bytes copied (one read for both)."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def _artifact_files(folder: Path) -> list[Path]:
    """Files of a folder, relative, sorted; hidden files and folders (demo markers, .git, ...) skipped."""
    return sorted(
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


@dataclass
class CacheEntry:
    key: str
    path: Path
    record: dict[str, Any]

    @property
    def size(self) -> int:
        return int(self.record.get("size", 0))


class CompileCache:
    def __init__(self, root: Optional[Path] = None):
        self.root = Path(root) if root is not None else cache_root()

    # ---- the key --------------------------------------------------------------------------

    def key(self, model_folders: Path | list[Path], library: str, task: str, shapes: dict[str, int], backend,
            options: ExportOptions) -> str:
        """sha256 of everything that determines the artifact; `options` as the export normalized them."""
        folders = [model_folders] if isinstance(model_folders, Path) else list(model_folders)
        options_in_key = {k: v for k, v in options.to_dict().items() if k not in NOT_IN_KEY}
        if options.auto_cast == "none":
            options_in_key["auto_cast_type"] = None  # ignored without auto-cast
        fields = {
            "format": CACHE_FORMAT,
            "tool": __version__,
            "model_files": [self.files_digest(folder) for folder in folders],
            "library": library,
            "task": task,
            "shapes": shapes,
            "backend": backend.name,
            "compiler": backend.compiler_version(),
            "torch": torch.__version__,
            "options": options_in_key,
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()

    @staticmethod
    def files_digest(folder: Path) -> str:
        """One digest of every (non-hidden) file of a model folder: config, weights, tokenizer, pooling.
        Every byte is hashed each time: a size and mtime would miss weights edited in place."""
        total = hashlib.sha256()
        files = sorted(p.relative_to(folder) for p in contained_files(folder))  # no link out of the model folder
        for relative in files:
            if not any(part.startswith(".") for part in relative.parts):  # demo markers, .git, ...
                total.update(f"{relative.as_posix()}\0{hash_file(folder / relative)}\n".encode())
        return total.hexdigest()

    # ---- lookup and store -----------------------------------------------------------------

    def restore(self, key: str, destination: Path, expected: dict[str, Any]) -> Optional[Manifest]:
        """Copy the entry's artifact into the empty folder `destination`, verifying every file, and
        check that its manifest was stored for `key` and has the `expected` fields (task, shapes, ...).
        Returns its manifest, or None on a miss; a corrupt or mismatched entry is deleted (and is a miss)."""
        entry = self.root / key
        if not entry.is_dir():
            return None
        try:
            record = self._read_record(entry)
            for relative, checksum in record["checksums"].items():
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                source = entry / ENTRY_ARTIFACT / relative
                if not source.is_file():
                    raise CorruptEntry(f"{relative} is missing")
                if _copy_hashing(source, target) != checksum:
                    raise CorruptEntry(f"{relative} does not match its checksum")
            manifest = Manifest.read(destination)
            _check_entry_manifest(manifest, key, expected)
            return manifest
        except OSError as error:  # unreadable cache folder, entry deleted meanwhile: just compile
            log.warning("Warning: could not read compile cache entry %s (%s); compiling", key[:12], first_line(error))
            return None
        except (CorruptEntry, NeuronExportError) as error:
            log.warning("Warning: compile cache entry %s is corrupt (%s); deleted it, compiling again", key[:12], error)
            remove_tree(entry)
            return None

    def store(self, key: str, artifact: Path) -> None:
        """Store a finished artifact folder under `key` (atomically; an existing entry is kept)."""
        entry = self.root / key
        if entry.is_dir():
            return
        clean_stale(self.root)  # stores and removals that were killed
        try:
            with staging(entry) as temporary:
                self._fill_entry(temporary, key, artifact)
                publish(temporary, entry, replace=False)  # another export stored the same key first: keep that one
            log.info("Stored in the compile cache (%s)", key[:12])
        except (OSError, NeuronExportError) as error:
            # A full disk or a read-only cache must not fail an export that succeeded.
            log.warning("Warning: could not store the artifact in the compile cache %s: %s", self.root, first_line(error))

    @staticmethod
    def _fill_entry(temporary: Path, key: str, artifact: Path) -> None:
        """The entry's files: a checksummed copy of the artifact and its record."""
        (temporary / ENTRY_ARTIFACT).mkdir(parents=True)
        checksums, size = {}, 0
        for relative in _artifact_files(artifact):
            target = temporary / ENTRY_ARTIFACT / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            checksums[relative.as_posix()] = _copy_hashing(artifact / relative, target)
            size += target.stat().st_size
        manifest = Manifest.read(artifact)
        write_json(temporary / ENTRY_RECORD, {
            "format": CACHE_FORMAT,
            "key": key,
            "stored": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "size": size,
            "source": manifest.source,
            "task": manifest.task,
            "backend": manifest.backend,
            "shapes": manifest.shapes,
            "checksums": checksums,
        })

    @staticmethod
    def _read_record(entry: Path) -> dict[str, Any]:
        try:
            record = json.loads((entry / ENTRY_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CorruptEntry(f"{ENTRY_RECORD} unreadable: {first_line(error)}") from None
        checksums = record.get("checksums") if isinstance(record, dict) else None
        if not isinstance(checksums, dict) or MANIFEST not in checksums:
            raise CorruptEntry(f"{ENTRY_RECORD} lists no checksums")
        return record

    # ---- listing and clearing -------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Stored entries, newest first (an entry whose record is unreadable is listed as such)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            if path.is_dir() and ENTRY_NAME.match(path.name):
                try:
                    record = self._read_record(path)
                except CorruptEntry as error:
                    record = {"corrupt": str(error)}
                found.append(CacheEntry(path.name, path, record))
        return sorted(found, key=lambda e: e.record.get("stored", ""), reverse=True)

    def clear(self) -> tuple[int, int]:
        """Delete every entry (and leftovers of killed stores); returns (entries, bytes).
        Only what this cache wrote is deleted, whatever else the folder holds; a store in progress
        in another process is left alone."""
        if not self.root.is_dir():
            return 0, 0
        entries = self.entries()
        for entry in entries:
            remove_tree(entry.path)
        clean_stale(self.root)
        return len(entries), sum(e.size for e in entries)
