"""Stable Diffusion and SDXL at run time: the Neuron*Pipeline classes (registry/diffusion.py) that
run the compiled components. They import diffusers' pipelines (slow): they load on first access."""

from ..registry import PIPELINE_CLASSES

__all__ = list(PIPELINE_CLASSES)


def __getattr__(name: str):
    if name in PIPELINE_CLASSES:
        from . import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
