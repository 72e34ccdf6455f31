"""The sides of a benchmark: each contender runs in a process of its own.

A side is the compiled artifact, the eager model it came from, or a peer (ONNX Runtime, OpenVINO, in
fp32 or int8). Its process
loads it, binds the inputs the parent sends, and answers the parent's commands (warm up, time,
outputs, memory), so no side's caches, thread pools or memory mix with another's.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import resource
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..artifact import Manifest, load_artifact
from ..errors import NeuronExportError, first_line
from .alternate import time_calls
from .stats import LatencyStats

COMPILED, EAGER, ONNXRUNTIME, OPENVINO = "compiled", "eager", "onnxruntime", "openvino"
ONNXRUNTIME_INT8, OPENVINO_INT8 = "onnxruntime-int8", "openvino-int8"
LARGEST_BUCKET = "largest-bucket"  # a bucketed artifact as if it had its largest bucket only
MODEL_CLASS = "model-class"  # an artifact through its NeuronModelFor* class, which pads smaller inputs to the compiled shape
EAGER_STATIC = "eager-static"  # generative models: transformers' generate with its static KV cache
SIDE_LABELS = {COMPILED: "compiled", EAGER: "eager PyTorch", ONNXRUNTIME: "ONNX Runtime", OPENVINO: "OpenVINO f32",
               ONNXRUNTIME_INT8: "ONNX Runtime int8", OPENVINO_INT8: "OpenVINO int8", LARGEST_BUCKET: "largest bucket only",
               MODEL_CLASS: "model class", EAGER_STATIC: "eager (static cache)"}
PEER_KINDS = (ONNXRUNTIME, OPENVINO)


@dataclass(frozen=True)
class Side:
    """One contender: a compiled artifact, the eager model of an artifact's source, or an ONNX file."""

    name: str  # key in the results, e.g. "compiled" or "inductor -O3"
    kind: str  # COMPILED | EAGER | ONNXRUNTIME | OPENVINO | LARGEST_BUCKET | MODEL_CLASS | EAGER_STATIC
    path: str  # artifact folder (compiled, eager), .onnx file, or OpenVINO .xml
    precision: str = "fp32"  # what its matmuls compute in: fp32 | bf16 | fp16 | int8 (for the % of peak)
    trust_remote_code: bool = False  # eager side: run the source model's own code (the caller's consent, never the manifest's)


@dataclass
class SideResult:
    name: str
    kind: str
    status: str = "ok"  # ok | not installed | failed | skipped
    detail: Optional[str] = None  # why it is not ok, or what it ran on
    load_s: Optional[float] = None
    calls: int = 0  # every call the side made (warm-up, reference and timed)
    latencies_ms: list[float] = field(default_factory=list)
    stats: Optional[LatencyStats] = None
    throughput: Optional[float] = None  # inferences (samples) per second
    seconds_per_image: Optional[float] = None  # Stable Diffusion artifacts
    pipeline: Optional[dict[str, Any]] = None  # Stable Diffusion: one call per component and step (benchmark/pipelines.py breakdown)
    peak_rss_mb: Optional[float] = None  # the side's process, up to and including this batch size
    rss_growth_mb: Optional[float] = None  # peak RSS minus RSS right after imports: what the model costs
    gpu_peak_mb: Optional[float] = None
    threads: Optional[int] = None  # intra-op threads the side was given
    cores_busy: Optional[float] = None  # its process's CPU time / wall time over the timed calls: threads really working
    precision: str = "fp32"
    flops: Optional[int] = None  # of one call, counted on the eager model's exported graph
    gflops: Optional[float] = None  # flops / p50 latency
    isa: Optional[str] = None  # the CPU ISA its process saw (what its compiled code could use)
    peak_gflops: Optional[float] = None  # the host's peak for its precision and threads
    peak_percent: Optional[float] = None  # gflops / peak_gflops
    # Per second of CPU time its process got (all threads): what its kernels achieve when they run,
    # whatever other processes on a shared machine take; as a share of one core's peak.
    cpu_gflops: Optional[float] = None
    cpu_peak_percent: Optional[float] = None
    core_peak_gflops: Optional[float] = None
    input_digest: Optional[str] = None  # sha256 of the inputs the side passed to its model
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # per output, vs the eager side

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def quiet() -> None:
    """Library warnings and progress bars off in a side's process."""
    import logging

    warnings.simplefilter("ignore")
    for noisy in ("transformers", "torch", "huggingface_hub", "diffusers", "torchao"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the process's own memory map; ru_maxrss would
    also count the parent's RSS at fork time, since Linux keeps it across the exec of a spawned process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux (bytes on macOS)


def input_digest(arrays: dict[str, Any]) -> str:
    """sha256 over names, dtypes, shapes and bytes of numpy arrays (or CPU/GPU tensors)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = arrays[name]
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        digest.update(f"{name}:{value.dtype}:{list(value.shape)}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


class SideRunner:
    """A loaded side: bind inputs, then call; counts calls and synchronizes the device after each."""

    def __init__(self, side: Side, threads: Optional[int]):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.threads = threads or torch.get_num_threads()
        self.side = side
        self.calls = 0
        self.device = "cpu"
        self._bound: Callable[[], Any] = lambda: None
        self.pipeline = False
        if side.kind == ONNXRUNTIME:
            self._load_onnxruntime()
        elif side.kind == OPENVINO:
            import openvino

            self._core = openvino.Core()
            self._model = self._core.read_model(side.path)
        else:
            manifest = Manifest.read(side.path)
            self.device = manifest.device
            self.pipeline = manifest.is_pipeline
            self._model = _load_side_model(side, manifest)

    def _load_onnxruntime(self) -> None:
        import onnxruntime

        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = self.threads  # the same pool size as the torch sides
        session_options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._model = onnxruntime.InferenceSession(self.side.path, session_options, providers=["CPUExecutionProvider"])

    def bind(self, arrays: dict[str, Any]) -> tuple[str, dict[str, list[int]]]:
        """Place the inputs the way this side's user would (restarting the call count); return their digest and shapes.
        A pipeline's "arrays" are its call's arguments (prompts, steps, seed)."""
        self.calls = 0
        if self.pipeline:
            return self._bind_pipeline(arrays)
        if self.side.kind == ONNXRUNTIME:
            feeds = dict(arrays)
            self._bound = lambda: dict(zip(self.output_names, self._model.run(None, feeds)))
            self.output_names = [o.name for o in self._model.get_outputs()]
            return input_digest(feeds), {n: list(a.shape) for n, a in feeds.items()}
        if self.side.kind == OPENVINO:
            return self._bind_openvino(dict(arrays))
        import torch

        tensors = {n: torch.from_numpy(a).to(self.device) for n, a in arrays.items()}
        self._tensors = tensors
        synchronize = torch.cuda.synchronize if self.device.startswith("cuda") else (lambda: None)

        def call():
            with torch.no_grad():
                outputs = self._model(**tensors)
            synchronize()
            return outputs

        self._bound = call
        return input_digest(tensors), {n: list(t.shape) for n, t in tensors.items()}

    def _bind_openvino(self, feeds: dict[str, Any]) -> tuple[str, dict[str, list[int]]]:
        """Compiled for these static shapes (like the compiled artifact), in f32 unless the model holds
        int8 weights: OpenVINO's default on CPUs with bf16 is bf16, which would not be an fp32 peer."""
        model = self._model.clone()
        model.reshape({name: list(array.shape) for name, array in feeds.items()})
        compiled = self._core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(self.threads), "ENABLE_CPU_PINNING": "NO",
        })
        request = compiled.create_infer_request()
        names = [output.get_any_name() for output in compiled.outputs]
        self._bound = lambda: dict(zip(names, request.infer(feeds).values()))
        return input_digest(feeds), {n: list(a.shape) for n, a in feeds.items()}

    def _bind_pipeline(self, arguments: dict[str, Any]) -> tuple[str, dict[str, list[int]]]:
        import torch

        from . import pipelines

        task = Manifest.read(self.side.path).task
        self._model = pipelines.as_class(self._model, self.side.kind == COMPILED, task, arguments["pipeline"])
        request = pipelines.pipeline_request(task, arguments)
        self.breakdown = lambda: pipelines.breakdown(self._model, request, arguments["seed"])  # the "breakdown" command

        def call():
            # A fresh generator per call: every call (and side) starts from the same latents.
            generator = torch.Generator().manual_seed(arguments["seed"])
            with torch.no_grad():
                images = self._model(**request, generator=generator).images
            return {"images": torch.as_tensor(images)}

        self._bound = call
        digest = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()
        return digest, {"prompt": [len(arguments["prompt"])]}

    def call(self) -> Any:
        self.calls += 1
        return self._bound()

    def time(self, count: int) -> tuple[list[float], float]:
        """alternate.time_calls of this side's call."""
        return time_calls(self.call, count)

    def flops(self) -> Optional[int]:
        """FLOPs of one call on the bound inputs, counted from the model's exported graph (eager side only)."""
        from .flops import count_flops

        if self.side.kind != EAGER or self.pipeline:
            return None
        model = self._model
        return count_flops(model.module, tuple(self._tensors[name] for name in model.input_names)).total

    def outputs(self) -> dict[str, Any]:
        """One call's outputs as numpy arrays (for the accuracy check against the eager side)."""
        result = {}
        for name, value in self.call().items():
            result[name] = value.detach().float().cpu().numpy() if hasattr(value, "detach") else value
        return result

    def memory(self) -> dict[str, Optional[float]]:
        gpu = None
        if self.device.startswith("cuda"):
            import torch

            gpu = torch.cuda.max_memory_allocated() / 2**20
        return {"peak_rss_mb": _peak_rss_mb(), "gpu_peak_mb": gpu}


def _load_side_model(side: Side, manifest: Manifest):
    """The compiled model or pipeline of the artifact, or the eager one of its source (fp32)."""
    from .. import reference

    if side.kind == LARGEST_BUCKET:
        return load_artifact(side.path).largest_only()
    if side.kind == MODEL_CLASS:
        from ..modeling import model_class_for_artifact

        return model_class_for_artifact(side.path).from_pretrained(side.path)
    if side.kind == COMPILED:
        if manifest.is_pipeline:
            from ..diffusion.requests import artifact_pipeline_spec
            from .pipelines import compiled_pipeline

            return compiled_pipeline(side.path, manifest.task, artifact_pipeline_spec(manifest).class_name)
        return load_artifact(side.path)
    try:
        if manifest.is_pipeline:
            from .pipelines import eager_pipeline

            return eager_pipeline(manifest, side.trust_remote_code)
        return reference.reference_model(manifest, trust_remote_code=side.trust_remote_code)
    except NeuronExportError as error:
        raise NeuronExportError(f"the eager model {manifest.source!r} is not available: {error}") from None


def _peak_seen(side: Side, runner: SideRunner) -> dict[str, Any]:
    """The CPU's ISA and peak GFLOP/s for the side's precision and threads, as its own process sees them
    (ATEN_CPU_CAPABILITY=avx2 in a side's environment caps what torch, and so this, counts)."""
    if runner.device != "cpu":
        return {"isa": None, "peak_gflops": None, "core_peak_gflops": None}
    from .peak import host_peak

    peak = host_peak()
    return {"isa": peak.isa, "peak_gflops": peak.gflops(side.precision, runner.threads),
            "core_peak_gflops": peak.gflops(side.precision, 1)}


def _side_process(side: Side, threads: Optional[int], connection, runner_class: type = SideRunner) -> None:
    """A side's process: load, then answer the parent's commands until told to stop."""
    quiet()
    baseline = _rss_mb()
    try:
        start = time.perf_counter()
        runner = runner_class(side, threads)
        connection.send(("ready", {"load_s": time.perf_counter() - start, "baseline_rss_mb": baseline, "threads": runner.threads,
                               "device": runner.device, **_peak_seen(side, runner)}))
    except Exception as error:  # reported as the side's status; the other sides carry on
        connection.send(("error", str(error) if isinstance(error, NeuronExportError) else first_line(error)))
        return
    commands = {
        "bind": runner.bind,
        "warmup": lambda count: [runner.call() for _ in range(count)] and None,
        "outputs": runner.outputs,
        "time": runner.time,
        "memory": runner.memory,
        "calls": lambda: runner.calls,
        "flops": runner.flops,
    }
    while True:
        command, args = connection.recv()
        if command == "stop":
            return
        try:
            # A runner may answer more commands than these (a generation side's "generation").
            connection.send(("ok", (commands.get(command) or getattr(runner, command))(*args)))
        except Exception as error:
            connection.send(("error", str(error) if isinstance(error, NeuronExportError) else first_line(error)))


class SideProcess:
    """The parent's handle on a side's process."""

    def __init__(self, side: Side, threads: Optional[int], runner_class: type = SideRunner):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state shared with the parent
        self.side = side
        self.result = SideResult(side.name, side.kind, precision=side.precision)
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_side_process, args=(side, threads, child, runner_class), daemon=True)
        self._process.start()
        child.close()
        self.baseline_rss_mb: Optional[float] = None
        self.device = "cpu"

    def wait_ready(self) -> None:
        status, info = self._receive()
        if status == "ready":
            self.result.load_s = info["load_s"]
            self.result.threads = info["threads"]
            self.result.isa, self.result.peak_gflops = info["isa"], info["peak_gflops"]
            self.result.core_peak_gflops = info["core_peak_gflops"]
            self.device = info["device"]
            self.baseline_rss_mb = info["baseline_rss_mb"]
        else:
            self.fail(info)

    def ask(self, command: str, *args: Any) -> Any:
        """Run a command in the side; on failure mark the side failed and return None."""
        if not self.result.ok:
            return None
        try:
            self._connection.send((command, args))
        except (OSError, ValueError) as error:
            self.fail(f"its process is gone ({first_line(error)})")
            return None
        status, value = self._receive()
        if status == "ok":
            return value
        self.fail(value)
        return None

    def ask_quietly(self, command: str, *args: Any) -> tuple[str, Any]:
        """Run a command whose failure is not the side's (("error", why) comes back, the side stays ok)."""
        try:
            self._connection.send((command, args))
        except (OSError, ValueError) as error:
            return "error", first_line(error)
        return self._receive()

    def _receive(self) -> tuple[str, Any]:
        try:
            return self._connection.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)
            return "error", f"its process ended unexpectedly (exit code {self._process.exitcode}; out of memory?)"

    def fail(self, detail: str) -> None:
        self.result.status, self.result.detail = "failed", detail

    def stop(self) -> None:
        try:
            if self._process.is_alive():
                self._connection.send(("stop", ()))
            self._process.join(timeout=10)
        except (OSError, ValueError):
            pass
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
