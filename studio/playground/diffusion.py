"""The image-generation view: a Stable Diffusion (XL) pipeline artifact, optionally next to the eager
diffusers pipeline on the same request and seed."""

from __future__ import annotations

import time
from typing import Optional

import torch

from neuron_export.reference import reference_pipeline

from .core import LoadedArtifact, RunStats, bucket_note, require


def max_images(loaded: LoadedArtifact) -> int:
    """Images one prompt can ask for: what the pipeline was compiled for (more with a dynamic batch)."""
    compiled = loaded.manifest.batch_size * int(loaded.shapes.get("num_images_per_prompt", 1))
    return max(compiled, 4) if loaded.manifest.dynamic_batch else compiled


def generate_images(
    loaded: LoadedArtifact,
    prompt: str,
    negative_prompt: str = "",
    steps: int = 20,
    guidance: float = 7.5,
    seed: int = 0,
    num_images: int = 1,
    compare_eager: bool = True,
    resolution: Optional[tuple[int, int]] = None,
) -> tuple[list, RunStats]:
    """Images from the compiled pipeline, timed per image; with compare_eager, the eager pipeline runs the
    same request (same seed) for its time and the largest pixel difference (0..1 scale). resolution:
    (height, width), one of a bucketed pipeline's (default: the largest compiled one)."""
    prompt = require(prompt, "a prompt")
    height, width = resolution or (loaded.shapes["height"], loaded.shapes["width"])
    request = {
        "negative_prompt": negative_prompt.strip() or None, "num_inference_steps": int(steps),
        "guidance_scale": float(guidance), "num_images_per_prompt": int(num_images),
        "height": int(height), "width": int(width),
    }
    with torch.inference_mode():
        started = time.perf_counter()
        images = loaded.model(prompt, seed=int(seed), **request).images
        stats = RunStats((time.perf_counter() - started) / len(images), unit="image")
        stats.notes += [note] if (note := bucket_note(loaded.model.unet.compiled)) else []
        if compare_eager and loaded.eager_source is not None:
            if loaded.eager is None:
                loaded.eager = reference_pipeline(loaded.manifest, loaded.eager_source)
            started = time.perf_counter()
            eager_images = loaded.eager(prompt, generator=torch.Generator().manual_seed(int(seed)), **request).images
            stats.eager_s = (time.perf_counter() - started) / len(eager_images)
            stats.max_abs_diff = max(_pixel_diff(a, b) for a, b in zip(images, eager_images))
    return images, stats


def _pixel_diff(first, second) -> float:
    import numpy

    return float(numpy.abs(numpy.asarray(first, dtype=numpy.float32) - numpy.asarray(second, dtype=numpy.float32)).max() / 255)
