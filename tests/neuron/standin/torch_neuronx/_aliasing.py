"""input_output_aliases of torch_neuronx.trace (stand-in, tests only): state tensors held by the traced module.

Sources followed (read, not run: no Neuron hardware here):
- the API reference (aws-neuron-sdk, frameworks/torch/torch-neuronx/api-reference-guide/inference/
  api-torch-neuronx-trace.rst): "input_output_aliases (dict) - Marks input tensors as state tensors
  which are device tensors";
- the torch-neuronx Python sources of the 1.13.1.1.12.0 wheel (a copy in gschaves/torch-neuronx,
  torch_neuronx/xla_impl/trace.py and hlo_conversion.py): the keys are parameters of `func`, which must
  be a torch.nn.Module (an assert), matched by value and data_ptr (a key that is not one fails with a
  KeyError); each value is the index of the output that updates it. The traced NeuronModule keeps the
  keys, in the dict's order, as `self.states = ParameterList([Parameter(key, requires_grad=False)])`,
  appends them to the inputs of every call (`inputs.extend(self.states)`), and the NEFF's metadata maps
  each aliased output to its state input (`metaneff.output_aliases_to[output] = input`), so the runtime
  writes that output into the state's device buffer. Every output, aliased or not, is still returned
  (the output packer is built from all of them). `move_trace_to_device` moves `trace.states`;
- the AWS T5 tutorial (src/examples/pytorch/torch-neuronx/t5-inference-tutorial.ipynb) and
  optimum-neuron (modeling_seq2seq.py): a loaded module's `parameters()` are its states, and the host
  sets them with `state.copy_(tensor)`.

Deviations of the stand-in, all on the strict side or unobservable through the API:
- the state is copied in and out around each run of the graph, which never writes into host tensors:
  a state changes only through its aliased output (on a device, a graph may not write inputs either);
- a non-dict input_output_aliases is a TypeError here (the real one fails later, on `.items()`);
- an alias whose output index is out of range, or whose output's shape / dtype differs from its state,
  fails at trace time (an XLA alias must match its parameter's shape; the real one fails in the compiler);
- dynamic batching of a module with states is refused (what the real runtime does is not documented).
"""

from __future__ import annotations

from typing import Sequence

import torch


def state_names(func, input_output_aliases: dict) -> list[str]:
    """The parameter name of each alias key, in the dict's order (the order of the traced module's states)."""
    if not isinstance(input_output_aliases, dict):
        raise TypeError(f"input_output_aliases must be a dict, got {type(input_output_aliases).__name__}")
    if not input_output_aliases:
        return []
    assert isinstance(func, torch.nn.Module), "For input_output_aliasing, the input func is expected to be of type torch.nn.Module"
    names = []
    for key, output in input_output_aliases.items():
        if not isinstance(key, torch.Tensor):
            raise KeyError(key)
        if isinstance(output, bool) or not isinstance(output, int):
            raise TypeError(f"input_output_aliases values are output indices (int), got {type(output).__name__}")
        found = [name for name, parameter in func.named_parameters()
                 if parameter.data_ptr() == key.data_ptr() and torch.equal(parameter, key)]
        if not found:  # what `aliased_inputs[tensor]` raises in torch-neuronx when the key is no parameter of func
            raise KeyError(key)
        names.append(found[0])
    return names


class StatesAsInputs(torch.nn.Module):
    """`func` with its aliased parameters taken as extra, last inputs: the graph the NEFF runs, whose
    state tensors are device buffers rather than weights inlined into it."""

    def __init__(self, func: torch.nn.Module, names: Sequence[str]):
        super().__init__()
        self.func = func
        self.names = list(names)

    def forward(self, *inputs):
        count = len(self.names)
        given, states = inputs[:-count], inputs[-count:]
        owners = [self.func.get_submodule(name.rpartition(".")[0]) for name in self.names]
        leaves = [name.rpartition(".")[2] for name in self.names]
        held = [owner._parameters[leaf] for owner, leaf in zip(owners, leaves)]
        try:  # torch.func.functional_call refuses to run under torch.jit.trace: swap the parameters by hand
            for owner, leaf, state in zip(owners, leaves, states):
                owner._parameters[leaf] = state
            return self.func(*given)
        finally:
            for owner, leaf, parameter in zip(owners, leaves, held):
                owner._parameters[leaf] = parameter


def check_outputs(flat: list[torch.Tensor], states: list[torch.Tensor], input_output_aliases: dict, inputs: int) -> dict[int, int]:
    """{output index: input index of its state}, as the NEFF's metadata records it (states follow the inputs)."""
    aliases = {}
    for position, (state, output) in enumerate(zip(states, input_output_aliases.values())):
        if not 0 <= output < len(flat):
            raise RuntimeError(f"input_output_aliases: output {output} does not exist; the graph has {len(flat)} outputs")
        if output in aliases:
            raise RuntimeError(f"input_output_aliases: output {output} is aliased to two state tensors")
        if flat[output].shape != state.shape or flat[output].dtype != state.dtype:
            raise RuntimeError(f"input_output_aliases: output {output} is {tuple(flat[output].shape)} {flat[output].dtype}; "
                               f"its state tensor is {tuple(state.shape)} {state.dtype} (an alias must match)")
        aliases[output] = inputs + position
    return aliases


def held_states(states: list[torch.Tensor]) -> torch.nn.ParameterList:
    """The traced module's `states`, as torch-neuronx makes them: Parameters over the alias keys themselves."""
    return torch.nn.ParameterList([torch.nn.Parameter(state, requires_grad=False) for state in states])
