"""Tiny random-weight image-editing pipelines: inpainting (SD, SDXL) and instruct-pix2pix.

They are the tiny SD(XL) pipeline of tiny.py with a UNet that takes more input channels (the latents
joined to the mask and masked-image latents, or to the init image's latents), built with a fixed
seed, offline.
"""

from __future__ import annotations

import inspect


def make_tiny_edit_pipeline(variant: str, unet_in_channels: int, xl: bool = False, seed: int = 0):
    """A tiny diffusers `variant` pipeline (StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline) for 64x64 images, its UNet taking unet_in_channels channels."""
    import diffusers

    from .tiny import _tiny_unet, make_tiny_sd_pipeline  # the tiny SD parts, one definition

    base = make_tiny_sd_pipeline(xl=xl, seed=seed)
    unet = _tiny_unet(xl, base.text_encoder.config.hidden_size, seed, in_channels=unet_in_channels)
    pipeline_class = getattr(diffusers, variant)
    accepted = inspect.signature(pipeline_class.__init__).parameters
    parts = {name: part for name, part in {**base.components, "unet": unet}.items() if name in accepted}
    if "requires_safety_checker" in accepted:
        parts["requires_safety_checker"] = False
    return pipeline_class(**parts)
