"""A tiny LoRA in diffusers' format for the tiny Stable Diffusion pipelines (tiny.py), built offline with
a fixed seed: the weights a --lora_model_ids folder holds (pytorch_lora_weights.safetensors)."""

from __future__ import annotations

from pathlib import Path

from .tiny import make_tiny_sd_pipeline, prepare_dir

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def build_tiny_lora(out_dir, xl: bool = False, seed: int = 0, text_encoders: bool = True, std: float = 0.3) -> Path:
    """Save a rank-4 LoRA of the tiny SD(XL) UNet's attention (and of its text encoders') into out_dir.
    Its weights are drawn with `std` (peft's init leaves the LoRA a no-op), so fusing it changes outputs."""
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = make_tiny_sd_pipeline(xl=xl)
    parts = {"unet": (pipe.unet, UNET_TARGETS)}
    if text_encoders:
        parts.update({name: (getattr(pipe, name), TEXT_TARGETS) for name in ("text_encoder", "text_encoder_2") if hasattr(pipe, name)})
    generator = torch.Generator().manual_seed(seed)
    layers = {}
    for name, (module, targets) in parts.items():
        # transformers' add_adapter wants peft >= 0.22 (not on PyPI): inject the layers with peft itself
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=targets), module)
        with torch.no_grad():
            for parameter_name, parameter in module.named_parameters():
                if "lora_" in parameter_name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
        layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(module))
    out = prepare_dir(out_dir)
    type(pipe).save_lora_weights(out, safe_serialization=True, **layers)
    return out
