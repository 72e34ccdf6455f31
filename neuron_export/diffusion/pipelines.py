"""diffusers' Stable Diffusion (XL) pipelines running the compiled components of an artifact folder.

Each class is the diffusers pipeline itself (same __call__, schedulers swappable with
`pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)`), holding the
compiled text encoder(s), UNet and VAE in place of the eager modules.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, ClassVar, Optional

import diffusers
import torch
from diffusers.configuration_utils import FrozenDict

from ..artifact import Manifest, inside, load_artifact, publish, staging, write_json
from ..model_files import read_json
from ..errors import ArtifactError, NeuronExportError, ValidationFailedError
from ..options import CONTROLNET_FIELDS, LORA_FIELDS, SHAPE_FIELDS, ExportOptions
from ..registry import DIFFUSION_TASKS, PIPELINE_CLASSES, DiffusionPipelineSpec, pipeline_task_of
from ..registry.diffusion import components_of
from .adapters import CompiledTextEncoder, CompiledUNet, CompiledVae

# The pipeline modules a Neuron*Pipeline runs compiled (load_components builds them from the artifact).
COMPILED_PARTS = ("text_encoder", "text_encoder_2", "unet", "vae", "controlnet")
# The roles of a pipeline's images (DiffusionPipelineSpec.images), as an error names them.
IMAGE_ROLES = {"init": "the image to edit", "mask": "the mask: white where to repaint", "control": "the ControlNet's conditioning image"}


class NeuronPipelineMixin:
    """from_pretrained / save_pretrained for artifact folders, and the checks the compiled shapes need."""

    task: ClassVar[str]
    spec: ClassVar[DiffusionPipelineSpec]
    uses_vae_encoder: ClassVar[bool] = False
    artifact: Path
    manifest: Manifest

    @classmethod
    def from_pretrained(cls, model: str | Path, export: bool = False, options: Optional[ExportOptions] = None, **shapes: int):
        """Load a compiled pipeline folder, or with export=True compile `model` (hub id, diffusers
        folder or demo:NAME) first, e.g. from_pretrained(folder, export=True, height=512, width=512),
        also with LoRAs fused in: lora_model_ids=[folder], lora_scales=[0.8], or ControlNets added:
        controlnet_ids=[folder] (optimum-neuron's names)."""
        unknown = sorted(set(shapes) - set(SHAPE_FIELDS) - set(LORA_FIELDS) - set(CONTROLNET_FIELDS))
        if unknown:
            raise NeuronExportError(f"from_pretrained takes the shape options {', '.join(SHAPE_FIELDS)}, "
                                    f"{', '.join(LORA_FIELDS + CONTROLNET_FIELDS)}; not {', '.join(unknown)}")
        if not export:
            if options is not None or shapes:
                raise NeuronExportError("shapes and options apply to export=True; a compiled folder has its shapes already")
            return cls._load(Path(model).expanduser())

        from ..export import export as export_model

        options = (options or ExportOptions()).replace(**shapes)
        scratch = Path(tempfile.mkdtemp(prefix="neuron-export-pipeline-"))
        try:
            result = export_model(model, scratch / "pipeline", options)
            if result.validation_passed is False:
                failed = [r.component for r in result.reports if not r.passed] or result.failed_checks
                raise ValidationFailedError(f"validation failed for {', '.join(failed)}; the reports are in {result.artifact}")
            pipe = cls._load(result.artifact)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        weakref.finalize(pipe, shutil.rmtree, scratch, True)  # save_pretrained() keeps a copy
        return pipe

    @classmethod
    def from_pipe(cls, pipe: "NeuronPipelineMixin"):
        """This class over the artifact another Neuron*Pipeline loaded (txt2img -> img2img), sharing its compiled
        components: loading the folder again would hold every compiled model twice (on Neuron, twice the
        NeuronCore memory). Only a VAE encoder the other one did not load is loaded."""
        if not isinstance(pipe, NeuronPipelineMixin):
            raise NeuronExportError(f"{cls.__name__}.from_pipe takes a compiled Neuron*Pipeline, not a {type(pipe).__name__}")
        return cls._load(pipe.artifact, shared=pipe)

    @classmethod
    def _load(cls, folder: Path, shared: Optional["NeuronPipelineMixin"] = None):
        manifest = Manifest.read(folder)
        task = manifest.task
        if not manifest.is_pipeline:
            raise ArtifactError(f"{folder} is a compiled {task} model, not a pipeline; load it with neuron_export.load_artifact")
        if task != cls.task:
            classes = " / ".join(p.class_name for p in DIFFUSION_TASKS[task].pipelines) if task in DIFFUSION_TASKS else "another pipeline class"
            raise ArtifactError(f"{folder} is a compiled {task} pipeline; load it with {classes}")
        model_index = read_json(folder / "model_index.json")
        parameters = inspect.signature(cls.__init__).parameters
        if model_index.get("requires_aesthetics_score") and "requires_aesthetics_score" not in parameters:
            img2img = [p.class_name for p in DIFFUSION_TASKS[task].pipelines if p.diffusers_class == manifest.pipeline_class]
            raise ArtifactError(f"{folder} is an SDXL refiner (its UNet takes an aesthetic score): load it with "
                                f"{' / '.join(img2img) or 'an img2img pipeline class'} and pass it the base's latents as image")
        if shared is None:
            components = load_components(folder, manifest, cls.uses_vae_encoder)
        else:
            components = shared_components(shared, cls.uses_vae_encoder)
        arguments: dict[str, Any] = {}
        for name in parameters:
            entry = model_index.get(name)
            if name in components:
                arguments[name] = components[name]
            elif isinstance(entry, list):
                arguments[name] = load_pipeline_part(folder, name, entry)
            elif name in model_index:
                arguments[name] = entry  # pipeline settings: force_zeros_for_empty_prompt, ...
        if "requires_safety_checker" in parameters:
            arguments["requires_safety_checker"] = False  # the safety checker is not exported
        missing = [name for name, parameter in parameters.items() if name != "self" and name not in arguments
                   and parameter.default is inspect.Parameter.empty and parameter.kind is not parameter.VAR_KEYWORD]
        if missing:  # a damaged model_index.json: say what is missing rather than diffusers' TypeError
            raise ArtifactError(f"{folder}: model_index.json names no {', '.join(missing)}, which {cls.__name__} needs")
        pipe = cls(**arguments)
        pipe.artifact = folder
        pipe.manifest = manifest
        return pipe

    def save_pretrained(self, save_directory: str | Path, **unused) -> None:
        """Copy the compiled pipeline folder, with the scheduler as currently set (it may have been swapped)."""
        target = Path(save_directory).expanduser()
        if target.exists():
            raise NeuronExportError(f"{target} already exists; choose a new folder")
        with staging(target) as folder:  # a failed copy never leaves a half-written pipeline folder
            shutil.copytree(self.artifact, folder)
            shutil.rmtree(folder / "scheduler", ignore_errors=True)
            self.scheduler.save_pretrained(folder / "scheduler")
            model_index = read_json(folder / "model_index.json")
            model_index["scheduler"] = ["diffusers", type(self.scheduler).__name__]
            write_json(folder / "model_index.json", model_index)
            if not publish(folder, target, replace=False):
                raise NeuronExportError(f"{target} already exists; choose a new folder")

    @property
    def compiled_shapes(self) -> dict[str, int]:
        return self.manifest.shapes

    @property
    def buckets(self) -> list[dict[str, int]]:
        """The compiled resolutions of a bucketed pipeline, smallest first ([] for one resolution)."""
        return [dict(bucket.shapes) for bucket in self.manifest.buckets]

    @property
    def resolutions(self) -> list[tuple[int, int]]:
        """Every (height, width) this pipeline was compiled for."""
        sizes = self.buckets or [self.compiled_shapes]
        return [(size["height"], size["width"]) for size in sizes]

    def __call__(self, prompt=None, *, seed: Optional[int] = None, **kwargs):
        """diffusers' __call__ (prompt, negative_prompt, num_inference_steps, guidance_scale, generator,
        image for img2img, ...), plus seed as a shortcut for a CPU generator; refuses up front what
        the compiled shapes cannot run."""
        if seed is not None:
            if kwargs.get("generator") is not None:
                raise NeuronExportError("pass either seed or generator, not both")
            kwargs["generator"] = torch.Generator().manual_seed(seed)
        if kwargs.get("ip_adapter_image") is not None or kwargs.get("ip_adapter_image_embeds") is not None:
            raise NeuronExportError("IP-Adapter images are not supported by the compiled UNet")
        missing = [f"{argument} ({IMAGE_ROLES.get(role, role)})" for argument, role in self.spec.images if kwargs.get(argument) is None]
        if missing:  # diffusers would fail deep inside preprocessing
            raise NeuronExportError(f"{type(self).__name__} needs {' and '.join(missing)}")
        self._check_shapes(prompt, kwargs)
        self._check_guidance(kwargs)
        self._check_latents(kwargs.get("image"))
        if "height" in inspect.signature(super().__call__).parameters:
            # classes that take a size (txt2img, inpainting, ControlNet): the compiled one by default (SDXL's own
            # default assumes square images).
            kwargs["height"] = kwargs.get("height") or self.compiled_shapes["height"]
            kwargs["width"] = kwargs.get("width") or self.compiled_shapes["width"]
        else:  # img2img, instruct-pix2pix: the image's size decides (the VAE encoder checks it); a compiled size asked is no error
            for size in ("height", "width"):
                kwargs.pop(size, None)
        return super().__call__(prompt, **kwargs)

    def _check_guidance(self, kwargs: dict[str, Any]) -> None:
        """A UNet compiled without classifier-free guidance rows (--no-classifier-free-guidance, SDXL Turbo)
        runs guidance_scale <= 1 only, and 0 is its default."""
        if self.manifest.options.classifier_free_guidance:
            return
        guidance = kwargs.setdefault("guidance_scale", 0.0)
        if guidance is not None and guidance > 1:
            raise NeuronExportError(
                f"guidance_scale {guidance:g} needs classifier-free guidance, and this pipeline's UNet was compiled without it "
                "(--no-classifier-free-guidance: one row per image); pass guidance_scale <= 1 (SDXL Turbo: 0.0), or re-export without that flag"
            )

    def _check_latents(self, image) -> None:
        """Latents passed as the image (a refiner over the base's latents) must be of a compiled size."""
        if not (isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[1] == self.vae.config.get("latent_channels", 4)):
            return
        height, width = image.shape[2] * self.vae_scale_factor, image.shape[3] * self.vae_scale_factor
        if (height, width) not in self.resolutions:
            compiled = ", ".join(f"{w}x{h}" for h, w in self.resolutions)
            raise NeuronExportError(
                f"the latents passed as image are those of {width}x{height} images and this pipeline was compiled for {compiled}: "
                f"export the base and this pipeline at the same --height / --width"
            )

    def _check_shapes(self, prompt, kwargs: dict[str, Any]) -> None:
        shapes = self.compiled_shapes
        size = (kwargs.get("height") or shapes["height"], kwargs.get("width") or shapes["width"])
        if size not in self.resolutions:
            compiled = ", ".join(f"{w}x{h}" for h, w in self.resolutions)
            raise NeuronExportError(
                f"{size[1]}x{size[0]} (width x height): this pipeline was compiled for {compiled} images; "
                f"re-export with --height {size[0]} --width {size[1]} (several sizes: --height 512,768 --width 512,768)"
            )
        if self.manifest.dynamic_batch:
            return
        if isinstance(prompt, str):
            prompts = 1
        elif isinstance(prompt, list):
            prompts = len(prompt)
        elif kwargs.get("prompt_embeds") is not None:
            prompts = kwargs["prompt_embeds"].shape[0]
        else:
            return  # diffusers reports the missing prompt
        images = kwargs.get("num_images_per_prompt") or 1
        if prompts > shapes["batch_size"] or prompts * images > shapes["batch_size"] * shapes["num_images_per_prompt"]:
            raise NeuronExportError(
                f"{prompts} prompt(s) x {images} image(s) each: this pipeline was compiled for batch_size {shapes['batch_size']} "
                f"x num_images_per_prompt {shapes['num_images_per_prompt']}; re-export with larger ones (or --dynamic-batch-size)"
            )


def load_components(folder: Path, manifest: Manifest, with_vae_encoder: bool) -> dict[str, torch.nn.Module]:
    """The compiled components, by kind, as the pipeline's text_encoder(_2), unet and vae modules."""
    from transformers import AutoConfig

    task_specs = components_of(manifest.task, manifest.components)  # as many ControlNets as it has
    specs = [spec for spec in task_specs if spec.name in manifest.components]
    missing = sorted(set(manifest.components) - {spec.name for spec in specs})
    if missing:
        raise ArtifactError(f"{folder} lists components this tool does not know: {', '.join(missing)}")
    absent = [spec.name for spec in task_specs if not spec.optional and spec not in specs]
    if absent:  # never run a pipeline with a part silently missing
        raise ArtifactError(f"{folder} lacks the compiled {', '.join(absent)} that a {manifest.task} pipeline needs; export it again")
    by_kind = {spec.kind: inside(folder, spec.name) for spec in specs}
    components: dict[str, torch.nn.Module] = {
        spec.source: CompiledTextEncoder(load_artifact(inside(folder, spec.name)), AutoConfig.from_pretrained(inside(folder, spec.name)))
        for spec in specs if spec.kind == "text_encoder"
    }
    unet = load_artifact(by_kind["unet"])
    latent_height, latent_width = unet.inputs["sample"].shape[2:]
    unet_config = {**_config_of(by_kind["unet"]), "sample_size": latent_height if latent_height == latent_width else [latent_height, latent_width]}
    components["unet"] = CompiledUNet(unet, FrozenDict(unet_config))
    encoder = load_artifact(by_kind["vae_encoder"]) if with_vae_encoder else None
    components["vae"] = CompiledVae(load_artifact(by_kind["vae_decoder"]), encoder, _config_of(by_kind["vae_decoder"]))
    controlnets = [spec for spec in specs if spec.kind == "controlnet"]
    if controlnets:
        from .compiled_controlnet import CompiledControlNet, compiled_controlnets

        components["controlnet"] = compiled_controlnets(
            [CompiledControlNet(load_artifact(inside(folder, s.name)), _config_of(inside(folder, s.name))) for s in controlnets])
    return components


def shared_components(pipe: NeuronPipelineMixin, with_vae_encoder: bool) -> dict[str, torch.nn.Module]:
    """The compiled components of a loaded pipeline, for another class over the same artifact: the same modules,
    and a VAE whose encoder is loaded now if this class needs it and that pipeline has none."""
    components = {name: getattr(pipe, name) for name in COMPILED_PARTS if getattr(pipe, name, None) is not None}
    vae = components["vae"]
    if with_vae_encoder and vae.encoder_model is None:
        spec = next(spec for spec in components_of(pipe.manifest.task, pipe.manifest.components) if spec.kind == "vae_encoder")
        if spec.name not in pipe.manifest.components:  # a folder that never had one: as load_components refuses it
            raise ArtifactError(f"{pipe.artifact} lacks the compiled {spec.name}; export it again")
        components["vae"] = CompiledVae(vae.compiled, load_artifact(inside(pipe.artifact, spec.name)), vae.config)
    return components


def _config_of(component_folder: Path) -> FrozenDict:
    return FrozenDict(read_json(component_folder / "config.json"))


def load_pipeline_part(folder: Path, name: str, entry: list) -> Any:
    """A tokenizer or scheduler of the folder (as model_index.json names it); None for parts that
    were not exported (safety checker, image encoder)."""
    import transformers

    library, class_name = entry
    if library is None or not (folder / name).is_dir():
        return None
    module = transformers if library == "transformers" else diffusers
    part_class = getattr(module, class_name, None)
    if part_class is None:
        raise ArtifactError(f"{folder}: model_index.json's {name} is a {class_name}, which {module.__name__} "
                            f"{module.__version__} does not have")
    if library == "transformers":
        return part_class.from_pretrained(folder / name)
    return part_class.from_pretrained(folder, subfolder=name)


def _pipeline_class(name: str) -> type:
    """A Neuron*Pipeline class: the mixin over the diffusers pipeline the registry names."""
    spec = PIPELINE_CLASSES[name]
    base = getattr(diffusers, spec.diffusers_class)
    attributes = {"task": pipeline_task_of(name), "spec": spec, "uses_vae_encoder": spec.uses_vae_encoder, "__module__": __name__,
                  "__doc__": f"diffusers' {spec.diffusers_class} running the compiled components of an artifact folder."}
    return type(name, (NeuronPipelineMixin, base), attributes)


globals().update({name: _pipeline_class(name) for name in PIPELINE_CLASSES})
