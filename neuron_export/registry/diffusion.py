"""Diffusion tasks: their compiled components and the pipeline classes that run them.

A component's input axes name shape values that the exporter resolves from the pipeline's configs
and the shape options (export/diffusion.py). Its `kind` picks the traceable wrapper at export and
the adapter at load; pipelines are declared once here and built from this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from .inputs import EXACT, BucketAxes, InputSpec
from .tasks import DemoSpec


@dataclass(frozen=True)
class DiffusionComponent:
    """One compiled component of a diffusion pipeline."""

    name: str  # its folder in the artifact, e.g. "vae_decoder"
    source: str  # the pipeline folder it is built from ("vae" for both VAE halves)
    kind: str  # "text_encoder" | "unet" | "vae_encoder" | "vae_decoder": its wrapper and adapter
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
    pipelines: tuple[DiffusionPipelineSpec, ...]  # the first one is the txt2img pipeline
    demo: Optional[DemoSpec] = None
    tiny: dict[str, Any] = field(default_factory=dict)  # keywords of its tiny pipeline builder (demo/tiny.py)
    views: dict[str, str] = field(default_factory=lambda: {"diffusion": "image-generation"})
    # one UNet / VAE per resolution; the components whose input shapes do not depend on it (text encoders) are compiled once
    bucketable: tuple[BucketAxes, ...] = (BucketAxes(("height", "width"), EXACT),)

    @property
    def primary(self) -> DiffusionPipelineSpec:
        """The pipeline the image check, the benchmark and the playground run by default (txt2img for SD / SDXL)."""
        return self.pipelines[0]


_UNET_INPUTS = (
    InputSpec("sample", ("unet_batch_size", "latent_channels", "latent_height", "latent_width"), "gaussian", "float32"),
    InputSpec("timestep", ("unet_batch_size",), "timestep", "float32"),
    InputSpec("encoder_hidden_states", ("unet_batch_size", "sequence_length", "cross_attention_dim"), "gaussian", "float32"),
)
# SDXL's added conditions (added_cond_kwargs): the pooled text_encoder_2 embedding and the size / crop ids.
_SDXL_UNET_INPUTS = _UNET_INPUTS + (
    InputSpec("text_embeds", ("unet_batch_size", "text_embeds_dim"), "gaussian", "float32"),
    InputSpec("time_ids", ("unet_batch_size", "time_ids_dim"), "time_ids", "float32"),
)
_CLIP_INPUTS = (InputSpec("input_ids", ("batch_size", "sequence_length"), "clip_token_ids"),)
# The UNet runs on batch_size x num_images_per_prompt x 2 rows: classifier-free guidance; a
# data-parallel one is compiled for its share of them per core.
_UNET = DiffusionComponent("unet", "unet", "unet", _UNET_INPUTS, ("sample",), 1e-3, "unet-inference",
                           data_parallel=True, neuron_attention=True)
_SDXL_UNET = DiffusionComponent("unet", "unet", "unet", _SDXL_UNET_INPUTS, ("sample",), 1e-3, "unet-inference",
                                data_parallel=True, neuron_attention=True)
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
        ),
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
