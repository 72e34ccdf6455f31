"""The stand-in Neuron runtime behind the stand-in torch_neuronx (tests only, never shipped).

A traced Neuron module is a TorchScript module whose graph calls one operator, `neuron::forward_v2`,
with its "NEFF": here a header (the compiled input shapes and dtypes, the output structure, how it
was compiled) and the traced graph it runs. Like the real runtime it:
- exists only once `import torch_neuronx` registered the operator (torch.jit.load fails before);
- needs a Neuron device (/dev/neuron*) to run, and a NeuronCore this process may use;
- refuses any input shape or dtype but the compiled one, unless dynamic batching is on (then dim 0
  is split into chunks of the compiled batch, the last one padded, and every other dim must match);
- writes each aliased output into its state tensor (input_output_aliases, see torch_neuronx/_aliasing.py).
Every run is logged (`executions`) with the core it ran on, for tests of the placement.

This module lives outside the torch_neuronx package so that a test which drops `torch_neuronx`
from sys.modules does not drop the registered operator with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
from typing import Any, Iterator, Optional

import torch

from _neuron_standin_devices import device_nodes, host_family, visible_cores  # noqa: F401 (the runtime's host)

MAGIC = b"STANDIN-NEFF1"
# flags buffer of a traced module: what dynamic_batch / async_load / lazy_load / set_neuron_cores set
DYNAMIC_BATCH, ASYNC_LOAD, LAZY_LOAD, START_CORE, CORE_COUNT = range(5)

executions: list[dict[str, Any]] = []  # one entry per run: {"graph", "core", "shapes"}
_graphs: dict[str, torch.jit.ScriptModule] = {}
_local = threading.local()  # core / dynamic batching set by DataParallel for the call it makes; outputs while tracing


def encode_neff(header: dict[str, Any], graph: torch.jit.ScriptModule) -> torch.Tensor:
    buffer = io.BytesIO()
    torch.jit.save(graph, buffer)
    body = buffer.getvalue()
    header = {**header, "digest": hashlib.sha1(body).hexdigest()}
    text = json.dumps(header).encode()
    data = MAGIC + len(text).to_bytes(8, "little") + text + body
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def read_header(neff: torch.Tensor) -> dict[str, Any]:
    start = len(MAGIC)
    if bytes(neff[:start].tolist()) != MAGIC:
        raise RuntimeError("NRT: the model is not a NEFF this runtime can load")
    length = int.from_bytes(bytes(neff[start:start + 8].tolist()), "little")
    return json.loads(bytes(neff[start + 8:start + 8 + length].tolist()))


def _graph(neff: torch.Tensor, header: dict[str, Any]) -> torch.jit.ScriptModule:
    digest = header["digest"]
    if digest not in _graphs:
        length = int.from_bytes(bytes(neff[len(MAGIC):len(MAGIC) + 8].tolist()), "little")
        body = neff[len(MAGIC) + 8 + length:].numpy().tobytes()
        _graphs[digest] = torch.jit.load(io.BytesIO(body))
    return _graphs[digest]


@contextlib.contextmanager
def tracing(outputs: list[torch.Tensor]) -> Iterator[None]:
    """While torch_neuronx.trace records the wrapper's graph: the operator returns these outputs."""
    _local.tracing = outputs
    try:
        yield
    finally:
        _local.tracing = None


@contextlib.contextmanager
def placed(core: int, dynamic: Optional[bool]) -> Iterator[None]:
    """While DataParallel runs one copy: the core it runs on, and its dynamic batching."""
    _local.core, _local.dynamic = core, dynamic
    try:
        yield
    finally:
        _local.core, _local.dynamic = None, None


def _check_shapes(inputs: list[torch.Tensor], header: dict[str, Any], dynamic: bool) -> None:
    expected = header["inputs"]
    if len(inputs) != len(expected):
        raise RuntimeError(f"NRT: the model takes {len(expected)} inputs, got {len(inputs)}")
    for index, (tensor, spec) in enumerate(zip(inputs, expected)):
        shape, compiled = list(tensor.shape), spec["shape"]
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype != spec["dtype"]:
            raise RuntimeError(f"NRT: input {index} has dtype {dtype}; the NEFF was compiled for {spec['dtype']}")
        same = shape == compiled or (dynamic and len(shape) == len(compiled) and shape[1:] == compiled[1:] and shape[0] > 0)
        if not same:
            raise RuntimeError(f"NRT: input {index} has shape {shape}; the NEFF was compiled for {compiled} "
                               f"(incorrect tensor shape, status NRT_INVALID)")
    if dynamic and len({t.shape[0] for t in inputs}) > 1:
        raise RuntimeError("dynamic batching: every input must have the same size in dimension 0")


def _flat(outputs) -> list[torch.Tensor]:
    """The graph's (possibly nested) outputs in order, as the NEFF returns them."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for item in outputs for tensor in _flat(item)]


def _run_graph(graph, inputs: list[torch.Tensor], header: dict[str, Any], dynamic: bool) -> list[torch.Tensor]:
    compiled_batch = header["inputs"][0]["shape"][0]
    batch = inputs[0].shape[0]
    if not dynamic or batch == compiled_batch:
        return _flat(graph(*inputs))
    chunks = []
    for start in range(0, batch, compiled_batch):
        chunk = [t[start:start + compiled_batch] for t in inputs]
        short = compiled_batch - chunk[0].shape[0]
        if short:
            chunk = [torch.cat([c, c[-1:].expand(short, *c.shape[1:])]) for c in chunk]
        chunks.append(_flat(graph(*chunk)))
    return [torch.cat([c[i] for c in chunks])[:batch] for i in range(len(chunks[0]))]


def forward(inputs: list[torch.Tensor], neff: torch.Tensor, flags: torch.Tensor) -> list[torch.Tensor]:
    """The operator's kernel: run the NEFF on a NeuronCore."""
    outputs = getattr(_local, "tracing", None)
    if outputs is not None:
        return [o.clone() for o in outputs]
    if not device_nodes():
        raise RuntimeError("NRT: nrt_init failed: no Neuron device found (/dev/neuron*); is the Neuron driver loaded?")
    header = read_header(neff)
    core = getattr(_local, "core", None)
    if core is None:
        core = max(int(flags[START_CORE]), 0)
    cores = visible_cores()
    if core not in cores:
        raise RuntimeError(f"NRT: NeuronCore {core} is not available to this process (visible: {cores})")
    dynamic = getattr(_local, "dynamic", None)
    dynamic = bool(flags[DYNAMIC_BATCH]) if dynamic is None else dynamic
    _check_shapes(inputs, header, dynamic)
    aliases = {int(output): index for output, index in header.get("aliases", {}).items()}
    if aliases and dynamic:
        raise RuntimeError("stand-in: dynamic batching of a module with state tensors (input_output_aliases) is not modelled")
    with torch.no_grad():  # the graph gets copies: it never writes into host tensors (see torch_neuronx/_aliasing.py)
        results = _run_graph(_graph(neff, header), [t.contiguous().clone() for t in inputs], header, dynamic)
        for output, index in aliases.items():  # the state's device buffer takes its aliased output's value
            inputs[index].copy_(results[output])
    executions.append({"graph": header["graph"], "core": core, "shapes": [list(t.shape) for t in inputs]})
    return results


_LIBRARY = torch.library.Library("neuron", "DEF")
_LIBRARY.define("forward_v2(Tensor[] inputs, Tensor model, Tensor flags) -> Tensor[]")
_LIBRARY.impl("forward_v2", forward, "CompositeExplicitAutograd")
