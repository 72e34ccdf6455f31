"""Diffusion tasks: their compiled components and the pipeline classes that run them.

A component's input axes name shape values that the exporter resolves from the pipeline's configs
and the shape options (export/diffusion.py). Its `kind` picks the traceable wrapper at export and
the adapter at load; pipelines are declared once here and built from this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from ..errors import NeuronExportError
from .inputs import EXACT, BucketAxes, InputSpec
from .tasks import DemoSpec


@dataclass(frozen=True)
class DiffusionComponent:
    """One compiled component of a diffusion pipeline."""

    name: str  # its folder in the artifact, e.g. "vae_decoder"
    source: str  # the pipeline folder it is built from ("vae" for both VAE halves)
    kind: str  # "text_encoder" | "unet" | "controlnet" | "vae_encoder" | "vae_decoder": its wrapper and adapter
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]  # absent ones (CLIPTextModel has no text_embeds) are skipped
    atol: float
    neuron_model_type: str = "generic"  # neuronx-cc --model-type
    hidden_states: bool = False  # text encoders: also every layer's output (SDXL reads the penultimate)
    optional: bool = False  # a pipeline may lack it (an SDXL refiner has no first text encoder)
    tokenizer: Optional[str] = None  # text encoders: the pipeline folder of their tokenizer
    # The AWS Stable Diffusion recipe (aws-neuron-samples' SD notebooks, optimum-neuron):
    data_parallel: bool = False  # one copy per NeuronCore at load: CFG's unconditional and text halves side by side
    neuron_attention: bool = False  # compiled for Neuron with the samples' attention (diffusers' Attention modules)
    keeps_fp32: bool = False  # never auto-cast: the samples keep the VAE in fp32 under a bf16 UNet
    # (config key, input): inputs it takes when its config sets the key (an LCM UNet's time_cond_proj_dim: timestep_cond)
    config_inputs: tuple[tuple[str, InputSpec], ...] = ()

    def inputs_for(self, config: dict[str, Any]) -> "DiffusionComponent":
        """This component with the config inputs its module's config asks for."""
        extra = tuple(spec for key, spec in self.config_inputs if config.get(key) is not None)
        return replace(self, inputs=self.inputs + extra, config_inputs=()) if extra else self
    repeated: bool = False  # one per ControlNet of the pipeline: controlnet, controlnet_1, ... (diffusers' folders)


@dataclass(frozen=True)
class DiffusionPipelineSpec:
    """A Neuron*Pipeline class: the diffusers pipeline it subclasses, running the compiled components."""

    class_name: str
    diffusers_class: str
    uses_vae_encoder: bool = False
    # The images its __call__ takes besides the prompt: diffusers' argument name -> what it is. "init": the
    # image to transform (img2img, inpaint, instruct-pix2pix); "mask": white where to repaint; "control": a
    # ControlNet's conditioning image. The image check, the benchmark and the playground build requests from it.
    images: tuple[tuple[str, str], ...] = ()
    strength: bool = False  # takes strength: how far the result may move from the init image
    guidance_scale: float = 7.5  # what a request passes (diffusers' default; 0 for SDXL Turbo, LCM's embedded w)
    extra_call: tuple[tuple[str, Any], ...] = ()  # further __call__ settings a request passes (image_guidance_scale, ...)


@dataclass(frozen=True)
class DiffusionTask:
    name: str
    components: tuple[DiffusionComponent, ...]
    pipelines: tuple[DiffusionPipelineSpec, ...]  # the first one is the primary pipeline (txt2img for SD / SDXL)
    demo: Optional[DemoSpec] = None
    tiny: dict[str, Any] = field(default_factory=dict)  # keywords of its tiny pipeline builder (demo/tiny.py)
    views: dict[str, str] = field(default_factory=lambda: {"diffusion": "image-generation"})
    # one UNet / VAE per resolution; the components whose input shapes do not depend on it (text encoders) are compiled once
    bucketable: tuple[BucketAxes, ...] = (BucketAxes(("height", "width"), EXACT),)
    # What the UNet is fed per step. unet_in_channels: the latents (4) and what the variant joins to them
    # (inpainting: mask + masked-image latents, 9; instruct-pix2pix: image latents, 8). unet_rows_per_image:
    # its rows per image (classifier-free guidance: unconditional + text; instruct-pix2pix adds an image row).
    unet_in_channels: int = 4
    unet_rows_per_image: int = 2
    # Other diffusers pipeline classes whose saved folders hold this task's model when their UNet takes
    # unet_in_channels (a StableDiffusionPipeline folder with a 9-channel UNet is an inpainting model).
    detected_from: tuple[str, ...] = ()
    # more demos of the task's pipelines: (demo, keywords of its tiny pipeline builder), e.g. the SDXL refiner
    variant_demos: tuple[tuple[DemoSpec, dict[str, Any]], ...] = ()
    # optimum-neuron pipeline folders of this task load as artifacts (optimum_neuron.py; only what was tested)
    optimum_folders: bool = False

    @property
    def demos(self) -> tuple[tuple[DemoSpec, dict[str, Any]], ...]:
        """Every demo of the task with its tiny builder's keywords."""
        return (((self.demo, self.tiny),) if self.demo else ()) + self.variant_demos

    @property
    def primary(self) -> DiffusionPipelineSpec:
        """The pipeline the image check, the benchmark and the playground run by default (txt2img for SD / SDXL)."""
        return self.pipelines[0]

    def pipeline(self, class_name: str) -> DiffusionPipelineSpec:
        """The spec of one of its pipeline classes (a Neuron*Pipeline or diffusers name); another is a one-line error."""
        for spec in self.pipelines:
            if class_name in (spec.class_name, spec.diffusers_class):
                return spec
        raise NeuronExportError(f"{class_name}: a {self.name} artifact runs {', '.join(p.class_name for p in self.pipelines)}")


_UNET_INPUTS = (
    InputSpec("sample", ("unet_batch_size", "unet_in_channels", "latent_height", "latent_width"), "gaussian", "float32"),
    InputSpec("timestep", ("unet_batch_size",), "timestep", "float32"),
    InputSpec("encoder_hidden_states", ("unet_batch_size", "sequence_length", "cross_attention_dim"), "gaussian", "float32"),
)
# SDXL's added conditions (added_cond_kwargs): the pooled text_encoder_2 embedding and the size / crop ids.
_SDXL_UNET_INPUTS = _UNET_INPUTS + (
    InputSpec("text_embeds", ("unet_batch_size", "text_embeds_dim"), "gaussian", "float32"),
    InputSpec("time_ids", ("unet_batch_size", "time_ids_dim"), "time_ids", "float32"),
)
# A latent consistency UNet (time_cond_proj_dim) takes the guidance scale w as an embedding instead of CFG rows.
_TIMESTEP_COND = InputSpec("timestep_cond", ("unet_batch_size", "time_cond_proj_dim"), "gaussian", "float32")
_CLIP_INPUTS = (InputSpec("input_ids", ("batch_size", "sequence_length"), "clip_token_ids"),)
# The UNet runs on batch_size x num_images_per_prompt x its rows per image (the task's unet_rows_per_image
# under classifier-free guidance, else 1); a data-parallel one is compiled for its share of them per core.
_UNET = DiffusionComponent("unet", "unet", "unet", _UNET_INPUTS, ("sample",), 1e-3, "unet-inference",
                           data_parallel=True, neuron_attention=True, config_inputs=(("time_cond_proj_dim", _TIMESTEP_COND),))
_SDXL_UNET = DiffusionComponent("unet", "unet", "unet", _SDXL_UNET_INPUTS, ("sample",), 1e-3, "unet-inference",
                                data_parallel=True, neuron_attention=True, config_inputs=(("time_cond_proj_dim", _TIMESTEP_COND),))
_VAE_ENCODER = DiffusionComponent(
    "vae_encoder", "vae", "vae_encoder",
    (InputSpec("sample", ("batch_size", "image_channels", "height", "width"), "gaussian", "float32"),),
    ("latent_parameters",),  # mean and log-variance of the latent distribution, concatenated
    1e-3, "unet-inference", neuron_attention=True, keeps_fp32=True,
)
_VAE_DECODER = DiffusionComponent(
    "vae_decoder", "vae", "vae_decoder",
    (InputSpec("latent_sample", ("images_batch_size", "latent_channels", "latent_height", "latent_width"), "gaussian", "float32"),),
    ("sample",),
    1e-3, "unet-inference", neuron_attention=True, keeps_fp32=True,
)
_TEXT_ENCODER = DiffusionComponent(
    "text_encoder", "text_encoder", "text_encoder", _CLIP_INPUTS, ("last_hidden_state",), 1e-3, "transformer",
    tokenizer="tokenizer",
)
_SDXL_TEXT_ENCODERS = tuple(
    DiffusionComponent(name, name, "text_encoder", _CLIP_INPUTS, ("text_embeds", "last_hidden_state"), 1e-3, "transformer",
                       hidden_states=True, optional=name == "text_encoder", tokenizer=tokenizer)
    for name, tokenizer in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2"))
)

# --- Latent consistency models, SDXL Turbo and the SDXL refiner (issue #13) ---
# LCM: diffusers' LatentConsistencyModelPipeline; its UNet (time_cond_proj_dim) gets the guidance scale as
# timestep_cond and runs one row per image. Its default guidance_scale 8.5 is what the request passes.
_LCM_TASKS = (
    DiffusionTask(
        "latent-consistency",
        (_TEXT_ENCODER, _UNET, _VAE_DECODER),  # no VAE encoder: its one pipeline class is txt2img
        (DiffusionPipelineSpec("NeuronLatentConsistencyModelPipeline", "LatentConsistencyModelPipeline", guidance_scale=8.5),),
        demo=DemoSpec("demo:tiny-lcm", "latent-consistency", "Tiny latent consistency model pipeline (LCM UNet, 4 steps, 64x64 images)"),
        tiny={"variant": "lcm"},
    ),
)
# SDXL Turbo is an SDXL pipeline run at guidance_scale 0 (compiled with --no-classifier-free-guidance);
# the refiner an SDXL img2img pipeline without text_encoder, over the base's latents.
_SDXL_VARIANT_DEMOS = (
    (DemoSpec("demo:tiny-sdxl-turbo", "stable-diffusion-xl",
              "Tiny SDXL Turbo-style pipeline (Euler ancestral, trailing steps; run at guidance 0, 1-4 steps)"),
     {"variant": "sdxl-turbo"}),
    (DemoSpec("demo:tiny-sdxl-refiner", "stable-diffusion-xl",
              "Tiny SDXL refiner (text_encoder_2 only, aesthetic score; refines demo:tiny-sdxl's latents)"),
     {"variant": "sdxl-refiner"}),
)
# ControlNet: each ControlNet is a component of its own (one per ControlNet of the pipeline: diffusers'
# MultiControlNetModel), taking the control image at the image size and its conditioning scale (one per
# row: it may change between calls). Its outputs, the residuals of the UNet's down blocks and mid block,
# are inputs of the UNet; their number and shapes follow the UNet's config (diffusion/controlnet.py adds
# them to the UNet's inputs and the ControlNet's outputs when the export is planned).
_CONTROLNET = DiffusionComponent(
    "controlnet", "controlnet", "controlnet",
    _UNET_INPUTS + (
        InputSpec("controlnet_cond", ("unet_batch_size", "control_channels", "height", "width"), "gaussian", "float32"),
        InputSpec("conditioning_scale", ("unet_batch_size",), "gaussian", "float32"),
    ),
    ("down_block_res_samples", "mid_block_res_sample"), 1e-3, "unet-inference", data_parallel=True, neuron_attention=True,
    repeated=True,
)
_SDXL_CONTROLNET = replace(_CONTROLNET, inputs=_CONTROLNET.inputs + _SDXL_UNET_INPUTS[3:])  # SDXL's added conditions too


def repeated_components(components: tuple[DiffusionComponent, ...], count: int) -> list[DiffusionComponent]:
    """The components of a pipeline with `count` ControlNets: a repeated one named as diffusers names their
    folders (controlnet, controlnet_1, ...); none when count is 0."""
    expanded = []
    for spec in components:
        copies = [replace(spec, name=f"{spec.name}_{i}" if i else spec.name, source=f"{spec.source}_{i}" if i else spec.source)
                  for i in range(count)]
        expanded += copies if spec.repeated else [spec]
    return expanded


DIFFUSION_TASKS: dict[str, DiffusionTask] = {
    t.name: t
    for t in (
        DiffusionTask(
            "stable-diffusion",
            (_TEXT_ENCODER, _UNET, _VAE_ENCODER, _VAE_DECODER),
            (
                DiffusionPipelineSpec("NeuronStableDiffusionPipeline", "StableDiffusionPipeline"),
                DiffusionPipelineSpec("NeuronStableDiffusionImg2ImgPipeline", "StableDiffusionImg2ImgPipeline", uses_vae_encoder=True,
                                      images=(("image", "init"),), strength=True),
            ),
            demo=DemoSpec("demo:tiny-sd", "stable-diffusion", "Tiny Stable Diffusion pipeline (64x64 images)"),
            optimum_folders=True,
        ),
        DiffusionTask(
            "stable-diffusion-xl",
            (*_SDXL_TEXT_ENCODERS, _SDXL_UNET, _VAE_ENCODER, _VAE_DECODER),
            (
                DiffusionPipelineSpec("NeuronStableDiffusionXLPipeline", "StableDiffusionXLPipeline"),
                DiffusionPipelineSpec("NeuronStableDiffusionXLImg2ImgPipeline", "StableDiffusionXLImg2ImgPipeline", uses_vae_encoder=True,
                                      images=(("image", "init"),), strength=True),
            ),
            demo=DemoSpec("demo:tiny-sdxl", "stable-diffusion-xl", "Tiny Stable Diffusion XL pipeline (two text encoders, 64x64 images)"),
            tiny={"xl": True},
            variant_demos=_SDXL_VARIANT_DEMOS,
            optimum_folders=True,
        ),
        *_LCM_TASKS,
        DiffusionTask(
            "stable-diffusion-controlnet",
            (_TEXT_ENCODER, _UNET, _CONTROLNET, _VAE_DECODER),
            (DiffusionPipelineSpec("NeuronStableDiffusionControlNetPipeline", "StableDiffusionControlNetPipeline",
                                   images=(("image", "control"),)),),
            demo=DemoSpec("demo:tiny-sd-controlnet", "stable-diffusion-controlnet",
                          "Tiny Stable Diffusion with a ControlNet: a control image (edges) steers the 64x64 images"),
            tiny={"controlnets": 1},
        ),
        DiffusionTask(
            "stable-diffusion-xl-controlnet",
            (*_SDXL_TEXT_ENCODERS, _SDXL_UNET, _SDXL_CONTROLNET, _VAE_DECODER),
            (DiffusionPipelineSpec("NeuronStableDiffusionXLControlNetPipeline", "StableDiffusionXLControlNetPipeline",
                                   images=(("image", "control"),)),),
            demo=DemoSpec("demo:tiny-sdxl-controlnet", "stable-diffusion-xl-controlnet",
                          "Tiny Stable Diffusion XL with a ControlNet: a control image (edges) steers the 64x64 images"),
            tiny={"xl": True, "controlnets": 1},
        ),
    )
}

# Image editing: inpainting (SD, SDXL) and instruct-pix2pix. Their UNets take the latents joined to the
# mask and masked-image latents, or to the init image's latents; both encode images with the VAE encoder.
_INPAINT_IMAGES = (("image", "init"), ("mask_image", "mask"))
DIFFUSION_TASKS.update({
    t.name: t
    for t in (
        DiffusionTask(
            "stable-diffusion-inpaint",
            (_TEXT_ENCODER, _UNET, _VAE_ENCODER, _VAE_DECODER),
            (DiffusionPipelineSpec("NeuronStableDiffusionInpaintPipeline", "StableDiffusionInpaintPipeline", uses_vae_encoder=True,
                                   images=_INPAINT_IMAGES, strength=True),),
            demo=DemoSpec("demo:tiny-sd-inpaint", "stable-diffusion-inpaint",
                          "Tiny Stable Diffusion inpainting pipeline (9-channel UNet, 64x64 images)"),
            tiny={"variant": "sd-inpaint"},
            unet_in_channels=9,
            detected_from=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        ),
        DiffusionTask(
            "stable-diffusion-xl-inpaint",
            (*_SDXL_TEXT_ENCODERS, _SDXL_UNET, _VAE_ENCODER, _VAE_DECODER),
            (DiffusionPipelineSpec("NeuronStableDiffusionXLInpaintPipeline", "StableDiffusionXLInpaintPipeline", uses_vae_encoder=True,
                                   images=_INPAINT_IMAGES, strength=True),),
            demo=DemoSpec("demo:tiny-sdxl-inpaint", "stable-diffusion-xl-inpaint",
                          "Tiny Stable Diffusion XL inpainting pipeline (9-channel UNet, two text encoders, 64x64 images)"),
            tiny={"variant": "sdxl-inpaint"},
            unet_in_channels=9,
            detected_from=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
        ),
        DiffusionTask(
            "stable-diffusion-instruct-pix2pix",
            (_TEXT_ENCODER, _UNET, _VAE_ENCODER, _VAE_DECODER),
            (DiffusionPipelineSpec("NeuronStableDiffusionInstructPix2PixPipeline", "StableDiffusionInstructPix2PixPipeline",
                                   uses_vae_encoder=True, images=(("image", "init"),), extra_call=(("image_guidance_scale", 1.5),)),),
            demo=DemoSpec("demo:tiny-sd-instruct-pix2pix", "stable-diffusion-instruct-pix2pix",
                          "Tiny InstructPix2Pix pipeline (8-channel UNet, edits a 64x64 image by instruction)"),
            tiny={"variant": "sd-instruct-pix2pix"},
            unet_in_channels=8,
            unet_rows_per_image=3,  # text, image and unconditional rows (guidance_scale and image_guidance_scale)
            detected_from=("StableDiffusionPipeline",),
        ),
    )
})


def components_of(task: str, names) -> list[DiffusionComponent]:
    """The task's components as an artifact listing the component folders `names` has them (its ControlNets
    counted; at least one, so that an artifact without its ControlNet is found incomplete)."""
    components = DIFFUSION_TASKS[task].components
    repeated = [spec.name for spec in components if spec.repeated]
    count = sum(1 for name in names for base in repeated if name == base or re.fullmatch(rf"{base}_[1-9][0-9]*", name))
    return repeated_components(components, max(count, 1) if repeated else 0)


# diffusers' pipeline classes (model_index.json's _class_name) -> the task that exports them.
DIFFUSERS_PIPELINES: dict[str, str] = {
    spec.diffusers_class: task.name for task in DIFFUSION_TASKS.values() for spec in task.pipelines
}
PIPELINE_CLASSES: dict[str, DiffusionPipelineSpec] = {
    spec.class_name: spec for task in DIFFUSION_TASKS.values() for spec in task.pipelines
}


def pipeline_task_of(class_name: str) -> str:
    """The task of a Neuron*Pipeline class."""
    return next(task.name for task in DIFFUSION_TASKS.values() if any(p.class_name == class_name for p in task.pipelines))


def diffusers_task(class_name: str, unet_in_channels: Optional[int]) -> Optional[str]:
    """The task of a diffusers pipeline folder, from model_index.json's _class_name and its UNet's
    in_channels: the task that runs this class with such a UNet, else the class's own task (None: unsupported)."""
    for task in DIFFUSION_TASKS.values():
        classes = {spec.diffusers_class for spec in task.pipelines} | set(task.detected_from)
        if class_name in classes and task.unet_in_channels == unet_in_channels:
            return task.name
    return DIFFUSERS_PIPELINES.get(class_name)
