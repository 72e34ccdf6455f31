"""torch.jit.trace: fast compile for quick checks; runs anywhere torch runs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import torch

from ..artifact.folders import guarded_file, inside
from ..options import ExportOptions
from .base import SavedBuckets
from .portable import PortableBackend


class TorchScriptBackend(PortableBackend):
    name = "torchscript"
    model_file = "model.pt"
    # A trace may bake the batch size into shape arithmetic: run other batches in compiled-size chunks.
    native_dynamic_batch = False

    def compiler_version(self) -> str:
        return f"torch.jit {torch.__version__}"

    def option_warnings(self, options: ExportOptions) -> list[str]:
        warnings = super().option_warnings(options)
        if options.compiler_workdir:
            warnings.append("--compiler_workdir: torchscript has no compiler files to keep; ignored")
        if options.optlevel == 3:
            warnings.append("-O3: torchscript's further optimization (optimize_for_inference) cannot be saved; compiled as -O2")
        return warnings

    def trace(self, module, example, options: ExportOptions):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(module, example, check_trace=False)

    def compile(self, traced, example, options: ExportOptions, model_path: Path, workdir: Optional[Path], model_kind: str = "generic",
                state_inputs: int = 0, data_parallel: bool = False) -> None:
        # -O1: the plain trace; -O2 and -O3: weights frozen as constants. (optimize_for_inference is
        # not used for -O3: its MKLDNN-prepacked graphs do not load back once saved, e.g. ConvNeXt.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if options.optlevel >= 2:
                traced = torch.jit.freeze(traced.eval())
            with guarded_file(model_path) as file:  # a full disk: an OSError, not an abort
                torch.jit.save(traced, file)

    def load(self, model_path: Path, manifest):
        return _runner(_load_module(model_path, manifest.device))

    def compile_bucket(self, traced, example, options: ExportOptions, workdir: Optional[Path], model_kind: str = "generic"):
        # Not frozen: the traces of one module share its parameters, so the buckets' file stores them
        # once; freezing would copy them into every bucket's graph.
        return traced

    def save_buckets(self, compiled: dict, folder: Path, options: ExportOptions) -> SavedBuckets:
        locations = {name: f"bucket_{name}" for name in compiled}  # attribute names of the container
        container = torch.nn.Module()
        for name, traced in compiled.items():
            container.add_module(locations[name], traced)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with guarded_file(folder / self.model_file) as file:
                torch.jit.save(torch.jit.script(container), file)
        note = f"the {len(compiled)} buckets' traces share one copy of the weights in {self.model_file}"
        if options.optlevel >= 2:
            note += " (not frozen: freezing would copy them into every bucket's graph, and frozen TorchScript was no faster on CPU)"
        return SavedBuckets(self.model_file, locations, True, note)

    def load_buckets(self, folder: Path, manifest) -> dict:
        container = _load_module(inside(folder, manifest.model_file), manifest.device)
        return {bucket.name: (lambda location=bucket.location: _runner(getattr(container, location))) for bucket in manifest.buckets}


def _load_module(model_path: Path, device: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(model_path), map_location=device)


def _runner(module):
    def run(*inputs):
        # Every call of a TorchScript module warns that TorchScript is deprecated.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return module(*inputs)

    return run
