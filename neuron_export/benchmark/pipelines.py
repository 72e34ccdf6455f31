"""The benchmark of a Stable Diffusion pipeline artifact, for any pipeline class of its task: the request is
the class's example request (diffusion/requests.py, from its registry entry: init image, mask, control
image, strength, guidance, extra settings), so every variant the registry holds is timed the way it is
used; and one call of each side broken down into seconds per component (text encoders, UNet, VAE, ...)
and per denoising step.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Optional

from ..artifact import Manifest
from ..registry import DIFFUSION_TASKS
from ..registry.diffusion import DiffusionPipelineSpec

PROMPT = "a photograph of an astronaut riding a horse, variation {}"
VAE_METHODS = {"decode": "vae_decoder", "encode": "vae_encoder"}  # the pipeline calls the VAE's methods, not forward


def pipeline_spec(task: str, class_name: Optional[str] = None) -> DiffusionPipelineSpec:
    """The registry entry of a Neuron*Pipeline class of the task (None: the task's primary class)."""
    return DIFFUSION_TASKS[task].pipeline(class_name) if class_name else DIFFUSION_TASKS[task].primary


def pipeline_inputs(manifest: Manifest, batch_size: int, steps: int, seed: int, pipeline: Optional[str] = None) -> dict[str, Any]:
    """What every side's call is built from (plain data: it goes to each side's process and into the inputs'
    digest): the pipeline class (default: the artifact's, requests.artifact_pipeline_spec), its guidance,
    the ControlNets' count, batch_size prompts, the compiled images per prompt and size, steps and seed."""
    from ..diffusion.requests import artifact_pipeline_spec
    from ..registry.diffusion import components_of

    shapes = manifest.shapes
    spec = artifact_pipeline_spec(manifest, pipeline)
    return {
        "pipeline": spec.class_name,
        "guidance_scale": spec.guidance_scale,  # 0 for a UNet compiled without classifier-free guidance
        "controlnets": sum(component.kind == "controlnet" for component in components_of(manifest.task, manifest.components)),
        "prompt": [PROMPT.format(i) for i in range(batch_size)],
        "num_images_per_prompt": shapes["num_images_per_prompt"],
        "num_inference_steps": steps,
        "height": shapes["height"],
        "width": shapes["width"],
        "seed": seed,
    }


def pipeline_request(task: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The diffusers __call__ keywords of pipeline_inputs' arguments, without the generator (one per call)."""
    from ..diffusion.requests import example_request

    spec = pipeline_spec(task, arguments["pipeline"])
    request = example_request(spec, arguments["height"], arguments["width"], arguments["num_inference_steps"],
                              arguments["seed"], arguments["prompt"][0], controlnets=arguments["controlnets"])
    request.pop("generator")
    request.update(prompt=list(arguments["prompt"]), num_images_per_prompt=arguments["num_images_per_prompt"], output_type="np",
                   guidance_scale=arguments["guidance_scale"])
    return request


def compiled_pipeline(path: str, task: str, class_name: Optional[str] = None):
    """The compiled side: the artifact loaded as a Neuron*Pipeline class of its task (None: the primary one)."""
    from .. import diffusion

    return getattr(diffusion, pipeline_spec(task, class_name).class_name).from_pretrained(path)


def eager_pipeline(manifest: Manifest, trust_remote_code: bool = False):
    """The eager side: diffusers' pipeline of the artifact's class over the source, as the image check builds it."""
    from ..diffusion.requests import artifact_pipeline_spec
    from ..reference import reference_pipeline

    return reference_pipeline(manifest, trust_remote_code=trust_remote_code, class_name=artifact_pipeline_spec(manifest).diffusers_class)


def as_class(pipe, compiled: bool, task: str, class_name: str):
    """The side's pipeline as the class asked for, sharing the loaded pipeline's modules (from_pipe: diffusers'
    for the eager side, the Neuron*Pipeline's for the compiled one)."""
    import diffusers

    from .. import diffusion

    spec = pipeline_spec(task, class_name)
    wanted = spec.class_name if compiled else spec.diffusers_class
    if type(pipe).__name__ == wanted:
        return pipe
    other = getattr(diffusion if compiled else diffusers, wanted).from_pipe(pipe)
    other.set_progress_bar_config(disable=True)
    return other


class ComponentClock:
    """Seconds spent in each component of a pipeline during the calls made while it is installed: forward hooks on
    its modules, and the VAE's decode / encode methods wrapped on the instance."""

    def __init__(self, pipe):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._pipe, self._undo = pipe, []

    def _add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def __enter__(self) -> "ComponentClock":
        import torch

        for name, module in self._pipe.components.items():
            if not isinstance(module, torch.nn.Module):
                continue
            if name == "vae":
                for method, label in VAE_METHODS.items():
                    self._wrap(module, method, label)
                continue
            starts: list[float] = []
            before = module.register_forward_pre_hook(lambda *_, starts=starts: starts.append(time.perf_counter()))
            after = module.register_forward_hook(lambda *_, name=name, starts=starts: self._add(name, time.perf_counter() - starts.pop()))
            self._undo += [before.remove, after.remove]
        return self

    def _wrap(self, module, method: str, label: str) -> None:
        original = getattr(module, method)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._add(label, time.perf_counter() - start)

        setattr(module, method, timed)
        self._undo.append(lambda: delattr(module, method))

    def __exit__(self, *exc) -> None:
        for undo in reversed(self._undo):
            undo()


def breakdown(pipe, request: dict[str, Any], seed: int) -> dict[str, Any]:
    """One call timed per component and per denoising step: seconds per image in each component (and its calls
    per image), the median step (the UNet and the scheduler's update) and the call's seconds per image."""
    import torch

    stamps: list[float] = []

    def on_step(pipeline, step, timestep, tensors):
        stamps.append(time.perf_counter())
        return tensors

    with ComponentClock(pipe) as clock, torch.no_grad():
        start = time.perf_counter()
        images = pipe(**request, generator=torch.Generator().manual_seed(seed), callback_on_step_end=on_step).images
        total = time.perf_counter() - start
    count = len(images)
    steps = [end - begin for begin, end in zip([start, *stamps], stamps)]
    return {
        "class_name": type(pipe).__name__,
        "component_s": {name: seconds / count for name, seconds in clock.seconds.items()},
        "component_calls": {name: calls / count for name, calls in clock.calls.items()},
        "step_s": statistics.median(steps) if steps else None,
        "steps": len(steps),
        "image_s": total / count,
    }


def breakdown_lines(sides: dict[str, dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """The report's lines for the sides' breakdowns (their `pipeline` entries): per component and per step."""
    lines = []
    for name, side in sides.items():
        found = side.get("pipeline")
        if not found:
            continue
        parts = ", ".join(f"{component} {seconds:.3f} s ({found['component_calls'][component]:g} calls)"
                          for component, seconds in found["component_s"].items())
        step = f"; {found['step_s'] * 1000:.1f} ms per denoising step ({found['steps']} steps)" if found.get("step_s") else ""
        lines.append(f"  {labels.get(name, name)} {found['class_name']}, one call, seconds per image {found['image_s']:.3f}: {parts}{step}")
    return lines
