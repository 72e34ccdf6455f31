"""torch.export + AOTInductor: an ahead-of-time compiled package (model.pt2) for CPU or CUDA."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import torch

from ..errors import NeuronExportError
from ..options import ExportOptions
from .portable import PortableBackend

MAX_DYNAMIC_BATCH = 4096
log = logging.getLogger("neuron_export")

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
        if _has_data_dependent_shapes(program):
            raise NeuronExportError(
                "inductor cannot compile this model: some of its shapes depend on the input values (e.g. transformers' "
                "x-vector pooling slices each clip by the length its attention mask gives); use --backend torchscript"
            )
        return program

    def compile(self, traced, example, options: ExportOptions, model_path: Path, workdir: Optional[Path], model_kind: str = "generic") -> None:
        configs = dict(OPTLEVEL_CONFIGS[options.optlevel])
        if configs["freezing"] and _has_transposed_convolution(traced):
            # torch 2.13's freezing folds a following BatchNorm into a transposed convolution along its
            # input channels instead of its output channels (BEiT segmentation: 0.08 off): not frozen.
            log.warning("Warning: this model has transposed convolutions, which Inductor's weight freezing "
                        "folds BatchNorm into wrongly in torch %s: compiled without freezing", torch.__version__)
            configs["freezing"] = False
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
        package = torch._inductor.aoti_load_package(str(model_path))

        def run(*inputs):
            with torch.no_grad():
                return package(*inputs)

        return run


def _has_data_dependent_shapes(program) -> bool:
    """Whether an exported program has shapes computed from input values (unbacked symbols)."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    values = (node.meta.get("val") for node in program.graph.nodes)
    return any(isinstance(v, torch.Tensor) and free_unbacked_symbols(v) for v in values)


def _has_transposed_convolution(program) -> bool:
    transposed = {torch.ops.aten.conv_transpose1d.default, torch.ops.aten.conv_transpose2d.input, torch.ops.aten.conv_transpose3d.input}
    return any(node.target in transposed or (node.target == torch.ops.aten.convolution.default and node.args[6])
               for node in program.graph.nodes)


def _restore_env(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
