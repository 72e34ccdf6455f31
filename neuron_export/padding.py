"""Padding inputs up to a compiled model's static shapes, axis by axis.

A compiled input is a static shape whose axes are named by shape options ("batch_size",
"sequence_length", "text_batch_size", ...). Inputs that share an axis must agree on its size; each
axis is padded up to its compiled size where padding is inert, and anything larger is an error
naming the compiled shape.
"""

from __future__ import annotations

from typing import Any, Collection

import torch

from .errors import InputMismatchError

# Axes whose inputs can be padded: attention masks make padded tokens, rows and samples inert (audio
# without a mask is padded with silence, as transformers' feature extractor pads it).
PADDABLE_AXES = frozenset({"batch_size", "num_choices", "sequence_length", "text_batch_size", "image_batch_size",
                           "audio_sequence_length"})
Signature = dict[str, tuple[tuple[int, ...], tuple[str, ...]]]  # input name -> (compiled shape, axis names)


def input_sizes(given: dict[str, Any], signature: Signature) -> dict[str, int]:
    """The size of every axis of the given inputs (which must agree on shared axes)."""
    sizes: dict[str, int] = {}
    owner: dict[str, str] = {}
    for name, tensor in given.items():
        compiled, axes = signature[name]
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != len(axes):
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise InputMismatchError(f"input {name!r} has shape {shape}; the model was compiled for {compiled} ({', '.join(axes)})")
        for axis, size in zip(axes, tensor.shape):
            if sizes.setdefault(axis, size) != size:
                raise InputMismatchError(f"input {name!r} has shape {tuple(tensor.shape)} but {owner[axis]!r} has "
                                         f"{tuple(given[owner[axis]].shape)} ({axis} {sizes[axis]})")
            owner.setdefault(axis, name)
    return sizes


def target_size(axis: str, size: int, given: dict[str, Any], signature: Signature, free_axes: Collection[str]) -> int:
    """The size `axis` is padded to, or an error naming the compiled shape. free_axes: axes the compiled
    model takes at any size (a dynamic batch; bucketed axes, which a bucketed model fits itself)."""
    name = next(n for n in given if axis in signature[n][1])
    compiled = signature[name][0]
    limit = compiled[signature[name][1].index(axis)]
    if size == limit or axis in free_axes:
        return size
    shape = tuple(given[name].shape)
    if size < limit and axis in PADDABLE_AXES:
        return limit
    if size < limit:
        raise InputMismatchError(f"input {name!r} has shape {shape}; the model was compiled for {compiled} and {axis} must be {limit}")
    hint = ("split the batch, or export with a larger batch_size or dynamic_batch_size=True" if axis == "batch_size"
            else f"cut it, or export with a larger {axis}")
    raise InputMismatchError(f"input {name!r} has shape {shape}, larger than the compiled shape {compiled} ({axis} {size} > {limit}); {hint}")


def default_input(name: str, axes: tuple[str, ...], sizes: dict[str, int], device: torch.device) -> torch.Tensor:
    """What transformers assumes for an input left out: every token (or sample) attended, one segment."""
    if name not in ("attention_mask", "token_type_ids") or any(axis not in sizes for axis in axes):
        raise InputMismatchError(f"missing input {name!r}")
    fill = torch.ones if name == "attention_mask" else torch.zeros
    return fill(tuple(sizes[axis] for axis in axes), dtype=torch.long, device=device)


def pad_to(tensor: torch.Tensor, target: tuple[int, ...], value: int) -> torch.Tensor:
    """The tensor in the top-left corner of a `target`-shaped one filled with `value`."""
    padded = tensor.new_full(target, value)
    padded[tuple(slice(0, size) for size in tensor.shape)] = tensor
    return padded
