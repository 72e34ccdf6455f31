"""torch_neuronx.DataParallel (stand-in, tests only): one copy of a traced module per NeuronCore, each
call's inputs split along `dim` across them (api-torch-neuronx-data-parallel)."""

from __future__ import annotations

import warnings

import torch

import _neuron_standin_runtime as runtime

from ._tracing import _flags


def _core_id(device) -> int:
    if isinstance(device, str) and device.startswith("nc:"):
        return int(device[3:])
    if isinstance(device, int) and not isinstance(device, bool):
        return device
    raise ValueError(f"device_ids must be ints or 'nc:N' strings, got {device!r}")


class DataParallel(torch.nn.Module):
    def __init__(self, module, device_ids=None, dim=0, set_dynamic_batching=True):
        super().__init__()
        _flags(module)  # a traced Neuron module, nothing else
        visible = runtime.visible_cores()
        if not visible:
            raise RuntimeError("NRT: nrt_init failed: no Neuron device found (/dev/neuron*)")
        self.device_ids = [_core_id(d) for d in device_ids] if device_ids is not None else visible
        missing = [d for d in self.device_ids if d not in visible]
        if missing:
            raise RuntimeError(f"NeuronCores {missing} are not available to this process (visible: {visible})")
        self.module = module
        self.dim = dim
        self.dynamic_batching = bool(set_dynamic_batching)
        self.num_workers = 2 * len(self.device_ids)
        self.split_size = None

    def disable_dynamic_batching(self):
        self.dynamic_batching = False

    def forward(self, *inputs):
        if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise TypeError("DataParallel takes tensors only")
        size = inputs[0].shape[self.dim]
        parts = min(len(self.device_ids), size)
        if size % len(self.device_ids):
            warnings.warn("NeuronCores are not being fully utilized because the batch does not divide across them", UserWarning)
        chunks = [torch.tensor_split(t, parts, dim=self.dim) for t in inputs]
        results = []
        for index in range(parts):
            with runtime.placed(self.device_ids[index], self.dynamic_batching):
                results.append(self.module(*[c[index] for c in chunks]))
        if isinstance(results[0], torch.Tensor):
            return torch.cat(results, dim=self.dim)
        return tuple(torch.cat([r[i] for r in results], dim=self.dim) for i in range(len(results[0])))
