"""The image-generation view: any pipeline class of a Stable Diffusion (XL) artifact's task, optionally next
to the eager diffusers pipeline on the same request and seed.

A request is built from the pipeline's registry entry alone (DiffusionPipelineSpec: the images it takes by
role, strength, guidance, extra settings) through requests.example_request, then overridden by what the
person chose, so a pipeline class the registry adds needs no code here.
"""

from __future__ import annotations

import inspect
import os
import secrets
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from neuron_export.diffusion.requests import STRENGTH, artifact_pipeline_spec, controlnet_count, example_request
from neuron_export.errors import NeuronExportError
from neuron_export.model_files import read_json
from neuron_export.reference import reference_pipeline
from neuron_export.registry import DIFFUSION_TASKS
from neuron_export.registry.diffusion import DiffusionPipelineSpec

from .core import LoadedArtifact, RunStats, bucket_note, busy_host_note, require
from .image_inputs import fit_image

OnStep = Callable[[str, int, int, Optional[float]], None]  # (side, steps done, steps, seconds per step so far)
ONE_RUN = "One run of each pipeline, time per image (a pipeline's first run also warms it up: run again for steadier figures)."
MAX_SEED = 2**31 - 1


@dataclass
class ImageSettings:
    """What one run asks for (the page's form). None: the pipeline's own choice."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    guidance: Optional[float] = None  # None: the registry's guidance_scale of the pipeline
    seed: Optional[int] = 0  # None: a fresh random seed, reported in the result so that the run can be repeated
    num_images: int = 1
    pipeline: Optional[str] = None  # a Neuron*Pipeline class of the artifact's task; None: its primary one
    scheduler: Optional[str] = None  # a diffusers scheduler class compatible with the pipeline; None: the artifact's
    strength: Optional[float] = None  # pipelines that take it; None: requests.STRENGTH
    images: dict[str, Any] = field(default_factory=dict)  # diffusers argument -> PIL image; absent: its role's example image
    resolution: Optional[tuple[int, int]] = None  # (height, width), one of a bucketed pipeline's; None: the largest
    compare_eager: bool = True


@dataclass
class Generation:
    """One run's images and the settings that make it again (a random seed as drawn)."""

    images: list
    eager_images: list
    settings: dict[str, Any]  # prompt, negative prompt, seed, steps, guidance, scheduler, pipeline, strength, size
    inputs: dict[str, Any]  # diffusers argument -> the image the request took (uploaded or the example)
    random_seed: bool = False  # the seed was drawn for this run


def max_images(loaded: LoadedArtifact) -> int:
    """Images one prompt can ask for: what the pipeline was compiled for (more with a dynamic batch)."""
    compiled = loaded.manifest.batch_size * int(loaded.shapes.get("num_images_per_prompt", 1))
    return max(compiled, 4) if loaded.manifest.dynamic_batch else compiled


def pipeline_specs(loaded: LoadedArtifact) -> list[DiffusionPipelineSpec]:
    """Every pipeline class of the artifact's task, the artifact's own first (requests.artifact_pipeline_spec:
    the class its source was saved as, e.g. img2img for an SDXL refiner; guidance 0 without CFG rows)."""
    own = artifact_pipeline_spec(loaded.manifest)
    return [own] + [artifact_pipeline_spec(loaded.manifest, spec.class_name)
                    for spec in DIFFUSION_TASKS[loaded.manifest.task].pipelines if spec.class_name != own.class_name]


def takes(spec: DiffusionPipelineSpec, argument: str) -> bool:
    """Whether the pipeline's __call__ takes this argument (LCM has no negative prompt, img2img no height)."""
    import diffusers

    return argument in inspect.signature(getattr(diffusers, spec.diffusers_class).__call__).parameters


def compiled_pipeline(loaded: LoadedArtifact, spec: DiffusionPipelineSpec):
    """The Neuron*Pipeline of the spec over the artifact: the loaded primary one, or the last other class asked
    for, over the primary's compiled components (from_pipe: one copy of each in memory; built from the last other
    class, so a VAE encoder it loaded is not loaded again)."""
    if spec.class_name == pipeline_specs(loaded)[0].class_name:
        return loaded.model
    pipe = loaded.cache.get("pipeline")
    if pipe is None or type(pipe).__name__ != spec.class_name:
        import neuron_export

        pipe = getattr(neuron_export, spec.class_name).from_pipe(pipe or loaded.model)
        pipe.set_progress_bar_config(disable=True)
        loaded.cache["pipeline"] = pipe
    return pipe


def eager_pipeline(loaded: LoadedArtifact, spec: DiffusionPipelineSpec):
    """The eager diffusers pipeline of the spec's class over the source folder (loaded once; other classes share
    its modules through diffusers' from_pipe)."""
    import diffusers

    if loaded.eager is None:  # the task's primary class, as the export's image check builds it
        loaded.eager = reference_pipeline(loaded.manifest, loaded.eager_source, class_name=pipeline_specs(loaded)[0].diffusers_class)
    if type(loaded.eager).__name__ == spec.diffusers_class:
        return loaded.eager
    other = loaded.cache.get("eager")
    if other is None or type(other).__name__ != spec.diffusers_class:
        other = getattr(diffusers, spec.diffusers_class).from_pipe(loaded.eager)
        other.set_progress_bar_config(disable=True)
        loaded.cache["eager"] = other
    return other


def artifact_scheduler(loaded: LoadedArtifact) -> str:
    """The scheduler class the artifact was saved with (model_index.json); NeuronExportError when it names none."""
    entry = read_json(loaded.path / "model_index.json").get("scheduler")
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
        raise NeuronExportError(f"{loaded.path.name}/model_index.json names no scheduler (no \"scheduler\": [\"diffusers\", CLASS] "
                                "entry); runs use the one saved in its scheduler folder")
    return entry[1]


def scheduler_names(loaded: LoadedArtifact) -> list[str]:
    """The diffusers schedulers that can replace the artifact's (its scheduler's `compatibles` that load from
    its config here: one that needs a package this host lacks is left out), the artifact's first.
    NeuronExportError when model_index.json names no scheduler, or one this diffusers lacks."""
    import diffusers

    if "schedulers" not in loaded.cache:
        own = artifact_scheduler(loaded)
        if not hasattr(diffusers, own):
            raise NeuronExportError(f"{own}, the scheduler of {loaded.path.name}/model_index.json, is not in diffusers "
                                    f"{diffusers.__version__}")
        config = getattr(diffusers, own).load_config(loaded.path, subfolder="scheduler")
        names = []
        for scheduler in getattr(diffusers, own).from_config(config).compatibles:
            try:
                scheduler.from_config(config)
            except Exception:  # diffusers' stand-in for a scheduler whose dependency (torchsde, ...) is missing
                continue
            names.append(scheduler.__name__)
        loaded.cache["schedulers"] = [own, *sorted(set(names) - {own})]
    return loaded.cache["schedulers"]


def set_scheduler(pipe, loaded: LoadedArtifact, name: Optional[str]) -> str:
    """Give the pipeline a fresh scheduler of this class from the artifact's scheduler config (the pipelines
    are shared: every run sets its own, so one session's choice never leaks into another's run). None: the
    artifact's; where its model_index.json names none this diffusers has, the one saved in its scheduler folder."""
    import diffusers

    if name is None:
        try:
            name = scheduler_names(loaded)[0]
        except NeuronExportError:  # the form showed why
            config = read_json(loaded.path / "scheduler" / "scheduler_config.json")
            if not hasattr(diffusers, str(config.get("_class_name"))):
                raise
            pipe.scheduler = getattr(diffusers, config["_class_name"]).from_config(config)
            return config["_class_name"]
    if name not in scheduler_names(loaded):
        raise NeuronExportError(f"{name} cannot replace this pipeline's scheduler; choose one of {', '.join(scheduler_names(loaded))}")
    scheduler_class = getattr(diffusers, name)
    pipe.scheduler = scheduler_class.from_config(scheduler_class.load_config(loaded.path, subfolder="scheduler"))
    return name


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


def build_request(loaded: LoadedArtifact, spec: DiffusionPipelineSpec, settings: ImageSettings, seed: int) -> dict[str, Any]:
    """diffusers __call__ keywords without the generator: the spec's example request (its images, strength,
    guidance and extra settings) with what the person chose in their place."""
    height, width = settings.resolution or (loaded.shapes["height"], loaded.shapes["width"])
    request = example_request(spec, int(height), int(width), int(settings.steps), seed, require(settings.prompt, "a prompt"),
                              controlnets=controlnet_count(loaded.model))
    request.pop("generator")  # one per pipeline, from the seed
    request["num_images_per_prompt"] = int(settings.num_images)
    if settings.guidance is not None:
        request["guidance_scale"] = float(settings.guidance)
    if settings.negative_prompt.strip() and takes(spec, "negative_prompt"):
        request["negative_prompt"] = settings.negative_prompt.strip()
    if spec.strength:
        request["strength"] = float(STRENGTH if settings.strength is None else settings.strength)
    for argument, role in spec.images:
        if settings.images.get(argument) is not None:
            request[argument] = fit_image(settings.images[argument], role, int(height), int(width))
    return request


def generate_images(loaded: LoadedArtifact, settings: ImageSettings, on_step: Optional[OnStep] = None) -> tuple[Generation, RunStats]:
    """Images from the compiled pipeline of settings.pipeline, timed per image; with settings.compare_eager, the
    eager diffusers pipeline of the same class runs the same request (same seed and scheduler) for its images,
    its time and the largest pixel difference (0..1 scale). on_step(side, step, steps, seconds per step) after
    each denoising step of either pipeline ("compiled", "eager")."""
    spec = artifact_pipeline_spec(loaded.manifest, settings.pipeline)
    seed = secrets.randbelow(MAX_SEED + 1) if settings.seed is None else int(settings.seed)
    request = build_request(loaded, spec, settings, seed)
    pipe = compiled_pipeline(loaded, spec)
    scheduler = set_scheduler(pipe, loaded, settings.scheduler)
    load = os.getloadavg()[0]
    eager_images: list = []
    with torch.inference_mode():
        timer = StepTimer("compiled", on_step)
        images = pipe(seed=seed, callback_on_step_end=timer, **request).images
        stats = RunStats((time.perf_counter() - timer.stamps[0]) / len(images), unit="image", method=ONE_RUN)
        stats.seconds_per_step["compiled"] = timer.per_step_s
        stats.notes += [note] if (note := bucket_note(pipe.unet.compiled)) else []
        if settings.compare_eager and loaded.eager_source is not None:
            eager = eager_pipeline(loaded, spec)
            set_scheduler(eager, loaded, settings.scheduler)  # None: the same fallback as the compiled pipeline's
            timer = StepTimer("eager", on_step)
            eager_images = eager(generator=torch.Generator().manual_seed(seed), callback_on_step_end=timer, **request).images
            stats.eager_s = (time.perf_counter() - timer.stamps[0]) / len(eager_images)
            stats.seconds_per_step["eager"] = timer.per_step_s
            stats.max_abs_diff = max(_pixel_diff(a, b) for a, b in zip(images, eager_images))
    if busy := busy_host_note(load):
        stats.noisy = stats.eager_s is not None
        stats.notes.append(busy)
    inputs = {argument: request[argument] for argument, _ in spec.images}
    settings_used = run_settings(spec, request, seed, scheduler, images[0].size)
    return Generation(images, eager_images, settings_used, inputs, random_seed=settings.seed is None), stats


def run_settings(spec: DiffusionPipelineSpec, request: dict[str, Any], seed: int, scheduler: str, size: tuple[int, int]) -> dict[str, Any]:
    """What a run used, in the words the gallery shows (enough to make it again)."""
    settings = {"prompt": request["prompt"], "negative prompt": request.get("negative_prompt") or "", "seed": seed,
                "steps": request["num_inference_steps"], "guidance": request["guidance_scale"], "scheduler": scheduler,
                "pipeline": spec.class_name, "size": f"{size[0]}×{size[1]}"}
    if "strength" in request:
        settings["strength"] = request["strength"]
    settings.update((name, value) for name, value in spec.extra_call)
    return settings


def _pixel_diff(first, second) -> float:
    import numpy

    return float(numpy.abs(numpy.asarray(first, dtype=numpy.float32) - numpy.asarray(second, dtype=numpy.float32)).max() / 255)
