"""What tests read from the stand-in (not part of the real torch_neuronx API)."""

from __future__ import annotations

from typing import Any

import torch

import _neuron_standin_runtime as runtime

from ._tracing import _flags


def executions() -> list[dict[str, Any]]:
    """Every NEFF run so far in this process: {"graph": traced class name, "core": NeuronCore, "shapes": inputs}."""
    return list(runtime.executions)


def clear_executions() -> None:
    runtime.executions.clear()


def describe(module_or_path) -> dict[str, Any]:
    """How a traced module (or a saved one) was compiled, and the flags set on it."""
    module = torch.jit.load(str(module_or_path)) if not isinstance(module_or_path, torch.nn.Module) else module_or_path
    flags = _flags(module).tolist()
    header = runtime.read_header(module.neff)
    names = ("dynamic_batch", "async_load", "lazy_load", "start_nc", "nc_count")
    return {**header, "flags": dict(zip(names, flags))}
