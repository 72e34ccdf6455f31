"""What the portable backends (inductor, torchscript) share: device checks and in-graph auto-cast."""

from __future__ import annotations

import platform
import shutil
from typing import Optional

import torch

from ..artifact.manifest import Manifest
from ..options import ExportOptions
from ..traceable import CastModel
from .base import HostSupport, cast_dtype


def torch_release(version: str) -> str:
    """'2.13.0+cpu' -> '2.13': the part of torch's version an artifact depends on."""
    return ".".join(version.split("+")[0].split(".")[:2])


class PortableBackend:
    name = "portable"
    model_file = ""
    is_neuron = False
    native_dynamic_batch = False
    holds_state = False  # their graphs update the state tensors passed in, in place (torch.export and jit.trace keep that)
    records_cpu_isa = False  # its CPU artifacts are tied to the build host's vector ISA
    needs_cxx = False  # it compiles generated C++ (AOTInductor)

    def device(self, options: ExportOptions) -> str:
        return options.device

    def target(self, options: ExportOptions) -> Optional[str]:
        return None

    def option_warnings(self, options: ExportOptions) -> list[str]:
        return []

    def validation_problem(self, options: ExportOptions) -> Optional[str]:
        return None

    def unavailable_reason(self, options: ExportOptions) -> Optional[str]:
        if options.device == "cuda" and not torch.cuda.is_available():
            return "--device cuda: this host has no CUDA device (torch sees none)"
        if options.auto_cast != "none" and options.auto_cast_type == "tf32" and options.device == "cpu":
            return "--auto_cast_type tf32 exists on NVIDIA GPUs and Neuron only; on CPU use bf16 or fp16"
        return None

    def runs_on(self, options: ExportOptions) -> str:
        if options.device == "cuda":
            where = "NVIDIA GPUs (CUDA)"
        else:
            where = f"{platform.machine()} CPUs"
            if self.records_cpu_isa:  # generated kernels and packed weights target this host's vector ISA
                where += f" with {torch.backends.cpu.get_cpu_capability()} (like this host)"
        return f"{where} and torch {torch_release(torch.__version__)} — portable {self.name} build, not a Neuron artifact"

    def prepare(self, module: torch.nn.Module, options: ExportOptions) -> torch.nn.Module:
        dtype = cast_dtype(options)
        if options.auto_cast_type == "tf32":
            # TF32 is a matmul precision mode, not a dtype: set for the compile and again at load.
            torch.backends.cuda.matmul.allow_tf32 = True
        elif dtype is not None:
            module = CastModel(module, options.auto_cast, dtype, options.device)
        return module.to(options.device)

    def cores(self, data_parallel: bool) -> list[int]:
        return []

    def host_support(self) -> HostSupport:
        compile_problem = None
        if self.needs_cxx and not (shutil.which("g++") or shutil.which("c++")):
            compile_problem = "no C++ compiler (g++) to build its kernels: apt-get install -y g++"
        where = f"{platform.machine()} CPU ({torch.backends.cpu.get_cpu_capability()})"
        if torch.cuda.is_available():
            where += f" and CUDA ({torch.cuda.get_device_name(0)})"
        return HostSupport(compile_problem, None, f"{where}; portable, not Neuron")

    def runtime_problem(self, manifest: Manifest) -> Optional[str]:
        if manifest.device == "cuda" and not torch.cuda.is_available():
            return "it was compiled for an NVIDIA GPU (CUDA) and this host has none"
        made_with = torch_release(manifest.torch_version)
        if made_with != torch_release(torch.__version__):
            return f"it was compiled with torch {made_with} and this host has torch {torch_release(torch.__version__)}"
        built_for = manifest.cpu_capability
        if self.records_cpu_isa and manifest.device == "cpu" and _isa_rank(built_for) > _isa_rank(torch.backends.cpu.get_cpu_capability()):
            return f"its CPU kernels were built for {built_for} and this CPU has {torch.backends.cpu.get_cpu_capability()} only"
        if manifest.auto_cast_type == "tf32" and manifest.auto_cast != "none":
            torch.backends.cuda.matmul.allow_tf32 = True
        return None


def _isa_rank(capability) -> int:
    """Order of x86 vector ISAs; unknown values (other architectures) rank 0."""
    return {"AVX2": 1, "AVX512": 2}.get(str(capability), 0)
