"""neuron_export: compile Hugging Face models ahead of time (AWS Neuron, or portable AOTInductor /
TorchScript builds), validate them against eager PyTorch, and run them like transformers models."""

__version__ = "0.1.0"

from .artifact import CompiledModel, load_artifact, read_manifest, read_validation  # noqa: E402
from .errors import NeuronExportError  # noqa: E402
from .exporter import ExportResult, export  # noqa: E402
from .options import ExportOptions  # noqa: E402
from .registry import supported_tasks  # noqa: E402

# The inference classes and pipeline() import transformers (~1 s): loaded on first use only.
_LAZY = {
    "pipeline": "pipelines",
    **{
        name: "modeling"
        for name in (
            "NeuronModel",
            "NeuronModelForFeatureExtraction",
            "NeuronModelForSentenceTransformers",
            "NeuronModelForMaskedLM",
            "NeuronModelForSequenceClassification",
            "NeuronModelForTokenClassification",
            "NeuronModelForQuestionAnswering",
            "NeuronModelForMultipleChoice",
            "NeuronModelForImageClassification",
        )
    },
    # Stable Diffusion (XL) pipelines: import diffusers' pipelines.
    **{
        name: "diffusion"
        for name in (
            "NeuronStableDiffusionPipeline",
            "NeuronStableDiffusionImg2ImgPipeline",
            "NeuronStableDiffusionXLPipeline",
            "NeuronStableDiffusionXLImg2ImgPipeline",
        )
    },
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
    "supported_tasks",
    "load_artifact",
    "read_manifest",
    "read_validation",
    "CompiledModel",
    "NeuronExportError",
    *_LAZY,
]
