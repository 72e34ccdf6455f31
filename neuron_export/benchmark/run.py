"""The benchmark of one artifact: every side timed on the same inputs, interleaved in rounds."""

from __future__ import annotations

import functools
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..artifact import Manifest
from ..backends import get_backend
from ..errors import ArtifactError, NeuronExportError
from ..inputs import check_input_memory
from ..progress import Progress
from ..registry import GENERATION_CLASSES
from .alternate import alternate
from .inputs import benchmark_inputs
from .peers import PEERS, default_peers, peer_files_isolated, peer_missing, peer_side
from .pipelines import pipeline_inputs, pipeline_spec
from .report import make_report, save_results
from .sides import COMPILED, EAGER, Side, SideProcess, SideResult, SideRunner
from .stats import latency_stats, throughput

@dataclass
class BenchmarkOptions:
    iterations: int = 30  # timed calls per side and batch size
    warmup: int = 5  # untimed calls per side and batch size first
    batch_sizes: Optional[list[int]] = None  # None: the artifact's compiled batch size
    onnx: bool = True  # add the peer sides (ONNX Runtime, OpenVINO: they run the model exported to ONNX)
    peers: Optional[list[str]] = None  # which peers (None: fp32 ones, and int8 ones for an int8 artifact)
    threads: Optional[int] = None  # intra-op threads of every side (None: the libraries' default, all cores)
    seed: int = 0  # of the generated inputs (and a pipeline's latents)
    steps: int = 10  # denoising steps per image (Stable Diffusion pipelines)
    rounds: int = 10  # the timed calls are split into this many interleaved rounds
    save: bool = True  # store the results in ARTIFACT/benchmarks/
    prompt_length: Optional[int] = None  # generative models: tokens of the prompt (default: a quarter of the cache)
    new_tokens: Optional[int] = None  # generative models: tokens generated per call (default: up to 32, within the cache)
    trust_remote_code: bool = False  # run the source model's own code for the eager and ONNX sides (never from the manifest)
    # Stable Diffusion: the Neuron*Pipeline class to time (None: the class the artifact's source was saved as
    # (an SDXL refiner: img2img), else the task's first)
    pipeline: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("iterations", "rounds", "steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise NeuronExportError(f"--{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise NeuronExportError(f"--warmup must be 0 or more, got {self.warmup!r}")
        if self.threads is not None and self.threads < 1:
            raise NeuronExportError(f"--threads must be a positive integer, got {self.threads!r}")
        for name in ("prompt_length", "new_tokens"):
            if getattr(self, name) is not None and (not isinstance(getattr(self, name), int) or getattr(self, name) < 1):
                raise NeuronExportError(f"--{name} must be a positive integer, got {getattr(self, name)!r}")
        for size in self.batch_sizes or []:
            if not isinstance(size, int) or size < 1:
                raise NeuronExportError(f"--batch_size must be a positive integer, got {size!r}")
        unknown = [peer for peer in self.peers or [] if peer not in PEERS]
        if unknown:
            raise NeuronExportError(f"--peers {unknown[0]!r} is not one of: {', '.join(PEERS)}")


def benchmark(artifact: str | Path, options: Optional[BenchmarkOptions] = None, on_event=None) -> dict[str, Any]:
    """Benchmark an artifact against its eager model (and ONNX Runtime); the report is saved with it."""
    options = options or BenchmarkOptions()
    artifact = Path(artifact).expanduser().resolve()
    manifest = Manifest.read(artifact)
    if manifest.library == "diffusers" and not manifest.is_pipeline:
        raise NeuronExportError(
            f"{artifact} is one component of a Stable Diffusion pipeline: benchmark the pipeline folder "
            f"({artifact.parent}) for seconds per image, or time components with benchmarks/bench_sd.py"
        )
    problem = get_backend(manifest.backend).runtime_problem(manifest)
    if problem:
        raise ArtifactError(f"cannot benchmark {artifact} here: {problem}")
    if manifest.pipeline_class in GENERATION_CLASSES:
        from .generation import benchmark_generation

        return benchmark_generation(artifact, manifest, options, on_event)
    if options.pipeline is not None:  # a wrong class fails here, before any side starts
        if not manifest.is_pipeline:
            raise NeuronExportError(f"--pipeline applies to Stable Diffusion pipelines; {artifact} is a {manifest.task} model")
        pipeline_spec(manifest.task, options.pipeline)
    batch_sizes = resolve_batch_sizes(manifest, options)
    peers = _unavailable_peers(manifest, options)  # a result for every peer that will not run
    wanted = [name for name in (options.peers or default_peers(manifest)) if name not in peers]
    progress = Progress(on_event, (2 if wanted else 1) + len(batch_sizes))
    if manifest.is_pipeline:
        inputs_for = functools.partial(pipeline_inputs, manifest, steps=options.steps, seed=options.seed, pipeline=options.pipeline)
    else:
        inputs_for = functools.partial(benchmark_inputs, manifest, artifact, seed=options.seed)
    sides = [Side(COMPILED, COMPILED, str(artifact), precision=artifact_precision(manifest)),
             Side(EAGER, EAGER, str(artifact), trust_remote_code=options.trust_remote_code)]
    onnx_export_s = None
    with side_processes(sides, options.threads) as processes, tempfile.TemporaryDirectory(prefix="neuron-export-onnx-") as folder:
        if wanted:  # export while the other sides load
            with progress.stage("onnx", f"Exporting the eager model to ONNX for the peers ({', '.join(wanted)})"):
                files, onnx_export_s = peer_files_isolated(artifact, Path(folder), wanted, options.trust_remote_code)
            for name, (path, error) in files.items():
                if error:
                    peers[name] = SideResult(name, peer_side(name, Path()).kind, status="failed", detail=error)
                else:
                    processes.append(SideProcess(peer_side(name, path), options.threads))
        results = time_sides(processes, inputs_for, batch_sizes, options, progress)
        if manifest.is_pipeline:  # the last batch size's results: per component and per step
            for process in processes:
                status, value = process.ask_quietly("breakdown") if process.result.ok else ("error", None)
                process.result.pipeline = value if status == "ok" else None
    for by_side in results.values():
        by_side.update(peers)
    compiled = results[batch_sizes[0]][COMPILED]
    if not compiled.ok:
        raise NeuronExportError(f"the compiled artifact could not be benchmarked: {compiled.detail}")
    if manifest.is_pipeline:
        for batch_size, by_side in results.items():
            per_image(by_side.values(), batch_size * manifest.shapes["num_images_per_prompt"])
    report = make_report(artifact, manifest, options, results, onnx_export_s)
    if options.save:
        report["saved_to"] = str(save_results(artifact, report))
    return report


def _unavailable_peers(manifest: Manifest, options: BenchmarkOptions) -> dict[str, SideResult]:
    """The result of every peer that will not run (skipped, not installed); the others are left out."""
    reason = None
    if not options.onnx:
        reason = "--no-onnx"
    elif manifest.is_pipeline:
        reason = "the peers run transformers models only"
    elif manifest.device != "cpu":
        reason = f"the peers run on CPU; this artifact runs on {manifest.device}"
    results = {}
    for name in options.peers or default_peers(manifest):
        kind = peer_side(name, Path()).kind
        if reason:
            results[name] = SideResult(name, kind, status="skipped", detail=reason)
        elif missing := peer_missing(name):
            results[name] = SideResult(name, kind, status="not installed", detail=missing.removeprefix("not installed: "))
    return results


def artifact_precision(manifest: Manifest) -> str:
    """What the compiled artifact's matmuls compute in (its peak FLOP/s differ)."""
    if manifest.options.quantize != "none":
        return "int8"
    if manifest.auto_cast != "none" and manifest.auto_cast_type in ("bf16", "fp16"):
        return manifest.auto_cast_type
    return "fp32"


def per_image(results, images_per_call: int) -> None:
    """A pipeline call makes images_per_call images: throughput in images/s and p50 seconds per image."""
    for result in results:
        if result.ok and result.stats:
            seconds = [ms / 1000 for ms in result.latencies_ms]
            result.throughput = throughput(seconds, images_per_call)
            result.seconds_per_image = result.stats.p50_ms / 1000 / images_per_call


def resolve_batch_sizes(manifest: Manifest, options: BenchmarkOptions) -> list[int]:
    compiled = manifest.batch_size
    sizes = sorted(set(options.batch_sizes or [compiled]))
    if not manifest.dynamic_batch:
        other = [size for size in sizes if size != compiled]
        if other:
            raise NeuronExportError(
                f"--batch_size {other[0]}: this artifact was compiled for batch size {compiled} only "
                "(export with --dynamic-batch-size to benchmark other batch sizes)"
            )
    for size in sizes:
        check_input_memory({spec.name: (size, *spec.shape[1:]) for spec in manifest.inputs}, {"batch_size": size})
    return sizes


@contextmanager
def side_processes(sides: list[Side], threads: Optional[int], runner_class: type = SideRunner) -> Iterator[list[SideProcess]]:
    """Start every side's process (they load in the background); stop them all on exit.
    More sides may be appended to the list (e.g. once the ONNX export is done)."""
    processes = [SideProcess(side, threads, runner_class) for side in sides]
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
    case: str = "batch size",
    rows: Optional[int] = None,
) -> dict[int, dict[str, SideResult]]:
    """Time every side at every batch size on the same inputs, interleaved; results by batch, then side.
    case: what the sizes are ("batch size", or "sequence length" with `rows` inputs per call)."""
    names = ", ".join(process.side.name for process in processes)
    with progress.stage("loading", f"Loading {len(processes)} sides ({names}), each in its own process"):
        for process in processes:
            process.wait_ready()
    results = {}
    for size in batch_sizes:
        label = f"{case} {size}"
        with progress.stage("timing", f"Timing {label}", key=f"timing.{label.replace(' ', '_')}"):
            results[size] = _time_batch(processes, inputs_for(size), rows or size, label, options, progress)
    return results


def run_sides(sides: list[Side], inputs_for, batch_sizes: list[int], options: BenchmarkOptions, progress,
              **timing: Any) -> dict[int, dict[str, SideResult]]:
    with side_processes(sides, options.threads) as processes:
        return time_sides(processes, inputs_for, batch_sizes, options, progress, **timing)


def _time_batch(processes: list[SideProcess], arrays, batch_size: int, label: str, options: BenchmarkOptions, progress) -> dict[str, SideResult]:
    for process in processes:
        loaded = process.result
        process.result = SideResult(process.side.name, process.side.kind, status=loaded.status, detail=loaded.detail,
                                    load_s=loaded.load_s, threads=loaded.threads, precision=process.side.precision, isa=loaded.isa,
                                    peak_gflops=loaded.peak_gflops, core_peak_gflops=loaded.core_peak_gflops)
        bound = process.ask("bind", arrays)
        if bound is not None:
            process.result.input_digest, process.result.input_shapes = bound
        process.ask("warmup", options.warmup)
    eager = next((p for p in processes if p.side.kind == EAGER), None)
    reference = eager.ask("outputs") if eager else None
    for process in processes:
        outputs = process.ask("outputs") if reference is not None and process.side.kind != EAGER else None
        if outputs:
            process.result.max_abs_diff = {
                name: float(abs(outputs[name] - reference[name]).max()) for name in reference if name in outputs
            }
    flops = _count_flops(eager)
    def on_round(done: int, total: int) -> None:
        progress.emit({"type": "stage", "stage": "timing", "index": progress.done + 1, "total": progress.total,
                       "fraction": (progress.done + done / total) / progress.total, "message": f"Timing {label}: round {done}/{total}"})

    turns = [lambda calls, process=process: process.ask("time", calls) for process in processes]
    timings = alternate(turns, options.iterations, options.rounds, on_round)
    cpu_seconds = {}
    for process, (seconds, cpu) in zip(processes, timings):
        process.result.latencies_ms += [s * 1000 for s in seconds]
        cpu_seconds[process.side.name] = cpu
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
            result.cores_busy = cpu_seconds[process.side.name] / sum(seconds)
            _efficiency(result, flops, cpu_seconds[process.side.name])
        results[process.side.name] = result
    return results


def _count_flops(eager: Optional[SideProcess]) -> Optional[int]:
    """FLOPs of one call at this batch size, counted by the eager side on its exported graph (None for
    pipelines, or when that side failed: the other sides carry on without efficiency figures)."""
    if eager is None or not eager.result.ok:
        return None
    status, value = eager.ask_quietly("flops")
    return value if status == "ok" else None


def _efficiency(result: SideResult, flops: Optional[int], cpu_seconds: float) -> None:
    """Achieved GFLOP/s at the median latency and its share of this CPU's peak for the side's precision
    and threads; and GFLOP per second of CPU time the side got, as a share of one core's peak."""
    result.flops = flops
    if not flops or not result.stats:
        return
    result.gflops = flops / (result.stats.p50_ms / 1000) / 1e9
    if cpu_seconds > 0:
        result.cpu_gflops = flops * len(result.latencies_ms) / cpu_seconds / 1e9
    if result.peak_gflops:
        result.peak_percent = 100 * result.gflops / result.peak_gflops
    if result.core_peak_gflops and result.cpu_gflops:
        result.cpu_peak_percent = 100 * result.cpu_gflops / result.core_peak_gflops
