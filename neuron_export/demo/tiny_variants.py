"""Tiny random-weight Stable Diffusion variants (LCM, SDXL Turbo, the SDXL refiner, inpainting, instruct-pix2pix), built from
configs with a fixed seed like tiny.py's pipelines, whose parts they share: 64x64 images."""

from __future__ import annotations

from typing import Callable

from ..errors import NeuronExportError
from .tiny_edit import make_tiny_edit_pipeline
from .tiny import SCHEDULER_CONFIG, _clip_text_config, _tiny_unet, _tiny_vae, make_tiny_sd_pipeline
from .vocab import make_clip_tokenizer

TEXT_HIDDEN = 32  # the tiny CLIP text encoders' width
ADDITION_TIME_EMBED_DIM, POOLED_DIM = 8, 32  # SDXL's added conditions in tiny.py's UNet


def make_tiny_lcm_pipeline(seed: int = 0):
    """A LatentConsistencyModelPipeline: the tiny SD parts, a UNet with time_cond_proj_dim (the guidance
    scale embedding) and an LCMScheduler set as latent-consistency checkpoints ship it."""
    import torch
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler
    from transformers import CLIPTextModel

    tokenizer = make_clip_tokenizer()
    unet, vae = _tiny_unet(False, TEXT_HIDDEN, seed, time_cond_proj_dim=16), _tiny_vae(seed + 1)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer)).eval()
    scheduler = LCMScheduler(original_inference_steps=50, set_alpha_to_one=True, **SCHEDULER_CONFIG)
    return LatentConsistencyModelPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def make_tiny_sdxl_turbo_pipeline(seed: int = 0):
    """The tiny SDXL pipeline with sdxl-turbo's scheduler (Euler ancestral, trailing timesteps), run at
    guidance_scale 0 in 1-4 steps."""
    from diffusers import EulerAncestralDiscreteScheduler

    pipe = make_tiny_sd_pipeline(xl=True, seed=seed)
    pipe.scheduler = EulerAncestralDiscreteScheduler(timestep_spacing="trailing", **SCHEDULER_CONFIG)
    return pipe


def make_tiny_sdxl_refiner_pipeline(seed: int = 0):
    """A StableDiffusionXLImg2ImgPipeline shaped like stable-diffusion-xl-refiner-1.0: no text_encoder, its
    UNet conditioned on text_encoder_2 alone and on 5 time ids (sizes, crop and an aesthetic score). Its VAE
    is the tiny SDXL base's of the same seed, so it refines that base's latents."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline
    from transformers import CLIPTextModelWithProjection

    unet = _tiny_unet(True, TEXT_HIDDEN, seed + 10, cross_attention_dim=TEXT_HIDDEN,
                      projection_class_embeddings_input_dim=5 * ADDITION_TIME_EMBED_DIM + POOLED_DIM)
    tokenizer = make_clip_tokenizer()
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(tokenizer)).eval()
    return StableDiffusionXLImg2ImgPipeline(
        vae=_tiny_vae(seed + 1), text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=tokenizer, unet=unet,
        scheduler=EulerDiscreteScheduler(timestep_spacing="leading", **SCHEDULER_CONFIG),
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
    )


VARIANTS: dict[str, Callable] = {
    "lcm": make_tiny_lcm_pipeline,
    "sdxl-turbo": make_tiny_sdxl_turbo_pipeline,
    "sdxl-refiner": make_tiny_sdxl_refiner_pipeline,
    # image editing (tiny_edit.py): the UNet takes the latents and what the variant joins to them
    "sd-inpaint": lambda seed: make_tiny_edit_pipeline("StableDiffusionInpaintPipeline", 9, seed=seed),
    "sdxl-inpaint": lambda seed: make_tiny_edit_pipeline("StableDiffusionXLInpaintPipeline", 9, xl=True, seed=seed),
    "sd-instruct-pix2pix": lambda seed: make_tiny_edit_pipeline("StableDiffusionInstructPix2PixPipeline", 8, seed=seed),
}


def make_tiny_variant(variant: str, seed: int = 0):
    if variant not in VARIANTS:
        raise NeuronExportError(f"no tiny Stable Diffusion variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    return VARIANTS[variant](seed)
