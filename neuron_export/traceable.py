"""Wrap a transformers model into the one signature every backend traces:
positional tensors in (in the registry's input order), a flat tuple of named tensors out."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .errors import NeuronExportError, first_line
from .options import ExportOptions
from .registry import ARCHITECTURES
from .sentence_clip import sentence_model
from .sources import ModelSource


class TraceableModel(torch.nn.Module):
    def __init__(
        self,
        model: torch.nn.Module,
        input_names: Sequence[str],
        output_names: Sequence[str],
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        call_options: Optional[dict] = None,
    ):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.flags = dict(call_options or {})  # the architecture's (registry Architecture.call_options)
        # Only pass the flags when asked: some heads reject unknown keyword arguments.
        if output_hidden_states:
            self.flags["output_hidden_states"] = True
        if output_attentions:
            self.flags["output_attentions"] = True

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.input_names, inputs)), return_dict=True, **self.flags)
        named = flatten_outputs(outputs)
        return tuple(named[name] for name in self.output_names)


def flatten_outputs(outputs) -> dict[str, torch.Tensor]:
    """ModelOutput -> {name: tensor}; tuples such as hidden_states become hidden_states.0, .1, ..."""
    flat: dict[str, torch.Tensor] = {}
    for name, value in outputs.items():
        if isinstance(value, torch.Tensor):
            flat[name] = value
        elif isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    flat[f"{name}.{index}"] = item
    return flat


def discover_output_names(model, task_outputs: Sequence[str], example: dict[str, torch.Tensor], flags: dict) -> list[str]:
    """The task's outputs this model really returns, plus hidden states / attentions when asked."""
    try:
        with torch.no_grad():
            flat = flatten_outputs(model(**example, return_dict=True, **flags))
    except Exception as error:  # the model's own checks, e.g. ViT's fixed image size
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in example.items())
        raise NeuronExportError(f"the model cannot run on the requested shapes ({shapes}): {first_line(error)}") from None
    names = [n for n in task_outputs if n in flat]
    if not names:
        raise NeuronExportError(f"the model returns none of the task's outputs ({', '.join(task_outputs)})")
    for prefix in ("hidden_states", "attentions"):
        if flags.get(f"output_{prefix}"):
            extra = [n for n in flat if n.startswith(prefix + ".")]
            if not extra:
                raise NeuronExportError(f"--output_{prefix}: this model returns no {prefix}")
            names += extra
    return names


def output_flags(options: ExportOptions) -> dict[str, bool]:
    return {k: True for k in ("output_hidden_states", "output_attentions") if getattr(options, k)}


def eager_traceable(source: ModelSource, eager: torch.nn.Module, input_names: list[str], output_names: list[str],
                    options: ExportOptions) -> torch.nn.Module:
    """The eager model with the traced signature: positional inputs -> tuple of the named outputs
    (for a sentence-transformers folder, with its pooling, dense and normalize modules)."""
    if source.library == "sentence_transformers":
        return sentence_model(source, eager, input_names)
    return TraceableModel(eager, input_names, output_names, **output_flags(options), call_options=call_options(source.model_type)).eval()


def call_options(model_type: str) -> dict:
    """Keywords every forward call of this architecture needs (phi: use_cache=False)."""
    arch = ARCHITECTURES.get(model_type)
    return dict(arch.call_options) if arch else {}


class CastModel(torch.nn.Module):
    """Auto-cast for the portable backends, captured in the graph.

    "matmul": autocast inside forward (an outer autocast context is dropped by torch.export);
    "all": the whole model in the low-precision dtype. Outputs always come back as fp32.
    """

    def __init__(self, model: torch.nn.Module, mode: str, dtype: torch.dtype, device_type: str):
        super().__init__()
        self.mode = mode
        self.dtype = dtype
        self.device_type = device_type
        self.model = model.to(dtype) if mode == "all" else model
        self.input_names = getattr(model, "input_names", None)
        self.output_names = getattr(model, "output_names", None)

    def forward(self, *inputs: torch.Tensor):
        if self.mode == "all":
            inputs = tuple(t.to(self.dtype) if t.is_floating_point() else t for t in inputs)
            outputs = self.model(*inputs)
        else:
            with torch.autocast(self.device_type, dtype=self.dtype):
                outputs = self.model(*inputs)
        return tuple(o.float() for o in outputs)
