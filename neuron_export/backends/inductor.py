"""torch.export + AOTInductor: an ahead-of-time compiled package (model.pt2) for CPU or CUDA."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Optional

import torch

from ..artifact.folders import guarded_file, inside
from ..errors import NeuronExportError
from ..options import ExportOptions
from . import cpu_build
from .base import SavedBuckets
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
# Buckets at -O1 and -O2 share one copy of the weights: stored beside the compiled code in the package
# (pickled, deduplicated across its models) instead of inside each model's .so. -O2's freezing then keeps
# the weights as they are, without oneDNN pre-packing, whose opaque tensors only live inside a .so (as fast
# at sequence 128, up to ~20 % slower at 32 on bert-base layers here). -O3 keeps pre-packed weights in
# every bucket's .so: the fastest, for a copy of the weights per bucket.
SHARED_WEIGHTS_CONFIGS = {
    "aot_inductor.package_constants_in_so": False,
    "aot_inductor.package_constants_on_disk_format": "pickle_weights",
    "cpp.weight_prepack": False,
}
SHARED_WEIGHTS_OPTLEVELS = (1, 2)


def bucket_weights_unshared(options: ExportOptions) -> Optional[str]:
    """Why the buckets of this build each keep their own copy of the weights, or None when they share one."""
    if options.optlevel not in SHARED_WEIGHTS_OPTLEVELS:
        return f"-O{options.optlevel}"
    if not hasattr(torch._inductor.config.aot_inductor, "package_constants_on_disk_format"):
        # torch 2.9 has no such format, and its packages of several models with weights outside the .so
        # crashed the process here (a segmentation fault)
        return f"torch {torch.__version__} cannot share them"
    # Inductor's C++ GEMM template and the int8 linears only exist with cpp.weight_prepack
    prepacking = cpu_build.prepacking_reason(options)
    if prepacking is not None:
        return prepacking
    if options.optlevel == 2 and _weight_prepacking_registered():
        return ("an earlier -O2 compile in this process registered oneDNN's weight pre-packing, which torch then "
                "applies to every frozen compile")
    return None


def _weight_prepacking_registered() -> bool:
    """Whether torch has registered oneDNN's weight pre-packing passes in this process. It does so once
    (freezing_patterns.lazy_init, a functools.cache) and applies them to every later frozen compile even
    with cpp.weight_prepack=False; their opaque tensors cannot be stored outside a .so ("Cannot access
    storage of OpaqueTensorImpl")."""
    from torch._inductor.fx_passes import mkldnn_fusion

    init = getattr(mkldnn_fusion, "_mkldnn_weight_pack_init", None)  # absent in builds without oneDNN
    return init is not None and hasattr(init, "cache_info") and init.cache_info().currsize > 0


class InductorBackend(PortableBackend):
    name = "inductor"
    model_file = "model.pt2"
    native_dynamic_batch = True
    records_cpu_isa = True
    needs_cxx = True

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
        if _has_data_dependent_shapes(program):
            raise NeuronExportError(
                "inductor cannot compile this model: some of its shapes depend on the input values (e.g. transformers' "
                "x-vector pooling slices each clip by the length its attention mask gives); use --backend torchscript"
            )
        if options.quantize == cpu_build.INT8_DYNAMIC:
            program = cpu_build.quantize_int8_dynamic(program, example, dynamic_shapes)
        return program

    def compile(self, traced, example, options: ExportOptions, model_path: Path, workdir: Optional[Path], model_kind: str = "generic",
                state_inputs: int = 0, data_parallel: bool = False) -> None:
        from torch._inductor.package import package_aoti

        files = self._aot_compile(traced, options, workdir, {})
        # A full disk makes the package writer abort the process: write through a guarded file.
        with guarded_file(model_path) as file:
            package_aoti(file, files)

    def _aot_compile(self, traced, options: ExportOptions, workdir: Optional[Path], extra_configs: dict) -> list:
        """AOTInductor's files for one exported program (the recipe of aoti_compile_and_package, whose
        documentation shows it for packages of several models)."""
        configs = {**OPTLEVEL_CONFIGS[options.optlevel], **cpu_build.cpu_configs(options), **extra_configs,
                   "aot_inductor.package": True}
        if configs["freezing"] and _has_transposed_convolution(traced):
            # torch 2.13's freezing folds a following BatchNorm into a transposed convolution along its
            # input channels instead of its output channels (BEiT segmentation: 0.08 off): not frozen.
            log.warning("Warning: this model has transposed convolutions, which Inductor's weight freezing "
                        "folds BatchNorm into wrongly in torch %s: compiled without freezing", torch.__version__)
            configs["freezing"] = False
        if options.dynamic_batch_size and hasattr(torch._inductor.config.aot_inductor, "check_lowerbound"):
            # batch 1 is valid although traced at 2 (torch >= 2.10; torch 2.9 has no lower-bound check to relax)
            configs["aot_inductor.check_lowerbound"] = False
        previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        if workdir is not None:
            # --compiler_workdir keeps Inductor's generated sources and build files there.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(workdir)
        try:
            # Inductor freezes weights only when grad is off: without no_grad, "freezing" is ignored.
            with torch.no_grad():
                args, kwargs = traced.example_inputs
                return torch._inductor.aot_compile(traced.module(check_guards=False), args, kwargs, options=configs)
        finally:
            if workdir is not None:
                _restore_env("TORCHINDUCTOR_CACHE_DIR", previous)

    def load(self, model_path: Path, manifest):
        _warn_threads(manifest, model_path)
        return _runner(torch._inductor.aoti_load_package(str(model_path)))

    def compile_bucket(self, traced, example, options: ExportOptions, workdir: Optional[Path], model_kind: str = "generic"):
        return self._aot_compile(traced, options, workdir, {} if bucket_weights_unshared(options) else SHARED_WEIGHTS_CONFIGS)

    def save_buckets(self, compiled: dict, folder: Path, options: ExportOptions) -> SavedBuckets:
        from torch._inductor.package import package_aoti

        locations = {name: f"bucket_{name}" for name in compiled}  # model names inside the package
        with guarded_file(folder / self.model_file) as file:
            package_aoti(file, {locations[name]: files for name, files in compiled.items()})
        why = bucket_weights_unshared(options)
        if why is None:
            note = f"the {len(compiled)} buckets share one copy of the weights in {self.model_file}"
            return SavedBuckets(self.model_file, locations, True, note + (" (frozen, not pre-packed for oneDNN)" if options.optlevel == 2 else ""))
        note = f"{why}: each of the {len(compiled)} buckets keeps its own copy of the weights in {self.model_file}"
        return SavedBuckets(self.model_file, locations, False, note)

    def load_buckets(self, folder: Path, manifest) -> dict:
        from torch._inductor.package import load_package
        from torch.export.pt2_archive._package import load_pt2

        path = str(inside(folder, manifest.model_file))
        _warn_threads(manifest, path)
        if manifest.bucketing.shared_weights:
            # The package's runners and the one copy of the weights they share load together, on first use.
            runners = functools.cache(lambda: load_pt2(path, load_weights_from_disk=True).aoti_runners)
            return {bucket.name: (lambda location=bucket.location: _runner(runners()[location])) for bucket in manifest.buckets}
        # Weights inside each bucket's .so: a bucket loads (with its weights) when first used.
        return {bucket.name: (lambda location=bucket.location: _runner(load_package(path, location))) for bucket in manifest.buckets}


def _warn_threads(manifest, model_path) -> None:
    if manifest.threads and torch.get_num_threads() > manifest.threads:
        log.warning("Warning: %s's GEMM kernels are split for %d threads (export --threads N) and this process runs %d: "
                    "the others idle in them", model_path, manifest.threads, torch.get_num_threads())


def _runner(package):
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
