"""Static input shapes and dummy inputs, derived from the registry's declarative input specs."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Optional

import torch

from .errors import NeuronExportError
from .options import ExportOptions
from .registry import Architecture, InputSpec, TaskSpec, config_attr

# The example value the error of a missing shape option suggests (else 128).
SHAPE_EXAMPLES = {"audio_sequence_length": 16000, "text_batch_size": 4}


# Copies of the inputs an export holds at once: the trace example and the validation sets (one
# of them a strided view of a tensor twice as wide).
INPUT_COPIES = 4


def input_axes(inputs: Iterable[InputSpec], task: TaskSpec) -> dict[str, tuple[str, ...]]:
    """Axes of each input for a task: multiple-choice inserts num_choices after the batch axis."""
    return {spec.name: spec.axes[:1] + task.extra_axes + spec.axes[1:] for spec in inputs}


def resolve_shapes(
    arch: Architecture, task: TaskSpec, options: ExportOptions, config: Any, preprocessor: Optional[dict] = None
) -> tuple[dict[str, int], list[str]]:
    """The value of every shape axis the task uses, and warnings for shape options it ignores.
    Defaults come from the family, read from the config and the preprocessor config (image size)."""
    family = arch.family
    specs = arch.task_inputs(task.name, config)
    used = [axis for axes in input_axes(specs, task).values() for axis in axes]
    used = list(dict.fromkeys(used))
    shapes: dict[str, int] = {}
    for axis in used:
        value = getattr(options, axis, None)  # None too for axes that are no option (AST's mel bins)
        if value is None:
            default = family.default_shapes.get(axis)
            value = default(config, preprocessor or {}) if callable(default) else default
        if value is None:
            raise NeuronExportError(f"missing --{axis}: {task.name} needs it (for example --{axis} {SHAPE_EXAMPLES.get(axis, 128)})")
        limit_attr = family.shape_limits.get(axis)
        limit = config_attr(config, limit_attr) if limit_attr else None
        if isinstance(limit, int):
            reserved = arch.reserved_positions(config) if arch.reserved_positions and limit_attr == "max_position_embeddings" else 0
            if value > limit - reserved:
                detail = f", of which {arch.model_type} reserves the first {reserved}: at most {limit - reserved}" if reserved else ""
                raise NeuronExportError(f"--{axis} {value} is beyond the model's {limit_attr} ({limit}{detail})")
        shapes[axis] = value
    check_input_memory(input_shapes(input_axes(specs, task), shapes), shapes)
    warnings = [
        f"--{name} is not used by {task.name}; ignored" for name in options.shapes() if name not in shapes
    ]
    return shapes, warnings


def input_shapes(axes: dict[str, tuple[str, ...]], shapes: dict[str, int]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(shapes[a] for a in names) for name, names in axes.items()}


def check_input_memory(shapes_by_input: dict[str, tuple[int, ...]], shapes: dict[str, int]) -> None:
    """Refuse shapes whose inputs alone (the trace example and the validation sets, up to 8 bytes
    a value) would not fit in this host's memory: such an export can only crash."""
    need = INPUT_COPIES * 8 * sum(math.prod(shape) for shape in shapes_by_input.values())
    have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > have:
        given = ", ".join(f"--{name} {value}" for name, value in shapes.items())
        raise NeuronExportError(
            f"{given}: the model's inputs alone would need {need / 1e9:,.0f} GB of memory and this host has "
            f"{have / 1e9:,.0f} GB; use smaller shapes"
        )


def make_inputs(
    specs: Iterable[InputSpec],
    shapes_by_input: dict[str, tuple[int, ...]],
    config: Any,
    seed: int = 0,
    realistic: bool = False,
    non_contiguous: bool = False,
) -> dict[str, torch.Tensor]:
    """Random inputs of the given shapes.

    realistic: padded attention masks and two token-type segments, like a tokenizer's batch.
    non_contiguous: tensors that are strided views, as a caller slicing a larger batch passes.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for spec in specs:
        shape = shapes_by_input[spec.name]
        if non_contiguous:
            wide = GENERATORS[spec.kind](shape[:-1] + (shape[-1] * 2,), config, generator, realistic)
            tensors[spec.name] = wide[..., ::2]
        else:
            tensors[spec.name] = GENERATORS[spec.kind](shape, config, generator, realistic)
    return tensors


def value_ranges(specs: Iterable[InputSpec], config: Any) -> dict[str, list[int]]:
    """[lowest, highest] valid value of each input that has a bounded range (ids index an embedding)."""
    ranges = {spec.name: VALUE_RANGES[spec.kind](config) for spec in specs if spec.kind in VALUE_RANGES}
    return {name: bounds for name, bounds in ranges.items() if bounds is not None}


def _id_range(size_attribute: str) -> Callable[[Any], Any]:
    def bounds(config: Any):
        size = getattr(config, size_attribute, None)
        return [0, size - 1] if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None

    return bounds


# Input kinds (InputSpec.kind) whose values index a table -> their range from the model's config.
VALUE_RANGES: dict[str, Callable[[Any], Any]] = {
    "token_ids": _id_range("vocab_size"),
    "clip_token_ids": lambda config: _id_range("vocab_size")(_text_config(config)),
    "token_type_ids": _id_range("type_vocab_size"),
    "attention_mask": lambda config: [0, 1],
}


def validation_input_sets(
    specs: Iterable[InputSpec], shapes_by_input: dict[str, tuple[int, ...]], config: Any, dynamic_batch: bool
) -> list[dict[str, torch.Tensor]]:
    """Inputs to validate on: fresh values as strided views (as a caller slicing a batch passes
    them), and with a dynamic batch also another batch size than the compiled one."""
    specs = list(specs)
    sets = [make_inputs(specs, shapes_by_input, config, seed=1, realistic=True, non_contiguous=True)]
    if dynamic_batch:
        other = {name: (shape[0] + 1,) + shape[1:] for name, shape in shapes_by_input.items()}
        sets.append(make_inputs(specs, other, config, seed=3, realistic=True))
    return sets


def _token_ids(shape, config, generator, realistic):
    vocab = int(getattr(config, "vocab_size", 1000))
    # Skip the first ids: they are special tokens (pad, unk, cls, ...) in the usual vocabularies.
    low = min(5, vocab - 1)
    return torch.randint(low, vocab, shape, generator=generator)


def _attention_mask(shape, config, generator, realistic):
    mask = torch.ones(shape, dtype=torch.int64)
    if realistic and shape[-1] > 1:
        flat = mask.view(-1, shape[-1])
        # Every row but the first is padded at its end, keeping at least one real token.
        for row in range(1, flat.shape[0]):
            length = int(torch.randint(1, shape[-1] + 1, (1,), generator=generator))
            flat[row, length:] = 0
    return mask


def _token_type_ids(shape, config, generator, realistic):
    types = torch.zeros(shape, dtype=torch.int64)
    if realistic and getattr(config, "type_vocab_size", 0) > 1:
        types[..., shape[-1] // 2 :] = 1
    return types


def _gaussian(shape, config, generator, realistic):
    return torch.randn(shape, generator=generator)


def _waveform(shape, config, generator, realistic):
    """Audio samples in [-1, 1), as a normalized 16 kHz recording."""
    return torch.rand(shape, generator=generator) * 2 - 1


def _text_config(config: Any) -> Any:
    """A CLIP model's text config; a CLIP text encoder's config is itself."""
    text_config = config_attr(config, "text_config")
    return config if text_config is None else SimpleNamespace(**text_config) if isinstance(text_config, dict) else text_config


def _clip_token_ids(shape, config, generator, realistic):
    """Ids like a CLIP tokenizer's padded batch: start token, words, end token, then end tokens as padding."""
    config = _text_config(config)
    special = {config.bos_token_id, config.eos_token_id}
    ids = torch.randint(0, config.vocab_size, shape, generator=generator)
    ids[torch.isin(ids, torch.tensor(sorted(special)))] = 0
    if realistic and shape[-1] > 2:
        flat = ids.view(-1, shape[-1])
        for row in range(flat.shape[0]):
            length = int(torch.randint(1, shape[-1] - 1, (1,), generator=generator))
            flat[row, 0] = config.bos_token_id
            flat[row, length + 1 :] = config.eos_token_id
    return ids


def _timestep(shape, config, generator, realistic):
    return torch.randint(0, config.num_train_timesteps, shape, generator=generator).float()


def _size_ids(shape, config, generator, realistic):
    """SDXL's time ids: original size, crop top-left and target size, in pixels."""
    return torch.randint(0, 1025, shape, generator=generator).float()


def pad_value(spec: InputSpec, config: Any) -> float:
    """What pads an input up to a larger bucket: the pad token for token ids (masked anyway), else 0."""
    if spec.kind == "token_ids":
        return float(getattr(config, "pad_token_id", None) or 0)
    return 0.0


# Input kinds (InputSpec.kind) -> generator(shape, config, generator, realistic).
GENERATORS: dict[str, Callable[..., torch.Tensor]] = {
    "token_ids": _token_ids,
    "attention_mask": _attention_mask,
    "token_type_ids": _token_type_ids,
    "pixel_values": _gaussian,
    "waveform": _waveform,
    "gaussian": _gaussian,
    "clip_token_ids": _clip_token_ids,
    "timestep": _timestep,
    "time_ids": _size_ids,
}
