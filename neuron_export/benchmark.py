"""Benchmark a compiled artifact against eager PyTorch and ONNX Runtime, in one interleaved run.

A Stable Diffusion pipeline artifact is timed per image against the eager diffusers pipeline
(same prompts, steps and seed); the ONNX Runtime peer is for transformers models.

Every side (the compiled artifact, the eager transformers model, the same model exported to ONNX and
run by ONNX Runtime) runs in a process of its own, so:
- the peak memory reported for a side is its own process's (peak RSS, and its growth over the
  process right after imports), never a mix of models;
- no side's caches, thread pools or global state touch another's (the legacy ONNX exporter even
  leaves the exported model in training mode in its process).
The parent generates the inputs once and sends the same arrays to every side; each side fingerprints
what it actually passes to its model and counts its calls. The timed calls run in rounds, side after
side in a rotating order (ABC BCA CAB ...), so a busy shared machine slows every side alike.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import resource
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional, Sequence

from .artifact import load_artifact, read_manifest, write_json
from .errors import ArtifactError, NeuronExportError, first_line

RESULTS_DIR = "benchmarks"  # inside the artifact folder: one JSON file per run
RESULTS_FORMAT = 1
COMPILED, EAGER, ONNXRUNTIME = "compiled", "eager", "onnxruntime"
PIPELINE_CLASSES = {"stable-diffusion": "NeuronStableDiffusionPipeline", "stable-diffusion-xl": "NeuronStableDiffusionXLPipeline"}
# A side that just ran may still spin its thread pool for a moment: pause before the next side.
HANDOFF_PAUSE_S = 0.02


# ----------------------------------------------------------------------------------------------
# Statistics (pure functions of the measured seconds)
# ----------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class LatencyStats:
    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    ms = [s * 1000 for s in seconds]
    mean = sum(ms) / len(ms)
    std = math.sqrt(sum((x - mean) ** 2 for x in ms) / (len(ms) - 1)) if len(ms) > 1 else 0.0
    return LatencyStats(len(ms), mean, std, min(ms), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), max(ms))


def throughput(seconds: Sequence[float], batch_size: int) -> float:
    """Inferences (samples) per second over the timed calls: every call handles batch_size samples."""
    return batch_size * len(seconds) / sum(seconds)


def speedup(baseline_ms: Optional[float], candidate_ms: Optional[float]) -> Optional[float]:
    """How many times faster the candidate is (>1: faster); None when either side has no number."""
    if not baseline_ms or not candidate_ms:
        return None
    return baseline_ms / candidate_ms


# ----------------------------------------------------------------------------------------------
# Options and sides
# ----------------------------------------------------------------------------------------------


@dataclass
class BenchmarkOptions:
    iterations: int = 30  # timed calls per side and batch size
    warmup: int = 5  # untimed calls per side and batch size first
    batch_sizes: Optional[list[int]] = None  # None: the artifact's compiled batch size
    onnx: bool = True  # add the ONNX Runtime peer side
    threads: Optional[int] = None  # intra-op threads of every side (None: the libraries' default, all cores)
    seed: int = 0  # of the generated inputs (and a pipeline's latents)
    steps: int = 10  # denoising steps per image (Stable Diffusion pipelines)
    rounds: int = 10  # the timed calls are split into this many interleaved rounds
    save: bool = True  # store the results in ARTIFACT/benchmarks/

    def __post_init__(self) -> None:
        for name in ("iterations", "rounds", "steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise NeuronExportError(f"--{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise NeuronExportError(f"--warmup must be 0 or more, got {self.warmup!r}")
        if self.threads is not None and self.threads < 1:
            raise NeuronExportError(f"--threads must be a positive integer, got {self.threads!r}")
        for size in self.batch_sizes or []:
            if not isinstance(size, int) or size < 1:
                raise NeuronExportError(f"--batch_size must be a positive integer, got {size!r}")


@dataclass(frozen=True)
class Side:
    """One contender: a compiled artifact, the eager model of an artifact's source, or an ONNX file."""

    name: str  # key in the results, e.g. "compiled" or "inductor -O3"
    kind: str  # COMPILED | EAGER | ONNXRUNTIME
    path: str  # artifact folder (compiled, eager) or .onnx file


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
    peak_rss_mb: Optional[float] = None  # the side's process, up to and including this batch size
    rss_growth_mb: Optional[float] = None  # peak RSS minus RSS right after imports: what the model costs
    gpu_peak_mb: Optional[float] = None
    threads: Optional[int] = None
    input_digest: Optional[str] = None  # sha256 of the inputs the side passed to its model
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # per output, vs the eager side

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def onnxruntime_missing() -> Optional[str]:
    """Why the ONNX Runtime side cannot run here, or None."""
    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        return f"not installed (pip install {' '.join(missing)}, or the project's [onnx] extra)"
    return None


# ----------------------------------------------------------------------------------------------
# What runs inside a side's process
# ----------------------------------------------------------------------------------------------


def _quiet() -> None:
    import logging

    warnings.simplefilter("ignore")
    for noisy in ("transformers", "torch", "huggingface_hub", "diffusers"):
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
        else:
            manifest = read_manifest(side.path)
            self.device = manifest["device"]
            self.pipeline = is_pipeline(manifest)
            if self.pipeline:
                self._model = _load_pipeline(side, manifest)
            else:
                self._model = load_artifact(side.path) if side.kind == COMPILED else _load_eager(manifest)

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
        import torch

        tensors = {n: torch.from_numpy(a).to(self.device) for n, a in arrays.items()}
        synchronize = torch.cuda.synchronize if self.device.startswith("cuda") else (lambda: None)

        def call():
            with torch.no_grad():
                outputs = self._model(**tensors)
            synchronize()
            return outputs

        self._bound = call
        return input_digest(tensors), {n: list(t.shape) for n, t in tensors.items()}

    def _bind_pipeline(self, arguments: dict[str, Any]) -> tuple[str, dict[str, list[int]]]:
        import torch

        call_arguments = {k: v for k, v in arguments.items() if k != "seed"}

        def call():
            # A fresh generator per call: every call (and side) starts from the same latents.
            generator = torch.Generator().manual_seed(arguments["seed"])
            with torch.no_grad():
                images = self._model(**call_arguments, generator=generator).images
            return {"images": torch.as_tensor(images)}

        self._bound = call
        digest = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()
        return digest, {"prompt": [len(arguments["prompt"])]}

    def call(self) -> Any:
        self.calls += 1
        return self._bound()

    def time(self, count: int) -> list[float]:
        """Seconds of `count` calls, after one untimed call: the side's turn starts with caches and
        thread pools that the other sides' turns left cold, which no steady-state caller sees."""
        self.call()
        seconds = []
        for _ in range(count):
            start = time.perf_counter()
            self.call()
            seconds.append(time.perf_counter() - start)
        return seconds

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


def _load_eager(manifest: dict[str, Any]):
    """The artifact's source model, eager, fp32, on the artifact's device, called with named tensors."""
    module = eager_module(manifest).to(manifest["device"])
    names = [spec["name"] for spec in manifest["inputs"]]
    outputs = list(manifest["outputs"])

    def run(**tensors):
        return dict(zip(outputs, module(*[tensors[n] for n in names])))

    return run


def is_pipeline(manifest: dict[str, Any]) -> bool:
    """A Stable Diffusion (XL) pipeline artifact: its manifest lists the compiled components."""
    return "components" in manifest


def _load_pipeline(side: Side, manifest: dict[str, Any]):
    """The compiled pipeline of the artifact, or the eager diffusers pipeline of its source (fp32)."""
    import torch

    if side.kind == COMPILED:
        from . import diffusion

        return getattr(diffusion, PIPELINE_CLASSES[manifest["task"]]).from_pretrained(side.path)
    from diffusers import DiffusionPipeline

    from .options import ExportOptions
    from .sources import resolve_model_source

    try:
        source = resolve_model_source(manifest["source"], ExportOptions.from_dict(manifest.get("options", {})))
    except NeuronExportError as error:
        raise NeuronExportError(f"the eager pipeline {manifest['source']!r} is not available: {error}") from None
    # Like the compiled pipeline, without the safety checker (it is not exported).
    extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in source.config else {}
    return DiffusionPipeline.from_pretrained(source.path, torch_dtype=torch.float32, **extra).to(manifest["device"])


def pipeline_inputs(manifest: dict[str, Any], batch_size: int, options: "BenchmarkOptions") -> dict[str, Any]:
    """A pipeline call: batch_size prompts, the compiled images per prompt, options.steps steps, NumPy images out."""
    shapes = manifest["shapes"]
    return {
        "prompt": [f"a photograph of an astronaut riding a horse, variation {i}" for i in range(batch_size)],
        "num_images_per_prompt": shapes["num_images_per_prompt"],
        "num_inference_steps": options.steps,
        "height": shapes["height"],
        "width": shapes["width"],
        "output_type": "np",
        "seed": options.seed,
    }


def eager_module(manifest: dict[str, Any]):
    """The artifact's source model wrapped like at export (positional inputs -> tuple of outputs)."""
    from .exporter import eager_traceable
    from .options import ExportOptions
    from .sources import load_eager_model, resolve_model_source

    options = ExportOptions.from_dict(manifest.get("options", {}))
    try:
        source = resolve_model_source(manifest["source"], options)
    except NeuronExportError as error:
        raise NeuronExportError(f"the eager model {manifest['source']!r} is not available: {error}") from None
    eager = load_eager_model(source, manifest["task"], options)
    return eager_traceable(source, eager, [spec["name"] for spec in manifest["inputs"]], manifest["outputs"], options)


def _side_process(side: Side, threads: Optional[int], connection) -> None:
    """A side's process: load, then answer the parent's commands until told to stop."""
    _quiet()
    baseline = _rss_mb()
    try:
        start = time.perf_counter()
        runner = SideRunner(side, threads)
        connection.send(("ready", {"load_s": time.perf_counter() - start, "baseline_rss_mb": baseline, "threads": runner.threads}))
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
    }
    while True:
        command, args = connection.recv()
        if command == "stop":
            return
        try:
            connection.send(("ok", commands[command](*args)))
        except Exception as error:
            connection.send(("error", str(error) if isinstance(error, NeuronExportError) else first_line(error)))


class SideProcess:
    """The parent's handle on a side's process."""

    def __init__(self, side: Side, threads: Optional[int]):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state shared with the parent
        self.side = side
        self.result = SideResult(side.name, side.kind)
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_side_process, args=(side, threads, child), daemon=True)
        self._process.start()
        child.close()
        self.baseline_rss_mb: Optional[float] = None

    def wait_ready(self) -> None:
        status, info = self._receive()
        if status == "ready":
            self.result.load_s = info["load_s"]
            self.result.threads = info["threads"]
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


# ----------------------------------------------------------------------------------------------
# The interleaved run
# ----------------------------------------------------------------------------------------------


def benchmark_inputs(manifest: dict[str, Any], artifact: Path, batch_size: int, seed: int) -> dict[str, Any]:
    """Inputs of the artifact's signature at `batch_size`, like a tokenizer's batch (padded masks)."""
    from .inputs import make_inputs
    from .registry import get_architecture
    from .sources import ModelSource

    specs = {spec.name: spec for spec in get_architecture(manifest["model_type"]).inputs}
    shapes = {spec["name"]: (batch_size, *spec["shape"][1:]) for spec in manifest["inputs"]}
    config_file = ModelSource(str(artifact), artifact, manifest.get("library", "transformers"), {}).encoder_path / "config.json"
    config = SimpleNamespace(**json.loads(config_file.read_text())) if config_file.is_file() else SimpleNamespace()
    tensors = make_inputs([specs[name] for name in shapes], shapes, config, seed=seed, realistic=True)
    return {name: tensor.numpy() for name, tensor in tensors.items()}


@contextmanager
def side_processes(sides: list[Side], threads: Optional[int]) -> Iterator[list[SideProcess]]:
    """Start every side's process (they load in the background); stop them all on exit.
    More sides may be appended to the list (e.g. once the ONNX export is done)."""
    processes = [SideProcess(side, threads) for side in sides]
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


def time_sides(
    processes: list[SideProcess],
    inputs_for: Callable[[int], dict[str, Any]],
    batch_sizes: list[int],
    options: BenchmarkOptions,
    progress,
) -> dict[int, dict[str, SideResult]]:
    """Time every side at every batch size on the same inputs, interleaved; results by batch, then side."""
    names = ", ".join(process.side.name for process in processes)
    with progress.stage("loading", f"Loading {len(processes)} sides ({names}), each in its own process"):
        for process in processes:
            process.wait_ready()
    results = {}
    for batch_size in batch_sizes:
        with progress.stage("timing", f"Timing batch size {batch_size}", key=f"timing.batch{batch_size}"):
            results[batch_size] = _time_batch(processes, inputs_for(batch_size), batch_size, options, progress)
    return results


def run_sides(sides: list[Side], inputs_for, batch_sizes: list[int], options: BenchmarkOptions, progress) -> dict[int, dict[str, SideResult]]:
    with side_processes(sides, options.threads) as processes:
        return time_sides(processes, inputs_for, batch_sizes, options, progress)


def _time_batch(processes: list[SideProcess], arrays, batch_size: int, options: BenchmarkOptions, progress) -> dict[str, SideResult]:
    for process in processes:
        process.result = SideResult(process.side.name, process.side.kind, status=process.result.status,
                                    detail=process.result.detail, load_s=process.result.load_s, threads=process.result.threads)
        bound = process.ask("bind", arrays)
        if bound is not None:
            process.result.input_digest, process.result.input_shapes = bound
        process.ask("warmup", options.warmup)
    reference = next((p.ask("outputs") for p in processes if p.side.kind == EAGER), None)
    for process in processes:
        outputs = process.ask("outputs") if reference is not None and process.side.kind != EAGER else None
        if outputs:
            process.result.max_abs_diff = {
                name: float(abs(outputs[name] - reference[name]).max()) for name in reference if name in outputs
            }
    per_round = [options.iterations // options.rounds + (r < options.iterations % options.rounds) for r in range(options.rounds)]
    per_round = [n for n in per_round if n]
    for round_index, calls in enumerate(per_round):
        shift = round_index % len(processes)
        for process in processes[shift:] + processes[:shift]:
            seconds = process.ask("time", calls)
            if seconds:
                process.result.latencies_ms += [s * 1000 for s in seconds]
            time.sleep(HANDOFF_PAUSE_S)
        progress.emit({"type": "stage", "stage": "timing", "index": progress.done + 1, "total": progress.total,
                       "fraction": (progress.done + (round_index + 1) / len(per_round)) / progress.total,
                       "message": f"Timing batch size {batch_size}: round {round_index + 1}/{len(per_round)}"})
    results = {}
    for process in processes:
        result = process.result
        memory = process.ask("memory")
        calls = process.ask("calls")
        if result.ok:
            seconds = [ms / 1000 for ms in result.latencies_ms]
            result.stats = latency_stats(seconds)
            result.throughput = throughput(seconds, batch_size)
            result.calls = calls
            result.peak_rss_mb = memory["peak_rss_mb"]
            result.rss_growth_mb = memory["peak_rss_mb"] - process.baseline_rss_mb
            result.gpu_peak_mb = memory["gpu_peak_mb"]
        results[process.side.name] = result
    return results


# ----------------------------------------------------------------------------------------------
# The ONNX Runtime peer
# ----------------------------------------------------------------------------------------------


def export_onnx(artifact: Path, folder: Path) -> Path:
    """The artifact's eager source model exported to ONNX with a dynamic batch axis.

    torch 2.13's dynamo exporter needs onnxscript; the TorchScript-based one (dynamo=False) needs
    only onnx. Run it in a throw-away process: it leaves the model in training mode.
    """
    import torch

    manifest = read_manifest(artifact)
    module = eager_module(manifest)
    names = [spec["name"] for spec in manifest["inputs"]]
    outputs = list(manifest["outputs"])
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


def _export_onnx_process(artifact: Path, folder: Path) -> tuple[Optional[Path], Optional[str]]:
    _quiet()
    try:
        return export_onnx(artifact, folder), None
    except NeuronExportError as error:
        return None, str(error)
    except Exception as error:
        return None, f"the ONNX export failed: {first_line(error)}"


def export_onnx_isolated(artifact: Path, folder: Path) -> tuple[Optional[Path], Optional[str], float]:
    """export_onnx in its own process: (path or None, error or None, seconds)."""
    start = time.perf_counter()
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            path, error = pool.submit(_export_onnx_process, artifact, folder).result()
    except BrokenProcessPool:
        path, error = None, "the ONNX export's process ended unexpectedly (out of memory?)"
    return path, error, time.perf_counter() - start


# ----------------------------------------------------------------------------------------------
# The benchmark of one artifact, its report and its history
# ----------------------------------------------------------------------------------------------


def benchmark(artifact: str | Path, options: Optional[BenchmarkOptions] = None, on_event=None) -> dict[str, Any]:
    """Benchmark an artifact against its eager model (and ONNX Runtime); the report is saved with it."""
    from .backends import get_backend
    from .exporter import Progress

    options = options or BenchmarkOptions()
    artifact = Path(artifact).expanduser().resolve()
    manifest = read_manifest(artifact)
    pipeline = is_pipeline(manifest)
    if manifest.get("library") == "diffusers" and not pipeline:
        raise NeuronExportError(
            f"{artifact} is one component of a Stable Diffusion pipeline: benchmark the pipeline folder "
            f"({artifact.parent}) for seconds per image, or time components with benchmarks/bench_sd.py"
        )
    problem = get_backend(manifest["backend"]).runtime_problem(manifest)
    if problem:
        raise ArtifactError(f"cannot benchmark {artifact} here: {problem}")
    batch_sizes = resolve_batch_sizes(manifest, options)

    sides = [Side(COMPILED, COMPILED, str(artifact)), Side(EAGER, EAGER, str(artifact))]
    peer = None  # the ONNX Runtime side's result when it does not run
    if not options.onnx:
        peer = SideResult(ONNXRUNTIME, ONNXRUNTIME, status="skipped", detail="--no-onnx")
    elif missing := onnxruntime_missing():
        peer = SideResult(ONNXRUNTIME, ONNXRUNTIME, status="not installed", detail=missing)
    elif pipeline:
        peer = SideResult(ONNXRUNTIME, ONNXRUNTIME, status="skipped", detail="the ONNX Runtime peer runs transformers models only")
    elif manifest["device"] != "cpu":
        peer = SideResult(ONNXRUNTIME, ONNXRUNTIME, status="skipped", detail=f"the peer runs on CPU; this artifact runs on {manifest['device']}")
    onnx_export_s = None
    progress = Progress(on_event, (1 if peer else 2) + len(batch_sizes))
    if pipeline:
        inputs_for = functools.partial(pipeline_inputs, manifest, options=options)
    else:
        inputs_for = functools.partial(benchmark_inputs, manifest, artifact, seed=options.seed)
    with side_processes(sides, options.threads) as processes, tempfile.TemporaryDirectory(prefix="neuron-export-onnx-") as folder:
        if peer is None:  # export while the other sides load
            with progress.stage("onnx", "Exporting the eager model to ONNX for the ONNX Runtime peer"):
                path, error, onnx_export_s = export_onnx_isolated(artifact, Path(folder))
            if error:
                peer = SideResult(ONNXRUNTIME, ONNXRUNTIME, status="failed", detail=error)
            else:
                processes.append(SideProcess(Side(ONNXRUNTIME, ONNXRUNTIME, str(path)), options.threads))
        results = time_sides(processes, inputs_for, batch_sizes, options, progress)
    if peer is not None:
        for by_side in results.values():
            by_side[ONNXRUNTIME] = peer
    compiled = results[batch_sizes[0]][COMPILED]
    if not compiled.ok:
        raise NeuronExportError(f"the compiled artifact could not be benchmarked: {compiled.detail}")
    if pipeline:
        for batch_size, by_side in results.items():
            per_image(by_side.values(), batch_size * manifest["shapes"]["num_images_per_prompt"])
    report = make_report(artifact, manifest, options, results, onnx_export_s)
    if options.save:
        report["saved_to"] = str(save_results(artifact, report))
    return report


def per_image(results, images_per_call: int) -> None:
    """A pipeline call makes images_per_call images: throughput in images/s and p50 seconds per image."""
    for result in results:
        if result.ok and result.stats:
            seconds = [ms / 1000 for ms in result.latencies_ms]
            result.throughput = throughput(seconds, images_per_call)
            result.seconds_per_image = result.stats.p50_ms / 1000 / images_per_call


def resolve_batch_sizes(manifest: dict[str, Any], options: BenchmarkOptions) -> list[int]:
    compiled = manifest["shapes"]["batch_size"] if is_pipeline(manifest) else manifest["inputs"][0]["shape"][0]
    sizes = sorted(set(options.batch_sizes or [compiled]))
    if not manifest.get("dynamic_batch"):
        other = [size for size in sizes if size != compiled]
        if other:
            raise NeuronExportError(
                f"--batch_size {other[0]}: this artifact was compiled for batch size {compiled} only "
                "(export with --dynamic-batch-size to benchmark other batch sizes)"
            )
    return sizes


def speedups(sides: dict[str, SideResult]) -> dict[str, float]:
    """p50 speed-up of every side over eager PyTorch, and of every compiled side over ONNX Runtime."""
    p50 = {name: result.stats.p50_ms for name, result in sides.items() if result.ok and result.stats}
    ratios = {}
    for name, result in sides.items():
        if name not in p50 or result.kind == EAGER:
            continue
        for baseline in (EAGER, ONNXRUNTIME):
            if baseline in p50 and result.kind != baseline:
                ratios[f"{name}_vs_{baseline}"] = speedup(p50[baseline], p50[name])
    return ratios


def make_report(
    artifact: Path, manifest: dict[str, Any], options: BenchmarkOptions, results: dict[int, dict[str, SideResult]],
    onnx_export_s: Optional[float],
) -> dict[str, Any]:
    runs = []
    for batch_size, sides in results.items():
        digests = {r.input_digest for r in sides.values() if r.ok}
        runs.append({
            "batch_size": batch_size,
            "same_inputs": len(digests) == 1,
            "speedups": speedups(sides),
            "sides": {name: asdict(result) for name, result in sides.items()},
        })
    return {
        "format_version": RESULTS_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "artifact": str(artifact),
        "model": artifact_summary(manifest),
        "host": host_summary(),
        "settings": asdict(options),
        "onnx_export_s": onnx_export_s,
        "runs": runs,
    }


def artifact_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a reader of the results needs to know about the compiled artifact (its trade-off choices)."""
    timings = manifest.get("timings", {})
    return {
        "source": manifest.get("source"),
        "task": manifest.get("task"),
        "model_type": manifest.get("model_type"),
        "backend": manifest.get("backend"),
        "optlevel": manifest.get("optlevel"),
        "auto_cast": manifest.get("auto_cast"),
        "auto_cast_type": manifest.get("auto_cast_type"),
        "device": manifest.get("device"),
        "dynamic_batch": manifest.get("dynamic_batch"),
        "shapes": manifest.get("shapes"),
        "input_shapes": {spec["name"]: spec["shape"] for spec in manifest.get("inputs", [])},
        "compile_s": sum(v for k, v in timings.items() if k.endswith(("tracing", "compiling"))),
        "export_s": sum(timings.values()),
    }


def host_summary() -> dict[str, Any]:
    import torch

    onnxruntime = importlib.util.find_spec("onnxruntime")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__ if onnxruntime else None,
        "gpu": gpu,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def save_results(artifact: Path, report: dict[str, Any]) -> Path:
    folder = artifact / RESULTS_DIR
    folder.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}.json"
    write_json(path, report)
    return path


def benchmark_history(artifact: str | Path) -> list[dict[str, Any]]:
    """The artifact's stored benchmark reports, oldest first (unreadable files are skipped)."""
    reports = []
    for path in sorted((Path(artifact) / RESULTS_DIR).glob("*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and report.get("format_version") == RESULTS_FORMAT:
            reports.append({**report, "saved_to": str(path)})
    return reports


# ----------------------------------------------------------------------------------------------
# The report as text (CLI)
# ----------------------------------------------------------------------------------------------

SIDE_LABELS = {COMPILED: "compiled", EAGER: "eager PyTorch", ONNXRUNTIME: "ONNX Runtime"}


def format_report(report: dict[str, Any]) -> list[str]:
    model, settings = report["model"], report["settings"]
    cast = f", auto_cast {model['auto_cast']} {model['auto_cast_type']}" if model.get("auto_cast") not in (None, "none") else ""
    shapes = " x ".join(f"{k} {v}" for k, v in (model.get("shapes") or {}).items() if k != "batch_size")
    lines = [
        f"Benchmark of {report['artifact']}",
        f"  {model['source']} ({model['task']}), {model['backend']} -O{model['optlevel']}{cast}, {shapes}, on {model['device']}",
        f"  {settings['iterations']} timed calls per side after {settings['warmup']} warm-up calls, interleaved in up to "
        f"{settings['rounds']} rounds; every side in its own process; threads: {report['runs'][0]['sides'][COMPILED]['threads']}",
    ]
    header = f"  {'side':<15}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'inf/s':>10}{'peak RSS MB':>13}{'(+model)':>10}{'max diff':>10}"
    for run in report["runs"]:
        lines += ["", f"batch size {run['batch_size']}:" + ("" if run["same_inputs"] else " (WARNING: the sides did not get the same inputs)"), header]
        for name, side in run["sides"].items():
            label = SIDE_LABELS.get(name, name)
            if side["status"] != "ok":
                lines.append(f"  {label:<15}{side['status']}: {side['detail']}")
                continue
            stats = side["stats"]
            diff = max(side["max_abs_diff"].values()) if side["max_abs_diff"] else None
            lines.append(
                f"  {label:<15}{stats['p50_ms']:>10.2f}{stats['p90_ms']:>10.2f}{stats['p99_ms']:>10.2f}{side['throughput']:>10.1f}"
                f"{side['peak_rss_mb']:>13.0f}{side['rss_growth_mb']:>+10.0f}{'' if diff is None else f'{diff:.1e}':>10}"
            )
        per_image_said = [f"{SIDE_LABELS.get(n, n)} {side['seconds_per_image']:.3f} s"
                          for n, side in run["sides"].items() if side.get("seconds_per_image")]
        if per_image_said:
            lines.append(f"  seconds per image (p50, {settings['steps']} steps; inf/s above = images/s): " + ", ".join(per_image_said))
        said = [f"{SIDE_LABELS.get(side, side)} is {ratio:.2f}x {SIDE_LABELS[baseline]}"
                for (side, baseline), ratio in _ratios(run).items()]
        if said:
            lines.append("  speed-up (p50): " + "; ".join(said))
    if report.get("onnx_export_s"):
        lines.append(f"\nONNX export for the peer took {report['onnx_export_s']:.1f} s")
    if report.get("saved_to"):
        lines.append(f"Results saved to {report['saved_to']}")
    return lines


def _ratios(run: dict[str, Any]) -> dict[tuple[str, str], float]:
    """{(side, baseline): p50 speed-up} of a report's run."""
    return {tuple(key.split("_vs_")): value for key, value in run["speedups"].items() if value}


def headline(report: dict[str, Any]) -> str:
    """One line for job lists: the compiled artifact's speed-ups at the first batch size."""
    run = report["runs"][0]
    said = [f"{ratio:.2f}x {SIDE_LABELS[baseline]}" for (side, baseline), ratio in _ratios(run).items() if side == COMPILED]
    p50 = run["sides"][COMPILED]["stats"]["p50_ms"]
    return f"compiled p50 {p50:.2f} ms at batch {run['batch_size']}" + (f": {', '.join(said)}" if said else "")
