"""Backend registry and the `auto` choice."""

from __future__ import annotations

from ..errors import BackendUnavailableError, NeuronExportError
from ..options import ExportOptions
from .base import Backend, Runner
from .inductor import InductorBackend
from .neuron import NeuronBackend, neuron_device_present, torch_neuronx_importable, torch_neuronx_problem
from .torchscript import TorchScriptBackend

BACKENDS: dict[str, Backend] = {b.name: b for b in (NeuronBackend(), InductorBackend(), TorchScriptBackend())}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise NeuronExportError(f"unknown backend {name!r}; one of: {', '.join(BACKENDS)}") from None


def choose_backend(options: ExportOptions) -> tuple[Backend, str]:
    """The backend to use and why (the reason goes into the log and the manifest)."""
    if options.backend != "auto":
        backend, reason = get_backend(options.backend), "chosen with --backend"
    elif options.instance_type:
        backend, reason = BACKENDS["neuron"], f"--instance_type {options.instance_type} compiles for Neuron"
    elif torch_neuronx_importable() and neuron_device_present():
        backend, reason = BACKENDS["neuron"], "torch-neuronx and a Neuron device are present"
    else:
        why = torch_neuronx_problem() or "no Neuron device on this host"
        backend, reason = BACKENDS["inductor"], f"auto: {why}, so the portable AOTInductor backend"
    problem = backend.unavailable_reason(options)
    if problem:
        raise BackendUnavailableError(problem)
    if options.instance_type and backend.name != "neuron":
        raise NeuronExportError(f"--instance_type compiles for Neuron; it does not apply to --backend {backend.name}")
    return backend, reason


__all__ = ["Backend", "Runner", "BACKENDS", "get_backend", "choose_backend"]
