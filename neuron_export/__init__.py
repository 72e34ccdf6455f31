"""neuron_export: compile Hugging Face models ahead of time (AWS Neuron, or portable AOTInductor /
TorchScript builds), validate them against eager PyTorch, and run them like transformers models."""

import sys
import types

from .version import __version__  # noqa: E402
from .artifact import Manifest, read_manifest, read_validation  # noqa: E402
from .errors import NeuronExportError  # noqa: E402
from .options import ExportOptions  # noqa: E402
from .registry import GENERATION_CLASSES, PIPELINE_CLASSES, SENTENCE_TRANSFORMERS, TASKS, supported_tasks  # noqa: E402

# The inference classes and pipeline() import transformers / diffusers (seconds): loaded on first use.
# Their names come from the registry: one class per task, one pipeline class per diffusion pipeline.
_LAZY = {
    # export() and loading an artifact import torch (a second): also on first use.
    "export": "export",
    "ExportResult": "export",
    "CompiledModel": "artifact",
    "load_artifact": "artifact",
    "pipeline": "pipelines",
    "NeuronModel": "modeling",
    **{spec.model_class: "modeling" for spec in TASKS.values()},
    SENTENCE_TRANSFORMERS.model_class: "modeling",
    **{name: "diffusion" for name in PIPELINE_CLASSES},
    **{name: "generation" for name in GENERATION_CLASSES},
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps `neuron_export.export` the function: importing the subpackage neuron_export.export (which a
    lazy export() no longer does first) would otherwise rebind the name to the subpackage."""

    def __setattr__(self, name: str, value) -> None:
        if name == "export" and isinstance(value, types.ModuleType):
            value = value.export
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "__version__",
    "export",
    "ExportOptions",
    "ExportResult",
    "Manifest",
    "supported_tasks",
    "load_artifact",
    "read_manifest",
    "read_validation",
    "CompiledModel",
    "NeuronExportError",
    *_LAZY,
]
