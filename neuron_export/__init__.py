"""neuron_export: compile Hugging Face models ahead of time (AWS Neuron, or portable AOTInductor /
TorchScript builds), validate them against eager PyTorch, and run them like transformers models."""

from .version import __version__  # noqa: E402
from .artifact import CompiledModel, Manifest, load_artifact, read_manifest, read_validation  # noqa: E402
from .errors import NeuronExportError  # noqa: E402
from .export import ExportResult, export  # noqa: E402
from .options import ExportOptions  # noqa: E402
from .registry import GENERATION_CLASSES, PIPELINE_CLASSES, SENTENCE_TRANSFORMERS, TASKS, supported_tasks  # noqa: E402

# The inference classes and pipeline() import transformers / diffusers (seconds): loaded on first use.
# Their names come from the registry: one class per task, one pipeline class per diffusion pipeline.
_LAZY = {
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

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
