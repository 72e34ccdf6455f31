"""The example request of a pipeline class, derived from its registry entry (DiffusionPipelineSpec):
the prompt, the images it takes (init image, mask, control image), strength and guidance.

The end-to-end image check, the benchmark and the tests run the same request on the compiled and the
eager pipeline, so that every variant is checked and timed the way it is used, without a hub download.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, Optional

import diffusers
import numpy as np
import torch

from ..registry.diffusion import DIFFUSION_TASKS, DiffusionPipelineSpec

if TYPE_CHECKING:
    from ..artifact import Manifest

PROMPT = "a photo of an astronaut riding a horse on the moon"
SEED = 0
STRENGTH = 0.75  # of the steps asked for, img2img and inpainting run the last 75%


def example_image(kind: str, height: int, width: int, seed: int = SEED, variant: int = 0):
    """A deterministic PIL image of one kind: "init" a smooth colour gradient with some texture, "mask" a white
    rectangle (the middle half) on black, "control" white edges (a grid of lines and a circle) on black;
    variant: another control image (the grid shifted, the circle smaller) for a second ControlNet."""
    from PIL import Image

    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "mask":
        inside = (abs(rows - height / 2) < height / 4) & (abs(columns - width / 2) < width / 4)
        return Image.fromarray((inside * 255).astype(np.uint8), mode="L")
    if kind == "control":
        radius = np.hypot(rows - height / 2, columns - width / 2)
        shift = 5 * variant
        edges = ((rows + shift) % 16 < 1) | ((columns + shift) % 16 < 1) | (abs(radius - min(height, width) / (3 + variant)) < 1)
        return Image.fromarray(np.repeat((edges * 255).astype(np.uint8)[..., None], 3, axis=-1))
    if kind != "init":
        raise ValueError(f"no example image of kind {kind!r}: init, mask or control")
    texture = np.random.default_rng(seed).uniform(-0.1, 0.1, (height, width, 3)).astype(np.float32)
    gradient = np.stack([rows / max(height - 1, 1), columns / max(width - 1, 1), 1 - rows / max(height - 1, 1)], axis=-1)
    return Image.fromarray((np.clip(gradient + texture, 0, 1) * 255).round().astype(np.uint8))


def example_request(spec: DiffusionPipelineSpec, height: int, width: int, steps: int, seed: int = SEED,
                    prompt: str = PROMPT, controlnets: int = 1) -> dict[str, Any]:
    """diffusers __call__ keywords for one run of the spec's pipeline at this size: the same on the compiled
    and the eager pipeline (the generator is created here, so call it once per pipeline); controlnets: how
    many the pipeline has (controlnet_count), several take a list of control images."""
    request: dict[str, Any] = {
        "prompt": prompt, "num_inference_steps": steps, "guidance_scale": spec.guidance_scale,
        "generator": torch.Generator().manual_seed(seed), **dict(spec.extra_call),
    }
    for argument, kind in spec.images:
        several = kind == "control" and controlnets > 1  # one control image per ControlNet
        request[argument] = ([example_image(kind, height, width, seed, variant) for variant in range(controlnets)]
                             if several else example_image(kind, height, width, seed))
    if spec.strength:
        request["strength"] = STRENGTH
    if "height" in inspect.signature(getattr(diffusers, spec.diffusers_class).__call__).parameters:
        request.update(height=height, width=width)  # img2img pipelines take the size of their init image
    return request


def artifact_pipeline_spec(manifest: "Manifest", class_name: Optional[str] = None) -> DiffusionPipelineSpec:
    """The pipeline a compiled pipeline folder runs: class_name (a Neuron*Pipeline or diffusers class of its
    task; another is a one-line error), by default the one its source was saved as (an SDXL refiner is an
    img2img pipeline), else its task's primary. Compiled without classifier-free guidance (SDXL Turbo), its
    requests pass guidance_scale 0."""
    task = DIFFUSION_TASKS[manifest.task]
    if class_name is not None:
        spec = task.pipeline(class_name)
    else:
        spec = next((p for p in task.pipelines if p.diffusers_class == manifest.pipeline_class), task.primary)
    if not manifest.options.classifier_free_guidance and spec.guidance_scale > 1:
        spec = dataclasses.replace(spec, guidance_scale=0.0)
    return spec


def controlnet_count(pipe) -> int:
    """How many ControlNets a diffusers pipeline (compiled or eager) has: a MultiControlNetModel's nets, else 1."""
    return len(getattr(getattr(pipe, "controlnet", None), "nets", None) or [None])
