"""Tiny ControlNets for the tiny Stable Diffusion (XL) pipelines (tiny.py), built offline with a fixed seed: a
StableDiffusion(XL)ControlNetPipeline (demo:tiny-sd-controlnet, demo:tiny-sdxl-controlnet) and a lone
ControlNet folder (--controlnet_ids).

ControlNetModel.from_unet copies the UNet's encoder and zero-initialises the convolutions that produce its
residuals and the last layer of its control-image embedding: the ControlNet then adds exactly nothing and
a compiled pipeline that dropped it would still match diffusers. Those layers are re-drawn (the embedding
scaled so that the control image moves the residuals by about as much as they are large), so the residuals
are of order 1 and the image depends on the control image.
"""

from __future__ import annotations

from pathlib import Path

from .tiny import make_tiny_sd_pipeline, prepare_dir

# The tiny VAE scales by 8: the control-image embedding must downsample by 8 too (3 stride-2 convs).
EMBEDDING_CHANNELS = (8, 16, 16, 16)
EMBEDDING_GAIN = 30.0  # the re-drawn embedding's output is ~0.03 before this: the control image would barely matter


def make_tiny_controlnet(unet, seed: int = 0):
    """A ControlNet of the tiny UNet (its encoder's weights) with its zero layers re-drawn from `seed`."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBEDDING_CHANNELS)
    for name, module in controlnet.named_modules():
        if not isinstance(module, torch.nn.Conv2d):
            continue
        if name.startswith("controlnet_cond_embedding"):
            torch.nn.init.kaiming_normal_(module.weight)
            torch.nn.init.zeros_(module.bias)
        elif name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
            module.reset_parameters()
    with torch.no_grad():
        controlnet.controlnet_cond_embedding.conv_out.weight.mul_(EMBEDDING_GAIN)
    return controlnet.eval()


def make_tiny_controlnet_pipeline(controlnets: int = 1, seed: int = 0, xl: bool = False):
    """The tiny StableDiffusion(XL)ControlNetPipeline with `controlnets` ControlNets (several: a MultiControlNetModel)."""
    import diffusers

    base = make_tiny_sd_pipeline(xl=xl, seed=seed)
    nets = [make_tiny_controlnet(base.unet, seed=seed + 10 + index) for index in range(controlnets)]
    pipeline_class = diffusers.StableDiffusionXLControlNetPipeline if xl else diffusers.StableDiffusionControlNetPipeline
    settings = {} if xl else dict(requires_safety_checker=False)
    return pipeline_class(**base.components, **settings, controlnet=nets[0] if controlnets == 1 else nets)


def build_tiny_controlnet_pipeline(out_dir, controlnets: int = 1, seed: int = 0, xl: bool = False) -> Path:
    """Save the tiny ControlNet pipeline (64x64 images; several ControlNets in controlnet/, controlnet_1/, ...)."""
    out = prepare_dir(out_dir)
    make_tiny_controlnet_pipeline(controlnets, seed, xl).save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_controlnet(out_dir, seed: int = 0, xl: bool = False) -> Path:
    """Save one ControlNet of the tiny SD(XL) pipeline's UNet: what a --controlnet_ids folder holds."""
    out = prepare_dir(out_dir)
    make_tiny_controlnet(make_tiny_sd_pipeline(xl=xl).unet, seed=seed).save_pretrained(out, safe_serialization=True)
    return out
