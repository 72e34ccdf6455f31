"""torch.export + AOTInductor: an ahead-of-time compiled package (model.pt2) for CPU or CUDA."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import torch

from ..options import ExportOptions
from . import cpu_build
from .portable import PortableBackend

log = logging.getLogger("neuron_export")

MAX_DYNAMIC_BATCH = 4096

# -O levels mapped to Inductor settings (documented in the README).
OPTLEVEL_CONFIGS = {
    # fast compile: no weight freezing, the generated C++ wrapper built without optimization
    1: {"freezing": False, "aot_inductor.compile_wrapper_opt_level": "O0"},
    # balance: freeze weights into constants so Inductor folds and pre-packs them
    2: {"freezing": True},
    # more speed, longer compile: also benchmark GEMM / kernel choices (max-autotune)
    3: {"freezing": True, "max_autotune": True, "coordinate_descent_tuning": True},
}


class InductorBackend(PortableBackend):
    name = "inductor"
    model_file = "model.pt2"
    native_dynamic_batch = True
    records_cpu_isa = True

    def compiler_version(self) -> str:
        return f"torch.export + AOTInductor {torch.__version__}"

    def unavailable_reason(self, options: ExportOptions) -> Optional[str]:
        return super().unavailable_reason(options) or cpu_build.isa_problem(options)

    def quantization_problem(self, options: ExportOptions) -> Optional[str]:
        return cpu_build.quantization_problem(options)

    def annotate_manifest(self, manifest, options: ExportOptions, model_path: Path) -> None:
        manifest.cpu_isa = options.cpu_isa
        manifest.cpu_flags = cpu_build.required_flags(options, model_path)
        manifest.threads = cpu_build.gemm_threads(options)

    def trace(self, module, example, options: ExportOptions):
        dynamic_shapes = None
        if options.dynamic_batch_size:
            # A batch-1 example would specialize the batch to a constant: export with batch >= 2.
            if example[0].shape[0] == 1:
                example = tuple(torch.cat([t, t]) for t in example)
            batch = torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)
            # forward(*inputs) has one (variadic) parameter: its spec is the tuple of per-input specs.
            dynamic_shapes = (tuple({0: batch} for _ in example),)
        with torch.no_grad():
            program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes, strict=False)
        if options.quantize == cpu_build.INT8_DYNAMIC:
            program = cpu_build.quantize_int8_dynamic(program, example, dynamic_shapes)
        return program

    def compile(self, traced, example, options: ExportOptions, model_path: Path, workdir: Optional[Path], model_kind: str = "generic") -> None:
        configs = {**OPTLEVEL_CONFIGS[options.optlevel], **cpu_build.cpu_configs(options)}
        if options.dynamic_batch_size:
            configs["aot_inductor.check_lowerbound"] = False  # batch 1 is valid although traced at 2
        previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        if workdir is not None:
            # --compiler_workdir keeps Inductor's generated sources and build files there.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(workdir)
        try:
            # Inductor freezes weights only when grad is off: without no_grad, "freezing" is ignored.
            with torch.no_grad():
                torch._inductor.aoti_compile_and_package(traced, package_path=str(model_path), inductor_configs=configs)
        finally:
            if workdir is not None:
                _restore_env("TORCHINDUCTOR_CACHE_DIR", previous)

    def load(self, model_path: Path, manifest):
        if manifest.threads and torch.get_num_threads() > manifest.threads:
            log.warning("Warning: %s's GEMM kernels are split for %d threads (export --threads N) and this process runs %d: "
                        "the others idle in them", model_path, manifest.threads, torch.get_num_threads())
        package = torch._inductor.aoti_load_package(str(model_path))

        def run(*inputs):
            with torch.no_grad():
                return package(*inputs)

        return run


def _restore_env(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
