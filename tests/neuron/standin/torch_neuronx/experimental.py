"""torch_neuronx.experimental placement (stand-in, tests only; api-torch-neuronx-core-placement)."""

from __future__ import annotations

import _neuron_standin_runtime as runtime

from ._tracing import _flags


def set_neuron_cores(trace, start_nc=-1, nc_count=-1):
    """Place the traced module on NeuronCores start_nc .. start_nc + nc_count - 1 (-1: the default placement)."""
    if start_nc >= 0 and start_nc not in runtime.visible_cores():
        raise RuntimeError(f"NeuronCore {start_nc} is not available to this process (visible: {runtime.visible_cores()})")
    flags = _flags(trace)
    flags[runtime.START_CORE] = int(start_nc)
    flags[runtime.CORE_COUNT] = int(nc_count)
