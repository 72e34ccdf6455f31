"""Compiled components in the shape of the diffusers / transformers modules they replace.

A diffusers pipeline holds these where it held its text encoder, UNet and VAE: it reads their
`config`, `dtype` and `device`, calls them as it calls the eager modules, and may call `.to()`
(a no-op: the compiled models stay where they were compiled for).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional

import torch

from ..artifact import CompiledModel
from ..errors import InputMismatchError, NeuronExportError


def run_at_compiled_batch(compiled: CompiledModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run a call of at most the compiled batch: a smaller one (fewer prompts, or a call without
    guidance) is padded by repeating its last row, and the padding dropped from the outputs."""
    batch = next(iter(inputs.values())).shape[0]
    compiled_batch = compiled.call_batch
    if compiled.dynamic_batch or batch == compiled_batch:
        return compiled(**inputs)
    if batch > compiled_batch and len(compiled.manifest.neuron_cores) > len(compiled.cores):
        # Compiled per NeuronCore for data parallelism, on a host that gave it fewer cores: the rows
        # (CFG's unconditional and text halves) run one after the other.
        chunks = [run_at_compiled_batch(compiled, {n: t[start:start + compiled_batch] for n, t in inputs.items()})
                  for start in range(0, batch, compiled_batch)]
        return {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}
    if batch > compiled_batch:
        raise InputMismatchError(
            f"the compiled {compiled.manifest.component} takes at most {compiled_batch} rows and this call needs {batch}: "
            "re-export with a larger --batch_size / --num_images_per_prompt, or with --dynamic-batch-size"
        )
    missing = compiled_batch - batch
    padded = {name: torch.cat([t, t[-1:].expand(missing, *t.shape[1:])]) for name, t in inputs.items()}
    return {name: output[:batch] for name, output in compiled(**padded).items()}


class RunsCompiled:
    """The device, dtype and description of a module that runs the compiled model `self.compiled`."""

    compiled: CompiledModel

    @property
    def device(self) -> torch.device:
        return self.compiled.device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # inputs and outputs are fp32 (auto-cast happens inside the compiled graph)

    def extra_repr(self) -> str:
        return f"path={self.compiled.path}, backend={self.compiled.manifest.backend}"


class CompiledComponent(RunsCompiled, torch.nn.Module):
    def __init__(self, compiled: CompiledModel, config: Any):
        super().__init__()
        self.compiled = compiled
        self.config = config


class CompiledTextEncoder(CompiledComponent):
    """CLIPTextModel / CLIPTextModelWithProjection: returns the transformers output classes."""

    def forward(self, input_ids, attention_mask=None, output_hidden_states=None, return_dict=True, **unused):
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.clip.modeling_clip import CLIPTextModelOutput

        if attention_mask is not None:
            raise NeuronExportError("the compiled text encoder takes input_ids only (its config has use_attention_mask set)")
        outputs = run_at_compiled_batch(self.compiled, {"input_ids": input_ids})
        hidden_states = None
        if output_hidden_states:
            hidden_states = tuple(outputs[n] for n in self.compiled.output_names if n.startswith("hidden_states."))
            if not hidden_states:
                raise NeuronExportError(
                    "this text encoder was compiled without hidden states, which clip_skip needs; "
                    "Stable Diffusion pipelines here run without clip_skip"
                )
        if "text_embeds" in outputs:
            result = CLIPTextModelOutput(
                text_embeds=outputs["text_embeds"], last_hidden_state=outputs["last_hidden_state"], hidden_states=hidden_states
            )
        else:
            result = BaseModelOutputWithPooling(last_hidden_state=outputs["last_hidden_state"], hidden_states=hidden_states)
        return result if return_dict is not False else result.to_tuple()


class CompiledUNet(CompiledComponent):
    """UNet2DConditionModel. Its config's sample_size is the compiled latent size, so the
    pipelines' default height and width are the compiled ones."""

    def __init__(self, compiled: CompiledModel, config: Any):
        super().__init__(compiled, config)
        self.added_condition_names = [n for n in compiled.input_names if n in ("text_embeds", "time_ids")]
        self.embeds_guidance = "timestep_cond" in compiled.input_names  # an LCM UNet: w's embedding, no CFG rows
        # SDXL's _get_add_time_ids checks the added-embedding width against this.
        self.add_embedding = SimpleNamespace(linear_1=SimpleNamespace(in_features=config.get("projection_class_embeddings_input_dim")))

    def forward(
        self,
        sample,
        timestep,
        encoder_hidden_states,
        timestep_cond=None,
        cross_attention_kwargs=None,
        added_cond_kwargs=None,
        return_dict=True,
        down_block_additional_residuals=None,
        mid_block_additional_residual=None,
        **unused,
    ):
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        from .controlnet import residual_inputs

        if cross_attention_kwargs:
            raise NeuronExportError("the compiled UNet takes no cross_attention_kwargs (LoRA scales are fused at export: --lora_scales)")
        if (timestep_cond is not None) != self.embeds_guidance:
            raise NeuronExportError(
                "the compiled UNet takes the guidance scale embedding (timestep_cond) of a latent consistency model"
                if self.embeds_guidance else "the compiled UNet takes no timestep_cond: it was not exported from a latent consistency UNet"
            )
        inputs = {"sample": sample, "timestep": timestep_per_row(timestep, sample), "encoder_hidden_states": encoder_hidden_states}
        if self.embeds_guidance:
            inputs["timestep_cond"] = timestep_cond
        inputs.update(added_conditions(self.added_condition_names, added_cond_kwargs, "UNet"))
        inputs.update(residual_inputs(self.compiled.input_names, down_block_additional_residuals, mid_block_additional_residual))
        noise = run_at_compiled_batch(self.compiled, inputs)["sample"]
        return UNet2DConditionOutput(sample=noise) if return_dict else (noise,)


def timestep_per_row(timestep, sample: torch.Tensor) -> torch.Tensor:
    """The pipelines pass one timestep for the whole batch: a number, a 0-d tensor or an expanded (stride-0)
    view. The compiled UNet and ControlNet take one per row, contiguous: a stride-0 view silently corrupts an
    AOTInductor model."""
    timestep = torch.as_tensor(timestep, device=sample.device).to(torch.float32)
    if timestep.numel() == 1:
        timestep = timestep.reshape(1).expand(sample.shape[0])
    return timestep.contiguous()


def added_conditions(names: list[str], added_cond_kwargs: Optional[dict[str, Any]], what: str) -> dict[str, torch.Tensor]:
    """SDXL's added conditions (text_embeds, time_ids) a compiled model takes, from diffusers' added_cond_kwargs."""
    for name in names:
        if not added_cond_kwargs or name not in added_cond_kwargs:
            raise NeuronExportError(f"the compiled SDXL {what} needs added_cond_kwargs[{name!r}]")
    return {name: added_cond_kwargs[name] for name in names}


class CompiledVae(CompiledComponent):
    """AutoencoderKL: decode() runs the compiled decoder, encode() (img2img) the compiled encoder and
    returns the latent distribution, which the pipeline samples with its own generator."""

    def __init__(self, decoder: CompiledModel, encoder: Optional[CompiledModel], config: Any):
        super().__init__(decoder, config)
        self.encoder_model = encoder

    def encode(self, sample, return_dict=True):
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
        from diffusers.models.modeling_outputs import AutoencoderKLOutput

        if self.encoder_model is None:
            raise NeuronExportError("this pipeline was loaded without the VAE encoder; use an img2img pipeline class")
        sizes = [(b["height"], b["width"]) for b in self.encoder_model.buckets] or [tuple(self.encoder_model.inputs["sample"].shape[-2:])]
        if tuple(sample.shape[-2:]) not in sizes:
            height, width = sample.shape[-2:]
            compiled = ", ".join(f"{w}x{h}" for h, w in sizes)
            raise NeuronExportError(
                f"the image is {width}x{height} pixels and this pipeline was compiled for {compiled}: "
                f"resize the image, or re-export with --height {height} --width {width}"
            )
        parameters = run_at_compiled_batch(self.encoder_model, {"sample": sample})["latent_parameters"]
        distribution = DiagonalGaussianDistribution(parameters)
        return AutoencoderKLOutput(latent_dist=distribution) if return_dict else (distribution,)

    def decode(self, latent_sample, return_dict=True, generator=None):
        from diffusers.models.autoencoders.vae import DecoderOutput

        image = run_at_compiled_batch(self.compiled, {"latent_sample": latent_sample})["sample"]
        return DecoderOutput(sample=image) if return_dict else (image,)
