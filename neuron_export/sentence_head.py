"""A sentence-transformers folder's modules after the encoder, as one traceable head.

modules.json lists the Transformer (the encoder, compiled with the rest), then the modules that turn
token embeddings into the sentence embedding. Supported, with sentence-transformers' own semantics:
Pooling (cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken; several modes are
concatenated in the listed order), Dense (a linear layer, a torch.nn activation, optional residual)
and Normalize. Any other module is refused: dropping it would give wrong embeddings that still
"validate" against a reference built the same way.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import NeuronExportError
from .model_files import read_json
from .registry import SENTENCE_TRANSFORMERS

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# Pooling configs written before sentence-transformers 5 name each mode by a boolean key.
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
SENTENCE = "sentence_embedding"


class Pooling(torch.nn.Module):
    def __init__(self, modes: Sequence[str]):
        super().__init__()
        self.modes = list(modes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([POOLERS[mode](tokens, mask) for mode in self.modes], dim=-1)


def _cls(tokens, mask):
    first = mask.to(torch.int32).argmax(dim=1)  # the first real token (left padding skipped)
    return torch.gather(tokens, 1, first.view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])).squeeze(1)


def _max(tokens, mask):
    return tokens.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values


def _mean_parts(tokens, mask):
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1), weights.sum(dim=1).clamp(min=1e-9)


def _mean(tokens, mask):
    total, count = _mean_parts(tokens, mask)
    return total / count


def _mean_sqrt_len(tokens, mask):
    total, count = _mean_parts(tokens, mask)
    return total / torch.sqrt(count)


def _weighted_mean(tokens, mask):
    positions = torch.arange(1, tokens.shape[1] + 1, dtype=tokens.dtype, device=tokens.device).view(1, -1, 1)
    offset = mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1).to(tokens.dtype)  # left padding
    weights = mask.unsqueeze(-1).to(tokens.dtype) * (positions - offset)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def _last_token(tokens, mask):
    length = tokens.shape[1]
    values, from_end = mask.to(torch.int32).flip(1).max(1)
    from_end = torch.where(values == 0, length - 1, from_end)
    index = (length - from_end - 1).view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])
    return torch.gather(tokens * mask.unsqueeze(-1).to(tokens.dtype), 1, index).squeeze(1)


POOLERS = {"cls": _cls, "max": _max, "mean": _mean, "mean_sqrt_len_tokens": _mean_sqrt_len,
           "weightedmean": _weighted_mean, "lasttoken": _last_token}


class Dense(torch.nn.Module):
    """Attribute names as sentence-transformers' Dense, so its saved weights load as they are."""

    def __init__(self, linear: torch.nn.Linear, activation: torch.nn.Module, residual: str):
        super().__init__()
        self.linear, self.activation_function, self.residual_kind = linear, activation, residual
        if residual == "projection":
            self.residual = torch.nn.Linear(linear.in_features, linear.out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation_function(self.linear(x))
        if self.residual_kind == "identity":
            out = out + x
        elif self.residual_kind == "projection":
            out = out + self.residual(x)
        return out


class Normalize(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, p=2, dim=-1)


class SentenceEmbeddingModel(torch.nn.Module):
    """The encoder, then the folder's pooling / dense / normalize modules: token and sentence embeddings."""

    def __init__(self, encoder: torch.nn.Module, input_names: Sequence[str], steps: Sequence[torch.nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.input_names = list(input_names)
        self.output_names = list(SENTENCE_TRANSFORMERS.outputs)
        self.pooling = steps[0]
        self.after_pooling = torch.nn.ModuleList(steps[1:])

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = dict(zip(self.input_names, inputs))
        tokens = self.encoder(**kwargs, return_dict=True).last_hidden_state
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.int64, device=tokens.device)
        sentence = self.pooling(tokens, mask)
        for step in self.after_pooling:
            sentence = step(sentence)
        return tokens, sentence


def sentence_head(modules: list[dict[str, Any]], folder: Path) -> list[torch.nn.Module]:
    """The modules after the Transformer, as torch modules (the first one the Pooling)."""
    kinds = [module_kind(module) for module in modules]
    if kinds[0] != "Transformer":
        raise NeuronExportError(f"{folder / 'modules.json'}: the first module must be the Transformer, not {kinds[0]}")
    steps: list[torch.nn.Module] = []
    for module, kind in zip(modules[1:], kinds[1:]):
        where = Path(folder) / str(module.get("path", ""))
        if kind == "Pooling" and not steps:
            steps.append(_pooling(where))
        elif kind in ("Dense", "Normalize") and steps:
            steps.append(_dense(where) if kind == "Dense" else Normalize())
        else:
            raise NeuronExportError(
                f"{folder}: sentence-transformers module {module.get('type')!r} is not supported here (modules: "
                f"{', '.join(kinds)}); supported: the Transformer, then one Pooling, then Dense and Normalize modules"
            )
    if not steps:
        raise NeuronExportError(f"{folder / 'modules.json'} lists no Pooling module: the sentence embedding is undefined")
    return steps


def module_kind(module: dict[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _pooling(folder: Path) -> Pooling:
    config = read_json(folder / "config.json")
    modes = config.get("pooling_mode")
    if modes is None:
        modes = [mode for key, mode in LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
    modes = [modes] if isinstance(modes, str) else list(modes)
    unknown = [mode for mode in modes if mode not in POOLING_MODES]
    if unknown or not modes:
        raise NeuronExportError(f"{folder}: pooling mode {unknown or modes} is not supported; supported: {', '.join(POOLING_MODES)}")
    if config.get("include_prompt", True) is False:
        raise NeuronExportError(f"{folder}: pooling without the prompt (include_prompt: false) is not supported")
    return Pooling(modes)


def _dense(folder: Path) -> Dense:
    config = read_json(folder / "config.json")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, SENTENCE) != SENTENCE:
            raise NeuronExportError(f"{folder}: a Dense module on {config[key]!r} is not supported (only on {SENTENCE})")
    try:
        linear = torch.nn.Linear(int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias", True)))
    except (KeyError, TypeError, ValueError) as error:
        raise NeuronExportError(f"{folder / 'config.json'} is not a Dense config: {error}") from None
    residual = "none"
    if config.get("use_residual"):
        residual = "identity" if linear.in_features == linear.out_features else "projection"
    dense = Dense(linear, _activation(folder, config.get("activation_function", "torch.nn.modules.activation.Tanh")), residual)
    try:
        dense.load_state_dict(_dense_weights(folder))
    except RuntimeError as error:
        raise NeuronExportError(f"{folder}: its weights do not fit its config ({str(error).splitlines()[0]})") from None
    return dense.eval()


def _activation(folder: Path, name: Any) -> torch.nn.Module:
    """A torch.nn activation class by its dotted name (as sentence-transformers saves it); never other code."""
    if name is None:
        return torch.nn.Identity()
    module_name, _, class_name = str(name).rpartition(".")
    activation = None
    if module_name.startswith("torch.nn"):
        activation = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(activation, type) and issubclass(activation, torch.nn.Module)):
        raise NeuronExportError(f"{folder}: activation {name!r} is not a torch.nn module; not supported")
    return activation()


def _dense_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise NeuronExportError(f"{folder} has no weights (model.safetensors or pytorch_model.bin)")
