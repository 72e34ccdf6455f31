"""Compiled buckets sent from the task that compiled them to the task that saves them together.

A TorchScript module (what the torchscript backend and torch-neuronx produce) cannot be pickled:
it travels as the bytes of torch.jit.save. Its buckets were traces of one module sharing its
weights; loaded separately they hold copies, so the weights that are equal in every bucket are
tied again before saving (the backends store tied weights once). Anything else (files a compiler
wrote on shared storage) travels as it is.
"""

from __future__ import annotations

import io
from typing import Any

import torch

TORCHSCRIPT = "torchscript-bytes"


def ship(compiled: Any) -> Any:
    if isinstance(compiled, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)
        return (TORCHSCRIPT, buffer.getvalue())
    return compiled


def unship(shipped: Any) -> Any:
    if isinstance(shipped, tuple) and len(shipped) == 2 and shipped[0] == TORCHSCRIPT:
        return torch.jit.load(io.BytesIO(shipped[1]))
    return shipped


def unship_buckets(shipped: dict[str, Any]) -> dict[str, Any]:
    """Bucket name -> compiled, with the weights of TorchScript buckets tied to the first bucket's."""
    compiled = {name: unship(value) for name, value in shipped.items()}
    modules = [m for m in compiled.values() if isinstance(m, torch.jit.ScriptModule)]
    if len(modules) > 1:
        first = dict(modules[0].named_parameters())
        for module in modules[1:]:
            for name, parameter in module.named_parameters():
                shared = first.get(name)
                if shared is not None and shared.shape == parameter.shape and torch.equal(shared, parameter):
                    *path, leaf = name.split(".")
                    owner = module
                    for part in path:
                        owner = getattr(owner, part)
                    setattr(owner, leaf, shared)
    return compiled
