"""Artifact folders: the typed manifest, write-once folders, and loading compiled models safely.

The manifest and folder helpers import no torch; CompiledModel / load_artifact (which do) load on
first use, so the cheap parts (the demo catalog) stay cheap.
"""

from .folders import check_output_dir, inside, publish, remove_tree, sibling, staging
from .manifest import (
    MANIFEST,
    TOOL_MARKER,
    VALIDATION_REPORT,
    BucketRecord,
    Bucketing,
    Manifest,
    TensorSpec,
    Validation,
    read_manifest,
    read_validation,
    write_json,
)

_LOADING = ("CompiledModel", "load_artifact", "BucketedModel")


def __getattr__(name: str):
    if name in _LOADING:
        from . import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MANIFEST", "VALIDATION_REPORT", "TOOL_MARKER", "Manifest", "TensorSpec", "Validation", "BucketRecord", "Bucketing",
    "CompiledModel", "BucketedModel",
    "load_artifact", "read_manifest", "read_validation", "write_json", "check_output_dir", "inside", "publish",
    "remove_tree", "sibling", "staging",
]
