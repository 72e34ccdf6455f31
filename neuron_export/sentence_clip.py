"""A sentence-transformers folder as one traceable model: the text encoder with its pooling head
(sentence_head.py), or a CLIP folder such as clip-ViT-B-32.

A CLIP folder's first module is a CLIPModel (or, from sentence-transformers 5.4 on, a Transformer
around a CLIP checkpoint). sentence-transformers embeds a text with CLIP's get_text_features and an
image with get_image_features (the projected, unnormalized tower outputs); the compiled model takes
both batches in one call, as optimum-neuron's, and returns text_embeds and image_embeds. Only
Normalize modules may follow; anything else is refused, never dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .errors import NeuronExportError
from .model_files import read_json
from .registry import SENTENCE_TRANSFORMERS
from .sentence_head import Normalize, SentenceEmbeddingModel, module_kind, sentence_head
from .sources import ModelSource, sentence_transformers_modules

# What sentence-transformers calls per modality for CLIP (its CLIPModel module's defaults).
CLIP_MODALITIES = {
    "text": {"method": "get_text_features", "method_output_name": "pooler_output"},
    "image": {"method": "get_image_features", "method_output_name": "pooler_output"},
}


def sentence_outputs(source: ModelSource) -> list[str]:
    """The compiled outputs of a sentence-transformers folder; a module this tool does not support is refused here."""
    modules = sentence_transformers_modules(source.path)
    if source.model_type == "clip":
        clip_steps(modules, source.path)
        return list(SENTENCE_TRANSFORMERS.clip_outputs)
    sentence_head(modules, source.path)
    return list(SENTENCE_TRANSFORMERS.outputs)


def sentence_model(source: ModelSource, encoder: torch.nn.Module, input_names: Sequence[str]) -> torch.nn.Module:
    """The eager encoder with the folder's modules after it: positional inputs -> tuple of sentence_outputs()."""
    modules = sentence_transformers_modules(source.path)
    if source.model_type == "clip":
        return SentenceCLIPModel(encoder, input_names, clip_steps(modules, source.path)).eval()
    return SentenceEmbeddingModel(encoder, input_names, sentence_head(modules, source.path)).eval()


class SentenceCLIPModel(torch.nn.Module):
    """transformers' CLIPModel as sentence-transformers runs it: each tower's projection, then Normalize steps."""

    def __init__(self, clip: torch.nn.Module, input_names: Sequence[str], steps: Sequence[torch.nn.Module]):
        super().__init__()
        self.clip = clip
        self.input_names = list(input_names)
        self.output_names = list(SENTENCE_TRANSFORMERS.clip_outputs)
        self.steps = torch.nn.ModuleList(steps)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = dict(zip(self.input_names, inputs))
        text = self.clip.get_text_features(input_ids=kwargs["input_ids"], attention_mask=kwargs.get("attention_mask")).pooler_output
        image = self.clip.get_image_features(pixel_values=kwargs["pixel_values"]).pooler_output
        for step in self.steps:
            text, image = step(text), step(image)
        return text, image


def clip_steps(modules: list[dict[str, Any]], folder: Path) -> list[torch.nn.Module]:
    """The modules after a CLIP folder's CLIPModel (Normalize only), checked."""
    kinds = [module_kind(module) for module in modules]
    if kinds[0] not in ("CLIPModel", "Transformer"):
        raise NeuronExportError(f"{folder / 'modules.json'}: the first module of a CLIP folder must be its CLIPModel, not {kinds[0]}")
    _check_modalities(Path(folder) / str(modules[0].get("path", "")))
    if any(kind != "Normalize" for kind in kinds[1:]):
        raise NeuronExportError(f"{folder}: a CLIP folder's modules {', '.join(kinds)} are not supported here; "
                                "supported: its CLIPModel, then Normalize modules")
    return [Normalize() for _ in kinds[1:]]


def _check_modalities(module_folder: Path) -> None:
    """sentence-transformers >= 5.4 records which CLIP method embeds each modality: only the defaults are compiled."""
    config_file = module_folder / "sentence_bert_config.json"
    modalities: Optional[dict] = read_json(config_file).get("modality_config") if config_file.is_file() else None
    if modalities is not None and modalities != CLIP_MODALITIES:
        raise NeuronExportError(f"{config_file}: modality_config {modalities} is not supported; supported: {CLIP_MODALITIES}")


def placeholder_modality(inputs: dict[str, Any], compiled: dict[str, tuple[tuple, tuple]], pad_token_id: int) -> tuple[dict, list[str]]:
    """Texts alone or images alone, as SentenceTransformer.encode takes them: the other tower gets one
    placeholder row (pad tokens, or a black image), and its output is dropped. Returns the inputs and
    the names of the outputs to drop (none for a call with both, or for a model with one tower)."""
    if not {"input_ids", "pixel_values"} <= set(compiled):
        return inputs, []
    has_text, has_image = inputs.get("input_ids") is not None, inputs.get("pixel_values") is not None
    if has_text == has_image:  # both given; or neither, which pad_inputs reports
        return inputs, []
    filled = dict(inputs)
    if has_text:
        shape = (1, *compiled["pixel_values"][0][1:])
        filled["pixel_values"] = torch.zeros(shape, dtype=torch.float32, device=inputs["input_ids"].device)
        return filled, ["image_embeds"]
    device = inputs["pixel_values"].device
    filled["input_ids"] = torch.full((1, 1), pad_token_id, dtype=torch.long, device=device)
    filled["attention_mask"] = torch.ones((1, 1), dtype=torch.long, device=device)
    return filled, ["text_embeds"]
