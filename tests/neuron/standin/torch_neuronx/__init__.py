"""Stand-in for AWS's torch_neuronx (tests only, never shipped), strict where the real one is.

The public API mirrors the torch-neuronx inference API reference (awsdocs-neuron, api-torch-neuronx-
trace / -async-lazy-load / -data-parallel / -core-placement): trace, dynamic_batch, DataParallel,
async_load, lazy_load, move_trace_to_device, experimental.set_neuron_cores. Compiling runs the
stand-in neuronx-cc, which accepts only its documented flags; running needs a Neuron device
(/dev/neuron*) and refuses any shape but the compiled one (see _neuron_standin_runtime).

Like the real package, it is built for one torch release, the one its version starts with
(torch-neuronx 2.9.0.2.15.x is for torch 2.9), and does not load under another one.
"""

from __future__ import annotations

import importlib.metadata
import os

import torch

__version__ = importlib.metadata.version("torch-neuronx")
_built_for = ".".join(__version__.split(".")[:2])
if _built_for != ".".join(torch.__version__.split("+")[0].split(".")[:2]):
    # What a C++ extension built against another libtorch does on import.
    raise ImportError(f"{os.path.dirname(__file__)}/lib/libtorchneuron.so: undefined symbol: "
                      "_ZN3c1017RegisterOperatorsD1Ev")

# Read once, when the library loads (as the real one does): compile for this platform without a device.
PLATFORM_TARGET_AT_IMPORT = os.environ.get("NEURON_PLATFORM_TARGET_OVERRIDE") or None

import _neuron_standin_runtime as _runtime  # noqa: E402  (registers the neuron::forward_v2 operator)

from . import experimental, standin  # noqa: E402,F401
from ._parallel import DataParallel  # noqa: E402
from ._tracing import async_load, dynamic_batch, lazy_load, move_trace_to_device, trace  # noqa: E402

__all__ = ["trace", "dynamic_batch", "DataParallel", "async_load", "lazy_load", "move_trace_to_device", "experimental"]
