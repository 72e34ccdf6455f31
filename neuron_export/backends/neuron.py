"""torch_neuronx.trace: a TorchScript module embedding a NEFF, for AWS Inferentia2 / Trainium.

Written against the documented torch-neuronx API (torch 2.9 line), and exercised end to end against
the strict stand-in in tests/neuron (never on Inferentia from this project's CI). Imported lazily
so the rest of the engine works without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from .. import neuron_host
from ..artifact.folders import guarded_file, inside
from ..errors import ArtifactError, BackendUnavailableError
from ..options import ExportOptions
from .base import HostSupport, SavedBuckets
from .neuron_sdk import compiler_version_tuple, neuronx_cc_state, torch_neuronx_state

# neuronx-cc spells the matmul auto-cast mode "matmult".
AUTO_CAST_FLAG = {"none": "none", "matmul": "matmult", "all": "all"}
# An inf2 / trn1 device pairs two NeuronCores: a data-parallel component (the SD UNet) gets one copy on
# each, so classifier-free guidance runs its unconditional and text halves side by side (AWS's SD samples).
DATA_PARALLEL_CORES = [0, 1]
DEFAULT_TARGET = "inf2"


def neuron_compiler_args(options: ExportOptions, model_type: str = "transformer") -> list[str]:
    """neuronx-cc arguments for these options; model_type is generic, transformer or unet-inference."""
    args = ["--model-type", model_type, "--auto-cast", AUTO_CAST_FLAG[options.auto_cast]]
    if options.auto_cast != "none":
        args += ["--auto-cast-type", options.auto_cast_type or "bf16"]
    args.append(f"--optlevel={options.optlevel}")
    if options.instance_type:
        args += ["--target", options.instance_type]
    if options.compiler_workdir:
        args += ["--logfile", str(Path(options.compiler_workdir) / "log-neuron-cc.txt")]
    return args


def import_torch_neuronx(target: Optional[str] = None):
    """torch_neuronx, or BackendUnavailableError saying why not (missing, PyPI's placeholder, built for
    another torch, broken) and what to do; target: the instance type to compile for on a host without
    a Neuron device (the override must be set before the library loads)."""
    if target:
        os.environ["NEURON_PLATFORM_TARGET_OVERRIDE"] = target
    state = torch_neuronx_state()
    if not state.ok:
        raise BackendUnavailableError(f"neuron backend: {state.problem}; {state.fix}")
    import torch_neuronx

    return torch_neuronx


def torch_neuronx_problem() -> Optional[str]:
    """None when torch_neuronx imports, else why not (not installed, placeholder, other torch, broken)."""
    return torch_neuronx_state().problem


def torch_neuronx_importable() -> bool:
    return torch_neuronx_problem() is None


def neuron_device_present() -> bool:
    return neuron_host.neuron_device_present()


class NeuronRunner:
    """A loaded Neuron module on its NeuronCores: one core, or a copy on each core with the batch of a
    call split across them (torch_neuronx.DataParallel). Nested outputs come back flat."""

    def __init__(self, module, cores: list[int], replicas: int = 1):
        self.module = module
        self.cores = cores
        self.replicas = replicas

    def __call__(self, *inputs: torch.Tensor):
        with torch.no_grad():
            return tuple(_flatten(self.module(*inputs)))


def _flatten(outputs):
    if isinstance(outputs, torch.Tensor):
        yield outputs
        return
    for item in outputs:  # optimum-neuron's text encoders return hidden_states as a nested tuple
        yield from _flatten(item)


class StateAsParameters(torch.nn.Module):
    """A graph whose last inputs are state (KV caches), for torch_neuronx.trace: the state becomes
    parameters of the traced module and is returned first, and input_output_aliases maps each
    parameter to its output, so torch-neuronx keeps it on the NeuronCore and writes the updated value
    back in place after every call (the torch-neuronx docs' pattern, as optimum-neuron's decoders use it)."""

    def __init__(self, module: torch.nn.Module, state: Sequence[torch.Tensor]):
        super().__init__()
        self.module = module
        self.state = torch.nn.ParameterList([torch.nn.Parameter(t.detach().clone(), requires_grad=False) for t in state])

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():  # in-place updates of the state must not make it part of an autograd graph
            outputs = self.module(*inputs, *self.state)
        return (*self.state, *outputs)

    def aliases(self) -> dict[torch.nn.Parameter, int]:
        return {parameter: index for index, parameter in enumerate(self.state)}


class HeldStateRunner(NeuronRunner):
    """A loaded Neuron graph with state on one core: its parameters are the state (in the aliases' order,
    as torch-neuronx registers them), its first outputs their updated values, which callers don't see."""

    def __init__(self, module, cores: list[int], state_count: int):
        super().__init__(module, cores)
        self.state = list(module.parameters())[:state_count]
        if len(self.state) != state_count:  # a torch-neuronx that does not keep aliased state as the module's parameters
            raise ArtifactError(f"the loaded Neuron graph holds {len(self.state)} state tensors as parameters, not the "
                                f"{state_count} KV-cache tensors it was traced with (input_output_aliases)")
        self.state_count = state_count

    def __call__(self, *inputs: torch.Tensor):
        return super().__call__(*inputs)[self.state_count:]


class NeuronBackend:
    name = "neuron"
    model_file = "model.neuron"
    is_neuron = True
    native_dynamic_batch = True  # torch_neuronx.dynamic_batch splits and pads on the device side
    holds_state = True  # state stays on the NeuronCore (input_output_aliases)
    records_cpu_isa = False

    def device(self, options: ExportOptions) -> str:
        return "cpu"  # a traced Neuron module takes CPU tensors and moves them to its NeuronCore

    def target(self, options: ExportOptions) -> Optional[str]:
        host = neuron_host.instance_type()
        return options.instance_type or (neuron_host.instance_family(host) if host else DEFAULT_TARGET)

    def cores(self, data_parallel: bool) -> list[int]:
        return list(DATA_PARALLEL_CORES) if data_parallel else DATA_PARALLEL_CORES[:1]

    def option_warnings(self, options: ExportOptions) -> list[str]:
        return []

    def validation_problem(self, options: ExportOptions) -> Optional[str]:
        if options.instance_type:
            return f"compiled for {options.instance_type} on a host without a Neuron device: it cannot run here, so it was not validated"
        return None

    def quantization_problem(self, options: ExportOptions) -> Optional[str]:
        if options.quantize == "none":
            return None
        return (f"--quantize {options.quantize}: neuronx-cc has no int8 quantization of activations; its lower "
                "precisions are casts: --auto_cast matmul (or all) --auto_cast_type bf16 or fp16")

    def annotate_manifest(self, manifest, options: ExportOptions, model_path: Path) -> None:
        return None  # a NEFF inside TorchScript: no host CPU code of its own

    def unavailable_reason(self, options: ExportOptions) -> Optional[str]:
        if options.device != "cpu":
            return "--device applies to the portable backends; the neuron backend targets NeuronCores"
        try:
            import_torch_neuronx(options.instance_type)  # the first import: it must see the target
        except BackendUnavailableError as error:
            return str(error)  # says whether it is missing, PyPI's placeholder, for another torch or broken
        compiler = neuronx_cc_state()
        if not compiler.ok:
            return f"neuron backend: {compiler.problem}; {compiler.fix}"
        if not options.instance_type and not neuron_device_present():
            return "no Neuron device on this host (/dev/neuron*): pass --instance_type inf2 (or trn1) to compile for one without validation"
        if options.auto_cast_type == "tf32" and options.instance_type == "inf2":
            return "--auto_cast_type tf32 is for trn1; inf2 casts to bf16 or fp16"
        return None

    def runs_on(self, options: ExportOptions) -> str:
        return f"AWS {self.target(options)} NeuronCores only (torch-neuronx)"

    def compiler_version(self) -> str:
        state = neuronx_cc_state()
        return f"neuronx-cc {state.version}" if state.ok else "neuronx-cc (version unknown)"

    def host_support(self) -> HostSupport:
        state = torch_neuronx_state()
        if not state.ok:
            return HostSupport(f"{state.problem}: {state.fix}", state.problem)
        compiler = neuronx_cc_state()
        if not compiler.ok:  # running needs only torch-neuronx and a device
            return HostSupport(f"{compiler.problem}: {compiler.fix}", None if neuron_device_present() else "no Neuron device on this host")
        if not neuron_device_present():
            return HostSupport(None, "no Neuron device on this host (/dev/neuron*): run its artifacts on an inf2 / trn1 instance",
                               "cross-compiles only: --instance_type inf2|trn1 (no validation here)")
        host = neuron_host.survey()
        return HostSupport(None, None, f"{len(host.cores)} NeuronCores ({host.instance or 'instance type unknown'})")

    def prepare(self, module: torch.nn.Module, options: ExportOptions) -> torch.nn.Module:
        return module  # the compiler casts (--auto-cast) and places the model itself

    def trace(self, module, example, options: ExportOptions):
        return module  # torch_neuronx.trace traces and compiles in one step (compile stage)

    def compile(self, traced, example, options: ExportOptions, model_path: Path, workdir: Optional[Path], model_kind: str = "generic",
                state_inputs: int = 0, data_parallel: bool = False) -> None:
        aliases = {}
        if state_inputs:
            traced = StateAsParameters(traced, example[-state_inputs:])
            example, aliases = example[:-state_inputs], traced.aliases()
        compiled = self._trace(traced, example, options, workdir, model_kind, aliases)
        if data_parallel:
            # Set before saving (they live in the archive): the load happens once DataParallel places the
            # copies, in the background (AWS's SD samples and optimum-neuron do the same for the UNet).
            torch_neuronx = import_torch_neuronx(options.instance_type)
            torch_neuronx.async_load(compiled)
            torch_neuronx.lazy_load(compiled)
        with guarded_file(model_path) as file:  # a full disk: an OSError, not an abort
            torch.jit.save(compiled, file)

    def load(self, model_path: Path, manifest):
        torch_neuronx = import_torch_neuronx()
        module = torch.jit.load(str(model_path))  # loading places it on a NeuronCore
        if manifest.dynamic_batch:
            module = torch_neuronx.dynamic_batch(module)
        wanted = list(manifest.neuron_cores or DATA_PARALLEL_CORES[:1])
        if len(wanted) > 1 and set(wanted) <= set(neuron_host.survey().cores):
            parallel = torch_neuronx.DataParallel(module, wanted, set_dynamic_batching=manifest.dynamic_batch)
            return NeuronRunner(parallel, wanted, replicas=len(wanted))
        # One core (also a data-parallel component on a host that shows fewer cores: its calls run in turn).
        torch_neuronx.experimental.set_neuron_cores(module, start_nc=wanted[0], nc_count=1)
        state_count = sum(spec.state for spec in manifest.inputs)
        if state_count:
            return HeldStateRunner(module, wanted[:1], state_count)
        return NeuronRunner(module, wanted[:1])

    def compile_bucket(self, traced, example, options: ExportOptions, workdir: Optional[Path], model_kind: str = "generic"):
        return self._trace(traced, example, options, workdir, model_kind, {})

    def _trace(self, traced, example, options: ExportOptions, workdir: Optional[Path], model_kind: str, aliases: dict):
        torch_neuronx = import_torch_neuronx(options.instance_type)
        state = {"input_output_aliases": aliases} if aliases else {}
        compiled = torch_neuronx.trace(
            traced,
            example,
            **state,
            compiler_workdir=str(workdir) if workdir else None,
            compiler_args=neuron_compiler_args(options, model_kind),
            cpu_backend=bool(options.instance_type),
        )
        if options.dynamic_batch_size:
            compiled = torch_neuronx.dynamic_batch(compiled)
        return compiled

    def save_buckets(self, compiled: dict, folder: Path, options: ExportOptions) -> SavedBuckets:
        """One torch_neuronx trace per bucket, each saved on its own (AWS's bucketing app note). The load
        behaviour is stored in each archive, so it is set here, before torch.jit.save: the largest bucket,
        which fits every call, loads at start in the background (async_load); the others on the first
        call that needs them (lazy_load), so unused buckets take no NeuronCore memory."""
        torch_neuronx = import_torch_neuronx(options.instance_type)
        largest = list(compiled)[-1]
        locations = {}
        for name, module in compiled.items():
            if name == largest:
                torch_neuronx.async_load(module)
            else:
                torch_neuronx.lazy_load(module)
            locations[name] = f"model.{name}.neuron"
            with guarded_file(folder / locations[name]) as file:
                torch.jit.save(module, file)
        note = (f"one NEFF per bucket with its weights inlined ({len(compiled)} copies of the weights on disk); the largest "
                "bucket loads at start in the background (async_load), the others on first use (lazy_load)")
        return SavedBuckets(None, locations, False, note)

    def load_buckets(self, folder: Path, manifest) -> dict:
        # torch.jit.load of every bucket now: the largest starts loading onto its NeuronCore in the
        # background, the lazy ones only when first called (flags stored in their archives).
        loaded = {bucket.name: self.load(inside(folder, bucket.location), manifest) for bucket in manifest.buckets}
        return {name: (lambda module=module: module) for name, module in loaded.items()}

    def runtime_problem(self, manifest) -> Optional[str]:
        target = manifest.target or DEFAULT_TARGET
        state = torch_neuronx_state()
        if not state.ok:
            return f"it is a Neuron artifact for {target} NeuronCores and {state.problem} here: run it on an {target} instance with the Neuron SDK ({state.fix})"
        if not neuron_device_present():
            return f"it is a Neuron artifact for {target} and this host has no Neuron device: run it on an {target} instance"
        host = neuron_host.instance_type()
        if manifest.target and host and neuron_host.core_generation(host) != neuron_host.core_generation(target):
            return (f"it was compiled for {target} ({neuron_host.core_generation(target) or 'unknown NeuronCores'}) and this host is an "
                    f"{host} ({neuron_host.core_generation(host)}): recompile it for {neuron_host.instance_family(host)}")
        return _compiler_problem(manifest.compiler)


def _compiler_problem(compiled_with: str) -> Optional[str]:
    """An artifact from a newer neuronx-cc than this host's may use what its runtime lacks (older ones load)."""
    made, installed = compiler_version_tuple(compiled_with or ""), None
    state = neuronx_cc_state()
    if state.ok:
        installed = compiler_version_tuple(state.version or "")
    if made and installed and made[:2] > installed[:2]:
        return (f"it was compiled with {compiled_with} and this host has neuronx-cc {state.version}: "
                f"upgrade the Neuron SDK here, or recompile it with this one")
    return None
