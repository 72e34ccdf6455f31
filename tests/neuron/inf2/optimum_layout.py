"""Folders in optimum-neuron's layout, compiled with torch_neuronx as `optimum-cli export neuron` does.

Written from optimum-neuron's source, independently of neuron_export: exporters/neuron/__main__.py
(layout, shapes), convert.py (flags, config.json's `neuron` section), model_configs/traced_configs.py
(inputs and outputs per architecture), model_wrappers.py (the UNet wrapper).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch_neuronx
import transformers

# The exporter's inputs per architecture, in the traced order (traced_configs.py).
INPUTS = {"bert": ["input_ids", "attention_mask", "token_type_ids"], "roberta": ["input_ids", "attention_mask"]}
CLIP_LENGTH = 77


def neuron_section(**fields) -> dict:
    import neuronxcc

    section = {"compiler_type": "neuronx-cc", "compiler_version": neuronxcc.__version__, "inline_weights_to_neff": True,
               "dynamic_batch_size": False, "tensor_parallel_size": 1, "optlevel": "2", "auto_cast": None, "auto_cast_type": None,
               "instance_type": "inf2", "int_dtype": "int64", "float_dtype": "fp32", "output_attentions": False,
               "output_hidden_states": False}
    return {**section, **fields}


def write_config(folder: Path, config: dict, **neuron) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**config, "neuron": neuron_section(**neuron)}, indent=2, default=list))


class Positional(torch.nn.Module):
    """How optimum traces a transformers model: positional inputs in the exporter's order, tuple outputs."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs)), return_dict=False)


def encoder_folder(source: Path, out: Path, task: str, auto_class: str, batch_size: int = 1, sequence_length: int = 16, **neuron) -> Path:
    """`optimum-cli export neuron --model SOURCE --task TASK --batch_size B --sequence_length S OUT`."""
    config = transformers.AutoConfig.from_pretrained(source)
    model = getattr(transformers, auto_class).from_pretrained(source).eval()
    names = INPUTS[config.model_type]
    example = {"input_ids": torch.randint(5, config.vocab_size, (batch_size, sequence_length)),
               "attention_mask": torch.ones(batch_size, sequence_length, dtype=torch.int64),
               "token_type_ids": torch.zeros(batch_size, sequence_length, dtype=torch.int64)}
    traced = torch_neuronx.trace(Positional(model, names), tuple(example[n] for n in names),
                                 compiler_args=["--model-type", "transformer", "--auto-cast", "none", "--optlevel", "2"])
    out.mkdir(parents=True)
    torch.jit.save(traced, str(out / "model.neuron"))
    write_config(out, config.to_dict(), **{"static_batch_size": batch_size, "static_sequence_length": sequence_length,
                                           "model_type": config.model_type, "task": task, **neuron})
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


class TextEncoder(torch.nn.Module):
    def __init__(self, encoder, hidden_states):
        super().__init__()
        self.encoder, self.hidden_states = encoder, hidden_states

    def forward(self, input_ids):
        return self.encoder(input_ids, output_hidden_states=self.hidden_states, return_dict=False)


class UnetWrapper(torch.nn.Module):
    """model_wrappers.UnetNeuronWrapper: the timestep as float, one per row."""

    def __init__(self, unet, added):
        super().__init__()
        self.unet, self.added = unet, added

    def forward(self, sample, timestep, encoder_hidden_states, *added):
        conditions = dict(zip(("text_embeds", "time_ids"), added)) if self.added else None
        timestep = timestep.float().expand((sample.shape[0],))
        return self.unet(sample, timestep, encoder_hidden_states, added_cond_kwargs=conditions, return_dict=False)


class VaeEncoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return (self.vae.encode(sample)["latent_dist"].parameters,)


class VaeDecoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(z=latent_sample, return_dict=False)


def _save(traced, folder: Path, config: dict, **neuron) -> None:
    write_config(folder, config, **neuron)
    torch.jit.save(traced, str(folder / "model.neuron"))


def diffusion_folder(pipe, out: Path, xl: bool = False, batch_size: int = 1, images: int = 1) -> Path:
    """`optimum-cli export neuron --model PIPE --batch_size 1 --height H --width W OUT` for an SD / SDXL pipeline."""
    pipe.save_config(out)
    for part in ("scheduler", "tokenizer", "tokenizer_2"):
        if getattr(pipe, part, None) is not None:
            getattr(pipe, part).save_pretrained(out / part)
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    latent = pipe.unet.config.sample_size
    rows = batch_size * images
    ids = torch.full((batch_size, CLIP_LENGTH), 0, dtype=torch.int64)
    for name, kind in (("text_encoder", "clip-text-model"), ("text_encoder_2", "clip-text-with-projection")):
        encoder = getattr(pipe, name, None)
        if encoder is not None:
            traced = torch_neuronx.trace(TextEncoder(encoder.eval(), xl), ids, compiler_args=["--model-type", "transformer"])
            _save(traced, out / name, encoder.config.to_dict(), static_batch_size=batch_size, static_sequence_length=CLIP_LENGTH,
                  model_type=kind, output_hidden_states=xl, task="feature-extraction")
    unet = pipe.unet.eval()
    example = [torch.randn(rows, unet.config.in_channels, latent, latent), torch.full((rows,), 999.0),
               torch.randn(rows, CLIP_LENGTH, unet.config.cross_attention_dim)]
    if xl:
        pooled = pipe.text_encoder_2.config.projection_dim
        example += [torch.randn(rows, pooled), torch.randn(rows, (unet.config.projection_class_embeddings_input_dim - pooled) // unet.config.addition_time_embed_dim)]
    traced = torch_neuronx.trace(UnetWrapper(unet, xl), tuple(example), compiler_args=["--model-type=unet-inference"])
    torch_neuronx.async_load(traced)
    torch_neuronx.lazy_load(traced)
    _save(traced, out / "unet", {**dict(unet.config), "model_type": "unet"}, static_batch_size=rows, static_sequence_length=CLIP_LENGTH,
          static_num_channels=unet.config.in_channels, static_height=latent, static_width=latent, static_vae_scale_factor=scale)
    vae = pipe.vae.eval()
    pixels = torch.randn(rows, vae.config.in_channels, latent * scale, latent * scale)
    traced = torch_neuronx.trace(VaeEncoder(vae), pixels, compiler_args=["--model-type=unet-inference"])
    _save(traced, out / "vae_encoder", {**dict(vae.config), "model_type": "vae-encoder"}, static_batch_size=rows,
          static_num_channels=vae.config.in_channels, static_height=latent * scale, static_width=latent * scale)
    traced = torch_neuronx.trace(VaeDecoder(vae), torch.randn(rows, vae.config.latent_channels, latent, latent),
                                 compiler_args=["--model-type=unet-inference"])
    _save(traced, out / "vae_decoder", {**dict(vae.config), "model_type": "vae-decoder"}, static_batch_size=rows,
          static_num_channels=vae.config.latent_channels, static_height=latent, static_width=latent)
    return out
