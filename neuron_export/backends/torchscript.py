"""torch.jit.trace: fast compile for quick checks; runs anywhere torch runs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import torch

from ..options import ExportOptions
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

    def compile(self, traced, example, options: ExportOptions, model_path: Path, workdir: Optional[Path], model_kind: str = "generic") -> None:
        # -O1: the plain trace; -O2 and -O3: weights frozen as constants. (optimize_for_inference is
        # not used for -O3: its MKLDNN-prepacked graphs do not load back once saved, e.g. ConvNeXt.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if options.optlevel >= 2:
                traced = torch.jit.freeze(traced.eval())
            torch.jit.save(traced, str(model_path))

    def load(self, model_path: Path, manifest):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(model_path), map_location=manifest.device)

        def run(*inputs):
            # Every call of a TorchScript module warns that TorchScript is deprecated.
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                return module(*inputs)

        return run
