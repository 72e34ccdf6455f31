"""torch_neuronx.trace: a TorchScript module embedding a NEFF, for AWS Inferentia2 / Trainium.

Written against the documented torch-neuronx API (torch 2.9 line): it can only be exercised where
the real Neuron SDK is installed. Imported lazily so the rest of the engine works without it.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Optional

import torch

from ..artifact.folders import guarded_file, inside
from ..errors import BackendUnavailableError, first_line
from ..options import ExportOptions
from .base import SavedBuckets

INSTALL_HINT = (
    "install the real Neuron SDK on an inf2/trn1 instance: "
    "pip install --extra-index-url https://pip.repos.neuron.amazonaws.com torch-neuronx neuronx-cc "
    "(torch 2.9; PyPI's packages of those names are placeholders)"
)
# neuronx-cc spells the matmul auto-cast mode "matmult".
AUTO_CAST_FLAG = {"none": "none", "matmul": "matmult", "all": "all"}


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
    """torch_neuronx, or BackendUnavailableError saying why not; target: the instance type to compile
    for on a host without a Neuron device (the override must be set before the library loads)."""
    if target:
        os.environ["NEURON_PLATFORM_TARGET_OVERRIDE"] = target
    try:
        import torch_neuronx
    except Exception as error:  # a broken install (e.g. built for another torch) fails with any error type
        raise BackendUnavailableError(f"neuron backend: {_import_problem(error)}; {INSTALL_HINT}") from None
    return torch_neuronx


def _import_problem(error: Exception) -> str:
    if "WRONG PACKAGE" in str(error):
        return "the installed torch-neuronx is PyPI's placeholder"
    if isinstance(error, ModuleNotFoundError):
        return "torch-neuronx is not installed"
    return f"torch-neuronx does not import ({type(error).__name__}: {first_line(error)})"


def torch_neuronx_problem() -> Optional[str]:
    """None when torch_neuronx imports, else why not (not installed, placeholder, broken)."""
    try:
        import_torch_neuronx()
    except BackendUnavailableError as error:
        return str(error).removeprefix("neuron backend: ").split(";")[0]
    return None


def torch_neuronx_importable() -> bool:
    return torch_neuronx_problem() is None


def neuron_device_present() -> bool:
    return bool(glob.glob("/dev/neuron*"))


class NeuronBackend:
    name = "neuron"
    model_file = "model.neuron"
    is_neuron = True
    native_dynamic_batch = True  # torch_neuronx.dynamic_batch splits and pads on the device side
    records_cpu_isa = False

    def device(self, options: ExportOptions) -> str:
        return "cpu"  # a traced Neuron module takes CPU tensors and moves them to its NeuronCore

    def target(self, options: ExportOptions) -> Optional[str]:
        return options.instance_type or "inf2"

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
            return str(error)  # says whether it is missing, PyPI's placeholder or broken
        if not options.instance_type and not neuron_device_present():
            return "no Neuron device on this host (/dev/neuron*): pass --instance_type inf2 (or trn1) to compile for one without validation"
        if options.auto_cast_type == "tf32" and options.instance_type == "inf2":
            return "--auto_cast_type tf32 is for trn1; inf2 casts to bf16 or fp16"
        return None

    def runs_on(self, options: ExportOptions) -> str:
        target = options.instance_type or "inf2"
        return f"AWS {target} NeuronCores only (torch-neuronx)"

    def compiler_version(self) -> str:
        try:
            import neuronxcc

            return f"neuronx-cc {neuronxcc.__version__}"
        except ImportError:
            return "neuronx-cc (version unknown)"

    def prepare(self, module: torch.nn.Module, options: ExportOptions) -> torch.nn.Module:
        return module  # the compiler casts (--auto-cast) and places the model itself

    def trace(self, module, example, options: ExportOptions):
        return module  # torch_neuronx.trace traces and compiles in one step (compile stage)

    def compile(self, traced, example, options: ExportOptions, model_path: Path, workdir: Optional[Path], model_kind: str = "generic") -> None:
        compiled = self.compile_bucket(traced, example, options, workdir, model_kind)
        with guarded_file(model_path) as file:  # a full disk: an OSError, not an abort
            torch.jit.save(compiled, file)

    def load(self, model_path: Path, manifest):
        torch_neuronx = import_torch_neuronx()
        module = torch.jit.load(str(model_path))  # loading places it on a NeuronCore
        if manifest.dynamic_batch:
            module = torch_neuronx.dynamic_batch(module)
        return module

    def compile_bucket(self, traced, example, options: ExportOptions, workdir: Optional[Path], model_kind: str = "generic"):
        torch_neuronx = import_torch_neuronx(options.instance_type)
        compiled = torch_neuronx.trace(
            traced,
            example,
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
        if not torch_neuronx_importable():
            return f"it is a Neuron artifact and torch-neuronx is not usable here; {INSTALL_HINT}"
        if not neuron_device_present():
            return f"it is a Neuron artifact for {manifest.target or 'inf2'} and this host has no Neuron device"
        return None
