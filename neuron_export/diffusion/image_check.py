"""End-to-end image check of a compiled Stable Diffusion (XL) pipeline.

Every component can pass its own atol while the pipeline's image is poor: the UNet runs once per
step on its own output, and classifier-free guidance multiplies the text half's error by
(guidance_scale - 1) and more. So after the per-component checks the export runs the whole compiled
pipeline and the eager diffusers pipeline on the same prompt, seed, scheduler and a few steps, and
holds the two images (PSNR, largest pixel difference) and the latents after every step (drift) to
thresholds that depend on auto-cast (THRESHOLDS). The step where the latents first drift too far is
where the pipeline diverged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..artifact.manifest import ImageCheck
from ..errors import NeuronExportError, first_line
from ..registry.diffusion import DiffusionPipelineSpec
from .requests import PROMPT, SEED, controlnet_count, example_request

STEPS = 4  # few: the drift shows from the first steps, and the eager side runs on the host CPU
PSNR_CAP = 100.0  # dB written for identical images (PSNR is infinite)
FOLDER = "image_check"  # in the artifact: compiled.png, eager.png, difference.npy
HEATMAP_SIDE = 256  # the stored difference map is at most this many cells a side (block maxima)


@dataclass(frozen=True)
class ImageThresholds:
    min_psnr: float  # dB
    max_pixel_diff: float  # pixels in [0, 1]
    max_latent_drift: float  # relative to the largest eager latent


# By the precision the matmuls run in. fp32: float rounding only (compiled vs eager differ by ~1e-7 on
# the portable backends), so the 8-bit image may move by at most one level. The cast types: what their
# mantissas (tf32 and fp16 10 bits, bf16 7) allow over a few steps; set from their precision, not
# measured on Inferentia (no Neuron hardware here).
THRESHOLDS = {
    "fp32": ImageThresholds(min_psnr=60.0, max_pixel_diff=1 / 255, max_latent_drift=1e-3),
    "tf32": ImageThresholds(min_psnr=35.0, max_pixel_diff=16 / 255, max_latent_drift=2e-2),
    "fp16": ImageThresholds(min_psnr=30.0, max_pixel_diff=32 / 255, max_latent_drift=5e-2),
    "bf16": ImageThresholds(min_psnr=25.0, max_pixel_diff=64 / 255, max_latent_drift=1e-1),
}


def precision_of(cast_type: Optional[str]) -> str:
    """The THRESHOLDS key of an export: its auto-cast type, fp32 without auto-cast."""
    return cast_type or "fp32"


def psnr(compiled: np.ndarray, eager: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of images with pixels in [0, 1] (PSNR_CAP when identical)."""
    mse = float(np.mean((compiled.astype(np.float64) - eager.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(1 / mse))


def latent_drift(compiled: Sequence[torch.Tensor], eager: Sequence[torch.Tensor]) -> list[float]:
    """Per step: max |compiled - eager| of the latents after it, over the largest eager latent."""
    return [float((c.float() - e.float()).abs().max() / e.float().abs().max().clamp_min(1e-12)) for c, e in zip(compiled, eager)]


def compare(compiled: np.ndarray, eager: np.ndarray, drift: list[float], precision: str, **settings: Any) -> ImageCheck:
    """The verdict on two images (H x W x C, [0, 1]) and the per-step latent drift; settings: what was run."""
    limits = THRESHOLDS[precision]
    difference = np.abs(compiled.astype(np.float64) - eager.astype(np.float64))
    over = [step for step, value in enumerate(drift, start=1) if not value <= limits.max_latent_drift]  # NaN is over
    value = psnr(compiled, eager)
    largest = float(difference.max())
    passed = value >= limits.min_psnr and largest <= limits.max_pixel_diff and not over
    return ImageCheck(passed=passed, psnr=value, max_pixel_diff=largest, mean_pixel_diff=float(difference.mean()),
                      min_psnr=limits.min_psnr, max_pixel_diff_limit=limits.max_pixel_diff,
                      max_latent_drift=limits.max_latent_drift, latent_drift=drift,
                      diverged_step=over[0] if over else None, precision=precision, **settings)


def summary_line(check: ImageCheck) -> str:
    """The CLI's one line for the check."""
    drift = f"{min(check.latent_drift):.1e}..{max(check.latent_drift):.1e}" if check.latent_drift else "none"
    line = (f"End-to-end image check ({check.steps} steps, {check.scheduler}, seed {check.seed}, {check.precision} thresholds): "
            f"PSNR {check.psnr:.1f} dB (min {check.min_psnr:g}), largest pixel difference {check.max_pixel_diff:.2g} "
            f"(max {check.max_pixel_diff_limit:.2g}), latent drift per step {drift} (max {check.max_latent_drift:g})")
    if check.passed:
        return f"{line}: passed ✓"
    return f"{line}: FAILED ✗, {divergence(check)}"


def divergence(check: ImageCheck) -> str:
    """Where the compiled pipeline left the eager one, in words."""
    steps = len(check.latent_drift)
    if check.diverged_step is not None:
        drift = check.latent_drift[check.diverged_step - 1]
        return f"diverged at step {check.diverged_step} of {steps} (latent drift {drift:.2g} > {check.max_latent_drift:g})"
    return f"the latents stayed within {check.max_latent_drift:g} over the {steps} steps, the decoded images differ"


def run_pipeline(pipe, request: dict[str, Any]) -> tuple[np.ndarray, list[torch.Tensor]]:
    """One request on one pipeline: its first image (H x W x 3, [0, 1]) and the latents after each step."""
    latents: list[torch.Tensor] = []

    def record(pipeline, step: int, timestep, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        latents.append(tensors["latents"].detach().clone())  # diffusers' callback_on_step_end signature
        return tensors

    with torch.inference_mode():
        images = pipe(**request, output_type="np", callback_on_step_end=record,
                      callback_on_step_end_tensor_inputs=["latents"]).images
    return np.asarray(images[0], dtype=np.float32), latents


def check_pipeline_images(compiled_pipe, eager_pipe, spec: DiffusionPipelineSpec, precision: str, folder: Path) -> ImageCheck:
    """Run the spec's example request (requests.py) on both pipelines at the compiled size, compare, and
    write the images into `folder` / FOLDER."""
    height, width = compiled_pipe.compiled_shapes["height"], compiled_pipe.compiled_shapes["width"]
    eager_pipe.scheduler = type(compiled_pipe.scheduler).from_config(compiled_pipe.scheduler.config)  # the artifact's
    controlnets = controlnet_count(compiled_pipe)
    try:
        compiled, compiled_latents = run_pipeline(compiled_pipe, example_request(spec, height, width, STEPS, controlnets=controlnets))
    except Exception as error:  # the whole pipeline must run: a component that cannot is a failed export
        raise NeuronExportError(f"the end-to-end image check could not run the compiled pipeline: {first_line(error)}") from None
    eager, eager_latents = run_pipeline(eager_pipe, example_request(spec, height, width, STEPS, controlnets=controlnets))
    settings = dict(prompt=PROMPT, seed=SEED, steps=STEPS, scheduler=type(compiled_pipe.scheduler).__name__,
                    guidance_scale=spec.guidance_scale, height=height, width=width, images=FOLDER)
    check = compare(compiled, eager, latent_drift(compiled_latents, eager_latents), precision, **settings)
    write_images(folder / FOLDER, compiled, eager)
    return check


def write_images(folder: Path, compiled: np.ndarray, eager: np.ndarray) -> None:
    """compiled.png and eager.png (8-bit), and difference.npy: the largest channel difference per
    pixel, as block maxima of at most HEATMAP_SIDE a side (float16; 8-bit PNGs would hide it)."""
    from PIL import Image

    folder.mkdir(exist_ok=True)
    for name, image in (("compiled", compiled), ("eager", eager)):
        Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(folder / f"{name}.png")
    difference = np.abs(compiled - eager).max(axis=-1)
    np.save(folder / "difference.npy", block_max(difference, HEATMAP_SIDE).astype(np.float16), allow_pickle=False)


def block_max(values: np.ndarray, side: int) -> np.ndarray:
    """The largest value of each block, blocks sized so that the result is at most side x side."""
    block = max(1, math.ceil(max(values.shape) / side))
    height, width = (math.ceil(n / block) * block for n in values.shape)
    padded = np.zeros((height, width), dtype=values.dtype)
    padded[: values.shape[0], : values.shape[1]] = values
    return padded.reshape(height // block, block, width // block, block).max(axis=(1, 3))


def load_images(artifact: Path, check: ImageCheck) -> Optional[dict[str, np.ndarray]]:
    """The check's stored images (compiled, eager: uint8 H x W x 3) and difference map; None when absent or damaged."""
    from PIL import Image

    from ..artifact import inside

    try:
        folder = inside(artifact, check.images or FOLDER)
        images = {name: np.asarray(Image.open(folder / f"{name}.png").convert("RGB")) for name in ("compiled", "eager")}
        images["difference"] = np.load(folder / "difference.npy", allow_pickle=False).astype(np.float32)
    except (OSError, ValueError, NeuronExportError):
        return None
    return images
