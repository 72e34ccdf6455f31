"""Peers of the compiled artifact: the same eager model run by another CPU runtime (ONNX Runtime)."""

from __future__ import annotations

import importlib.util
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Optional

from ..artifact import Manifest
from ..errors import NeuronExportError, first_line
from ..reference import reference_module
from .inputs import benchmark_inputs
from .sides import quiet


def onnxruntime_missing() -> Optional[str]:
    """Why the ONNX Runtime side cannot run here, or None."""
    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        return f"not installed (pip install {' '.join(missing)}, or the project's [onnx] extra)"
    return None


def export_onnx(artifact: Path, folder: Path, trust_remote_code: bool = False) -> Path:
    """The artifact's eager source model exported to ONNX with a dynamic batch axis.

    torch 2.13's dynamo exporter needs onnxscript; the TorchScript-based one (dynamo=False) needs
    only onnx. Run it in a throw-away process: it leaves the model in training mode.
    """
    import torch

    manifest = Manifest.read(artifact)
    module = reference_module(manifest, trust_remote_code=trust_remote_code)
    names, outputs = manifest.input_names, list(manifest.outputs)
    example = benchmark_inputs(manifest, artifact, 2, seed=1)
    if "attention_mask" in example and example["attention_mask"].shape[-1] > 1:
        # A trace with an all-ones mask records transformers' no-padding shortcut: pad the example.
        example["attention_mask"][-1, -1] = 0
    path = folder / "model.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(example[name]) for name in names),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in names + outputs},
        )
    return path


def _export_onnx_process(artifact: Path, folder: Path, trust_remote_code: bool) -> tuple[Optional[Path], Optional[str]]:
    quiet()
    try:
        return export_onnx(artifact, folder, trust_remote_code), None
    except NeuronExportError as error:
        return None, str(error)
    except Exception as error:
        return None, f"the ONNX export failed: {first_line(error)}"


def export_onnx_isolated(artifact: Path, folder: Path, trust_remote_code: bool = False) -> tuple[Optional[Path], Optional[str], float]:
    """export_onnx in its own process: (path or None, error or None, seconds)."""
    start = time.perf_counter()
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            path, error = pool.submit(_export_onnx_process, artifact, folder, trust_remote_code).result()
    except BrokenProcessPool:
        path, error = None, "the ONNX export's process ended unexpectedly (out of memory?)"
    return path, error, time.perf_counter() - start
