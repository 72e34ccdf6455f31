"""Peers of the compiled artifact: the same eager model run by other CPU runtimes.

ONNX Runtime (all graph optimizations) and OpenVINO (f32 precision forced: on CPUs with bf16 its
default is bf16) run the eager model exported to ONNX; their int8 sides quantize it the way each
runtime recommends for dynamic int8: ONNX Runtime's quantize_dynamic (int8 weights, activations
quantized per call) and OpenVINO's int8 weight compression (NNCF), whose CPU plugin then quantizes
activations per call. All files are made in one throw-away process (the ONNX export leaves the
model in training mode in its process).
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterator, Optional

from ..artifact import Manifest
from ..errors import NeuronExportError, first_line
from ..reference import reference_module
from .inputs import benchmark_inputs
from .sides import ONNXRUNTIME, ONNXRUNTIME_INT8, OPENVINO, OPENVINO_INT8, Side, quiet

PEERS = (ONNXRUNTIME, OPENVINO, ONNXRUNTIME_INT8, OPENVINO_INT8)
# The Python modules each peer needs, and how to install them.
PEER_MODULES = {
    ONNXRUNTIME: (("onnx", "onnxruntime"), "pip install onnx onnxruntime, or the project's [onnx] extra"),
    ONNXRUNTIME_INT8: (("onnx", "onnxruntime"), "pip install onnx onnxruntime, or the project's [onnx] extra"),
    OPENVINO: (("onnx", "openvino"), "pip install openvino, or the project's [openvino] extra"),
    OPENVINO_INT8: (("onnx", "openvino", "nncf"), "pip install openvino nncf, or the project's [openvino] extra"),
}


def peer_missing(name: str) -> Optional[str]:
    """Why a peer cannot run here ("not installed (...)"), or None."""
    modules, how = PEER_MODULES[name]
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    return f"not installed: {', '.join(missing)} ({how})" if missing else None


def default_peers(manifest: Manifest) -> list[str]:
    """fp32 peers always; the int8 ones too for an int8 artifact (like against like)."""
    quantized = manifest.options.quantize != "none"
    return [peer for peer in PEERS if quantized or peer in (ONNXRUNTIME, OPENVINO)]


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


def onnxruntime_int8(onnx_path: Path) -> Path:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # it advises pre-processing on the root logger
    path = onnx_path.with_name("model.int8.onnx")
    quantize_dynamic(str(onnx_path), str(path), weight_type=QuantType.QInt8)
    return path


def openvino_int8(onnx_path: Path) -> Path:
    import nncf
    import openvino

    path = onnx_path.with_name("openvino-int8.xml")
    with _silenced():  # NNCF prints a per-layer table and a progress bar
        model = nncf.compress_weights(openvino.Core().read_model(str(onnx_path)), mode=nncf.CompressWeightsMode.INT8_SYM)
    openvino.save_model(model, str(path), compress_to_fp16=False)
    return path


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """stdout and stderr of this (throw-away) process to /dev/null, at the file-descriptor level."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


PEER_FILES = {ONNXRUNTIME: lambda onnx: onnx, OPENVINO: lambda onnx: onnx, ONNXRUNTIME_INT8: onnxruntime_int8, OPENVINO_INT8: openvino_int8}


def _peer_files_process(artifact: Path, folder: Path, peers: list[str], trust_remote_code: bool) -> dict[str, tuple[Optional[Path], Optional[str]]]:
    quiet()
    try:
        onnx = export_onnx(artifact, folder, trust_remote_code)
    except NeuronExportError as error:
        return {peer: (None, str(error)) for peer in peers}
    except Exception as error:
        return {peer: (None, f"the ONNX export failed: {first_line(error)}") for peer in peers}
    files = {}
    for peer in peers:
        try:
            files[peer] = (PEER_FILES[peer](onnx), None)
        except Exception as error:
            files[peer] = (None, f"preparing its model failed: {first_line(error)}")
    return files


def peer_files_isolated(artifact: Path, folder: Path, peers: list[str], trust_remote_code: bool = False) -> tuple[dict[str, tuple[Optional[Path], Optional[str]]], float]:
    """Each peer's model file (or why there is none), made in a process of its own, and the seconds it took."""
    start = time.perf_counter()
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            files = pool.submit(_peer_files_process, artifact, folder, peers, trust_remote_code).result()
    except BrokenProcessPool:
        files = {peer: (None, "the ONNX export's process ended unexpectedly (out of memory?)") for peer in peers}
    return files, time.perf_counter() - start


def peer_side(name: str, path: Path) -> Side:
    kind = ONNXRUNTIME if name in (ONNXRUNTIME, ONNXRUNTIME_INT8) else OPENVINO
    return Side(name, kind, str(path), precision="int8" if name in (ONNXRUNTIME_INT8, OPENVINO_INT8) else "fp32")
