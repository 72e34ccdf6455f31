"""trace() and the flags a traced module carries into its archive (stand-in, tests only)."""

from __future__ import annotations

import copy
import os
import shlex
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

import _neuron_standin_runtime as runtime

from . import _aliasing

CAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class _FunctionModule(torch.nn.Module):
    def __init__(self, func):
        super().__init__()
        self.func = func

    def forward(self, *inputs):
        return self.func(*inputs)


class _AutoCast(torch.nn.Module):
    """What neuronx-cc's --auto-cast does to the graph: matmult casts matrix products, all casts everything;
    inputs and outputs keep their traced dtypes."""

    def __init__(self, module: torch.nn.Module, mode: str, dtype: torch.dtype):
        super().__init__()
        self.mode, self.dtype = mode, dtype
        self.module = copy.deepcopy(module).to(dtype) if mode == "all" else module

    def forward(self, *inputs):
        if self.mode == "all":
            outputs = self.module(*[t.to(self.dtype) if t.is_floating_point() else t for t in inputs])
        else:
            with torch.autocast("cpu", dtype=self.dtype):
                outputs = self.module(*inputs)
        return _map(outputs, lambda t: t.float() if t.is_floating_point() else t)


def _map(value, function):
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, (tuple, list)):
        return tuple(_map(item, function) for item in value)
    raise RuntimeError(f"torch_neuronx.trace: outputs must be tensors or (nested) tuples of tensors, got {type(value).__name__}")


def _flatten(value, flat: list) -> Any:
    """The output structure with each tensor replaced by its index in `flat`."""
    if isinstance(value, torch.Tensor):
        flat.append(value)
        return len(flat) - 1
    return [_flatten(item, flat) for item in value]


def _rebuild(structure, flat):
    if isinstance(structure, int):
        return flat[structure]
    return tuple(_rebuild(item, flat) for item in structure)


class _NeuronModule(torch.nn.Module):
    """What trace() returns, once traced: one call of the NEFF on a NeuronCore."""

    def __init__(self, neff: torch.Tensor, structure, states: list[torch.Tensor]):
        super().__init__()
        self.register_buffer("neff", neff)
        self.register_buffer("flags", torch.tensor([0, 0, 0, -1, -1], dtype=torch.int64))
        self.structure = structure
        self.states = _aliasing.held_states(states)  # input_output_aliases: device state, after the inputs

    def forward(self, *inputs):
        outputs = torch.ops.neuron.forward_v2([*inputs, *self.states], self.neff, self.flags)
        return _rebuild(self.structure, outputs)


def _compile(args: list[str], workdir: Path) -> None:
    """Run neuronx-cc as torch_neuronx does: `neuronx-cc compile <hlo> --framework XLA ... <compiler_args>`."""
    try:
        from neuronxcc.driver import main as neuronx_cc
    except ImportError as error:
        raise RuntimeError(f"neuronx-cc is not available: {error}") from None
    command = ["compile", str(workdir / "model.hlo"), "--framework", "XLA", "--output", str(workdir / "graph.neff"), *args]
    (workdir / "command.txt").write_text("neuronx-cc " + " ".join(map(shlex.quote, command)) + "\n")
    status = neuronx_cc(command, cwd=workdir)
    if status != 0:
        raise RuntimeError(f"neuronx-cc failed with {status}")


def _platform_target(args: list[str], cpu_backend: bool) -> str:
    from . import PLATFORM_TARGET_AT_IMPORT

    given = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--target"] + [a.split("=", 1)[1] for a in args if a.startswith("--target=")]
    if runtime.device_nodes():
        return given[-1] if given else runtime.host_family() or "trn1"
    if not cpu_backend:
        raise RuntimeError("torch_neuronx.trace: no Neuron device on this host; pass cpu_backend=True and --target to compile for one")
    target = given[-1] if given else PLATFORM_TARGET_AT_IMPORT
    if target is None:
        raise RuntimeError("torch_neuronx.trace: cannot detect the Neuron platform without a device: set "
                           "NEURON_PLATFORM_TARGET_OVERRIDE before importing torch_neuronx, or pass --target")
    return target


def trace(func, example_inputs, *_, input_output_aliases={}, compiler_workdir=None, compiler_args=None,  # noqa: B006 (documented default)
          partitioner_config=None, inline_weights_to_neff=True, cpu_backend=False):
    """Compile `func` for a NeuronCore (the documented signature, torch-neuronx 2.21+)."""
    if _:
        warnings.warn("torch_neuronx.trace: arguments after example_inputs must be given by keyword", UserWarning)
    names = _aliasing.state_names(func, input_output_aliases)
    states = list(input_output_aliases)
    example = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not all(isinstance(t, torch.Tensor) for t in example):
        raise TypeError("example_inputs must be a tensor or a tuple of tensors")
    args = shlex.split(compiler_args) if isinstance(compiler_args, str) else list(compiler_args or [])
    target = _platform_target(args, cpu_backend)
    module = func if isinstance(func, torch.nn.Module) else _FunctionModule(func)
    if names:
        module = _aliasing.StatesAsInputs(module, names)
    cast = _value(args, "--auto-cast") or "none"
    if cast != "none":
        module = _AutoCast(module, cast, CAST_DTYPES.get(_value(args, "--auto-cast-type") or "bf16", torch.float32))
    with tempfile.TemporaryDirectory(prefix="neuronx-cc-") as scratch:
        workdir = Path(compiler_workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph_inputs = (*example, *(state.detach().clone() for state in states))
            graph = torch.jit.trace(module, graph_inputs, check_trace=False)
            (workdir / "model.hlo").write_text(str(graph.inlined_graph))
            _compile(["--target", target, *args], workdir)
            flat: list[torch.Tensor] = []
            structure = _flatten(_map(graph(*(t.clone() for t in graph_inputs)), lambda t: t), flat)
    aliases = _aliasing.check_outputs(flat, states, input_output_aliases, len(example))
    header = {
        "graph": type(func).__name__, "target": target, "compiler_args": args, "cpu_backend": cpu_backend,
        "inline_weights_to_neff": inline_weights_to_neff, "partitioner_config": partitioner_config is not None,
        "inputs": [{"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for t in (*example, *states)],
        "aliases": {str(output): index for output, index in aliases.items()},  # the metaneff's output_aliases_to
        "env": {name: os.environ.get(name) for name in ("NEURON_FUSE_SOFTMAX", "NEURON_CUSTOM_SILU")},
    }
    wrapper = _NeuronModule(runtime.encode_neff(header, graph), structure, states)
    with runtime.tracing(flat), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(wrapper, example, check_trace=False)


def _value(args: list[str], flag: str):
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag] + [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
    return values[-1] if values else None


def _flags(module) -> torch.Tensor:
    flags = getattr(module, "flags", None)
    if not isinstance(flags, torch.Tensor) or not hasattr(module, "neff"):
        raise TypeError(f"expected a module returned by torch_neuronx.trace, got {type(module).__name__}")
    return flags


def dynamic_batch(neuron_script):
    """Let the traced module take any size in dimension 0 (in place; returns it)."""
    _flags(neuron_script)[runtime.DYNAMIC_BATCH] = 1
    return neuron_script


def async_load(trace, enable_async_load=True):
    _flags(trace)[runtime.ASYNC_LOAD] = int(enable_async_load)


def lazy_load(trace, enable_lazy_load=True):
    _flags(trace)[runtime.LAZY_LOAD] = int(enable_lazy_load)


def move_trace_to_device(trace, device_id):
    _flags(trace)[runtime.START_CORE] = int(device_id)
