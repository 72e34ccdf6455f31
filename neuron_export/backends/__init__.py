"""Backend registry and the `auto` choice."""

from __future__ import annotations

from ..errors import BackendUnavailableError, NeuronExportError
from ..options import ExportOptions
from .base import Backend, Runner
from .inductor import InductorBackend
from .neuron import NeuronBackend, neuron_device_present, torch_neuronx_importable, torch_neuronx_problem
from .torchscript import TorchScriptBackend

NEURON: Backend = NeuronBackend()
PORTABLE_DEFAULT: Backend = InductorBackend()  # what auto picks where Neuron cannot run
BACKENDS: dict[str, Backend] = {b.name: b for b in (NEURON, PORTABLE_DEFAULT, TorchScriptBackend())}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise NeuronExportError(f"unknown backend {name!r}; one of: {', '.join(BACKENDS)}") from None


def auto_pick(options: ExportOptions) -> tuple[Backend, str]:
    """What --backend auto picks on this host for these options, and why in plain words (for any screen)."""
    if options.instance_type:
        return NEURON, f"--instance_type {options.instance_type} compiles for Neuron"
    if torch_neuronx_importable() and neuron_device_present():
        return NEURON, "torch-neuronx and a Neuron device are present"
    why = torch_neuronx_problem() or "no Neuron device on this host"
    return PORTABLE_DEFAULT, f"{why}, so the portable AOTInductor backend"


def auto_backend(options: ExportOptions) -> tuple[Backend, str]:
    """auto_pick, its reason as logs and manifests record it ("auto: why")."""
    backend, why = auto_pick(options)
    return backend, f"auto: {why}"


def choose_backend(options: ExportOptions) -> tuple[Backend, str]:
    """The backend to use and why (the reason goes into the log and the manifest)."""
    if options.backend != "auto":
        backend, reason = get_backend(options.backend), "chosen with --backend"
    else:
        backend, reason = auto_backend(options)
    problem = backend.unavailable_reason(options) or backend.quantization_problem(options)
    if problem:
        raise BackendUnavailableError(problem)
    if options.instance_type and not backend.is_neuron:
        raise NeuronExportError(f"--instance_type compiles for Neuron; it does not apply to --backend {backend.name}")
    return backend, reason


__all__ = ["Backend", "Runner", "BACKENDS", "get_backend", "choose_backend", "auto_backend", "auto_pick"]
