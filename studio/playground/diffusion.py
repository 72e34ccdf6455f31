"""The image-generation view: a Stable Diffusion (XL) pipeline artifact, optionally next to the eager
diffusers pipeline on the same request and seed."""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Optional

import torch

from neuron_export.reference import reference_pipeline

from .core import LoadedArtifact, RunStats, bucket_note, busy_host_note, require

OnStep = Callable[[str, int, int, Optional[float]], None]  # (side, steps done, steps, seconds per step so far)
ONE_RUN = "One run of each pipeline, time per image (a pipeline's first run also warms it up: run again for steadier figures)."


def max_images(loaded: LoadedArtifact) -> int:
    """Images one prompt can ask for: what the pipeline was compiled for (more with a dynamic batch)."""
    compiled = loaded.manifest.batch_size * int(loaded.shapes.get("num_images_per_prompt", 1))
    return max(compiled, 4) if loaded.manifest.dynamic_batch else compiled


class StepTimer:
    """diffusers' callback_on_step_end(pipeline, step, timestep, callback_kwargs) -> callback_kwargs:
    times each denoising step and calls on_step(side, steps done, steps, median seconds per step)."""

    def __init__(self, side: str, on_step: Optional[OnStep]):
        self.side, self.on_step = side, on_step
        self.stamps = [time.perf_counter()]  # the call's start, then the end of every step

    def __call__(self, pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        self.stamps.append(time.perf_counter())
        if self.on_step:
            self.on_step(self.side, step + 1, getattr(pipeline, "num_timesteps", None) or step + 1, self.per_step_s)
        return callback_kwargs

    @property
    def per_step_s(self) -> Optional[float]:
        """The median step: the first one also encodes the prompt, which the median leaves out once there are 3 steps."""
        steps = [end - start for start, end in zip(self.stamps, self.stamps[1:])]
        return statistics.median(steps) if steps else None


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
    on_step: Optional[OnStep] = None,
) -> tuple[list, RunStats]:
    """Images from the compiled pipeline, timed per image; with compare_eager, the eager pipeline runs the
    same request (same seed) for its time and the largest pixel difference (0..1 scale). resolution:
    (height, width), one of a bucketed pipeline's (default: the largest compiled one). on_step(side,
    step, steps, seconds per step) after each denoising step of either pipeline ("compiled", "eager")."""
    prompt = require(prompt, "a prompt")
    height, width = resolution or (loaded.shapes["height"], loaded.shapes["width"])
    request = {
        "negative_prompt": negative_prompt.strip() or None, "num_inference_steps": int(steps),
        "guidance_scale": float(guidance), "num_images_per_prompt": int(num_images),
        "height": int(height), "width": int(width),
    }
    load = os.getloadavg()[0]
    with torch.inference_mode():
        timer = StepTimer("compiled", on_step)
        images = loaded.model(prompt, seed=int(seed), callback_on_step_end=timer, **request).images
        stats = RunStats((time.perf_counter() - timer.stamps[0]) / len(images), unit="image", method=ONE_RUN)
        stats.seconds_per_step["compiled"] = timer.per_step_s
        stats.notes += [note] if (note := bucket_note(loaded.model.unet.compiled)) else []
        if compare_eager and loaded.eager_source is not None:
            if loaded.eager is None:
                loaded.eager = reference_pipeline(loaded.manifest, loaded.eager_source)
            timer = StepTimer("eager", on_step)
            eager_images = loaded.eager(prompt, generator=torch.Generator().manual_seed(int(seed)), callback_on_step_end=timer,
                                        **request).images
            stats.eager_s = (time.perf_counter() - timer.stamps[0]) / len(eager_images)
            stats.seconds_per_step["eager"] = timer.per_step_s
            stats.max_abs_diff = max(_pixel_diff(a, b) for a, b in zip(images, eager_images))
    if busy := busy_host_note(load):
        stats.noisy = stats.eager_s is not None
        stats.notes.append(busy)
    return images, stats


def _pixel_diff(first, second) -> float:
    import numpy

    return float(numpy.abs(numpy.asarray(first, dtype=numpy.float32) - numpy.asarray(second, dtype=numpy.float32)).max() / 255)
