"""The diffusers modules of a pipeline as traceable components: positional tensors in, a tuple out."""

from __future__ import annotations

from typing import Sequence

import torch


class UNetModule(torch.nn.Module):
    """UNet2DConditionModel; its inputs after encoder_hidden_states are explicit: SDXL's added conditions
    (text_embeds, time_ids), an LCM UNet's timestep_cond (the guidance scale embedding) and ControlNet residuals."""

    def __init__(self, unet: torch.nn.Module, extra_input_names: Sequence[str] = ()):
        super().__init__()
        self.unet = unet
        self.extra_input_names = list(extra_input_names)

    def forward(self, sample, timestep, encoder_hidden_states, *extra_inputs):
        from .controlnet import split_residuals

        added_cond_kwargs, residuals = split_residuals(dict(zip(self.extra_input_names, extra_inputs)))
        timestep_cond = added_cond_kwargs.pop("timestep_cond", None)
        noise = self.unet(
            sample, timestep, encoder_hidden_states=encoder_hidden_states, timestep_cond=timestep_cond,
            added_cond_kwargs=added_cond_kwargs or None, return_dict=False, **residuals,
        )[0]
        return (noise,)


class VaeEncoderModule(torch.nn.Module):
    """AutoencoderKL's encoder: the latent distribution's parameters (mean and log-variance, concatenated).
    Sampling stays outside the compiled model, where the caller's generator draws the noise."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return (self.vae.encode(sample).latent_dist.parameters,)


class VaeDecoderModule(torch.nn.Module):
    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return (self.vae.decode(latent_sample, return_dict=False)[0],)
