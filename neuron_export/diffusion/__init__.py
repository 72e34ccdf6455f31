"""Stable Diffusion and SDXL: component-wise export and the pipelines that run the compiled components.

The pipeline classes import diffusers' pipelines (slow): they load on first access.
"""

from .export import export_diffusion_pipeline

PIPELINE_CLASSES = (
    "NeuronStableDiffusionPipeline",
    "NeuronStableDiffusionImg2ImgPipeline",
    "NeuronStableDiffusionXLPipeline",
    "NeuronStableDiffusionXLImg2ImgPipeline",
)

__all__ = ["export_diffusion_pipeline", *PIPELINE_CLASSES]


def __getattr__(name: str):
    if name in PIPELINE_CLASSES:
        from . import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
