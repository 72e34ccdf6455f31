"""The benchmark report: speed-ups, the run's context (artifact, host), its history, and its text form."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from .. import cpu
from ..artifact import Manifest, write_json
from .peak import host_peak
from .pipelines import breakdown_lines
from .sides import COMPILED, EAGER, PEER_KINDS, SIDE_LABELS, SideResult
from .stats import speedup

RESULTS_DIR = "benchmarks"  # inside the artifact folder: one JSON file per run
RESULTS_FORMAT = 1


def speedups(sides: dict[str, SideResult]) -> dict[str, float]:
    """p50 speed-up of every side over eager PyTorch, and of every compiled side over every peer."""
    p50 = {name: result.stats.p50_ms for name, result in sides.items() if result.ok and result.stats}
    peers = [name for name, result in sides.items() if result.kind in PEER_KINDS]
    ratios = {}
    for name, result in sides.items():
        if name not in p50 or result.kind == EAGER:
            continue
        for baseline in [EAGER] + (peers if result.kind == COMPILED else []):
            if baseline in p50:
                ratios[f"{name}_vs_{baseline}"] = speedup(p50[baseline], p50[name])
    return ratios


def make_report(
    artifact: Path, manifest: Manifest, options, results: dict[int, dict[str, SideResult]],
    onnx_export_s: Optional[float],
) -> dict[str, Any]:
    runs = []
    for batch_size, sides in results.items():
        digests = {r.input_digest for r in sides.values() if r.ok}
        runs.append({
            "batch_size": batch_size,
            "same_inputs": len(digests) == 1,
            "flops": next((r.flops for r in sides.values() if r.flops), None),
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


def artifact_summary(manifest: Manifest) -> dict[str, Any]:
    """What a reader of the results needs to know about the compiled artifact (its trade-off choices)."""
    timings = manifest.timings
    return {
        "source": manifest.source,
        "task": manifest.task,
        "model_type": manifest.model_type,
        "backend": manifest.backend,
        "optlevel": manifest.optlevel,
        "auto_cast": manifest.auto_cast,
        "auto_cast_type": manifest.auto_cast_type,
        "quantize": manifest.options.quantize,
        "cpu_isa": manifest.cpu_isa,
        "threads": manifest.threads,
        "device": manifest.device,
        "dynamic_batch": manifest.dynamic_batch,
        "shapes": manifest.shapes,
        "input_shapes": {spec.name: spec.shape for spec in manifest.inputs},
        "compile_s": sum(v for k, v in timings.items() if k.endswith(("tracing", "compiling"))),
        "export_s": sum(timings.values()),
    }


def host_summary() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    peak = host_peak()
    return {
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector ISA torch's CPU kernels use
        "vector_flags": _vector_flags(),
        "cpu_count": os.cpu_count(),
        "isa": peak.isa,  # what compiled code may use here (torch's capability caps it)
        "peak": asdict(peak),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "gpu": gpu,
    }


def _version(module: str) -> Optional[str]:
    if importlib.util.find_spec(module) is None:
        return None
    return getattr(__import__(module), "__version__", "?")


def host_line(host: dict[str, Any]) -> str:
    """The host a figure was measured on, in one line: CPU, torch's vector ISA and the CPU's vector flags."""
    flags = " ".join(host.get("vector_flags") or []) or "unknown"
    return f"{host.get('processor', 'unknown CPU')}, torch CPU capability {host.get('cpu_capability', 'unknown')}, flags {flags}"


def _vector_flags() -> list[str]:
    """The CPU's vector-ISA flags (lscpu's avx*, amx*, fma): what a speed figure depends on."""
    return sorted(flag for flag in cpu.cpu_flags() if flag.startswith(("avx", "amx", "fma")))


def _cpu_name() -> str:
    return cpu.proc_cpuinfo().get("model name") or platform.processor() or platform.machine()


def save_results(artifact: Path, report: dict[str, Any], kind: str = "") -> Path:
    """Store a report in ARTIFACT/benchmarks/ (another kind of report in a sub-folder of that name)."""
    folder = artifact / RESULTS_DIR / kind
    folder.mkdir(parents=True, exist_ok=True)
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


def format_report(report: dict[str, Any]) -> list[str]:
    if report.get("kind") == "generation":
        from .generation import format_generation_report

        return format_generation_report(report)
    model, settings, host = report["model"], report["settings"], report["host"]
    cast = f", auto_cast {model['auto_cast']} {model['auto_cast_type']}" if model.get("auto_cast") not in (None, "none") else ""
    cast += f", quantize {model['quantize']}" if model.get("quantize") not in (None, "none") else ""
    isa = f", CPU code for {model['cpu_isa']}" if model.get("cpu_isa") else ""
    shapes = " x ".join(f"{k} {v}" for k, v in (model.get("shapes") or {}).items() if k != "batch_size")
    lines = [
        f"Benchmark of {report['artifact']}",
        f"  {model['source']} ({model['task']}), {model['backend']} -O{model['optlevel']}{cast}{isa}, {shapes}, on {model['device']}",
        f"  host: {host_line(host)}; {host['cpu_count']} cores, ISA {host.get('isa', '?')}",
        f"  {settings['iterations']} timed calls per side after {settings['warmup']} warm-up calls, interleaved in up to "
        f"{settings['rounds']} rounds; every side in its own process; threads: {report['runs'][0]['sides'][COMPILED]['threads']} "
        f"(asked: {settings['threads'] or 'all cores'})",
    ]
    for run in report["runs"]:
        lines += ["", f"batch size {run['batch_size']}:" + ("" if run["same_inputs"] else " (WARNING: the sides did not get the same inputs)")]
        lines += _side_table(run)
        per_image_said = [f"{SIDE_LABELS.get(n, n)} {side['seconds_per_image']:.3f} s"
                          for n, side in run["sides"].items() if side.get("seconds_per_image")]
        if per_image_said:
            lines.append(f"  seconds per image (p50, {settings['steps']} steps; inf/s above = images/s): " + ", ".join(per_image_said))
            lines += breakdown_lines(run["sides"], SIDE_LABELS)
        said = [f"{SIDE_LABELS.get(side, side)} is {ratio:.2f}x {SIDE_LABELS.get(baseline, baseline)}"
                for (side, baseline), ratio in _ratios(run).items()]
        if said:
            lines.append("  speed-up (p50): " + "; ".join(said))
    lines += efficiency_notes(report)
    if report.get("onnx_export_s"):
        lines.append(f"\nONNX export (and int8 models) for the peers took {report['onnx_export_s']:.1f} s")
    if report.get("saved_to"):
        lines.append(f"Results saved to {report['saved_to']}")
    return lines


def _side_table(run: dict[str, Any]) -> list[str]:
    lines = [f"  {'side':<19}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'inf/s':>9}{'GFLOP/s':>9}{'% peak':>8}{'%/CPU s':>8}"
             f"{'threads':>8}{'busy':>6}{'RSS MB':>8}{'(+model)':>9}{'max diff':>10}"]
    for name, side in run["sides"].items():
        label = SIDE_LABELS.get(name, name)
        if side["status"] != "ok":
            lines.append(f"  {label:<19}{side['status']}: {side['detail']}")
            continue
        stats = side["stats"]
        diff = max(side["max_abs_diff"].values()) if side["max_abs_diff"] else None
        lines.append(
            f"  {label:<19}{stats['p50_ms']:>9.2f}{stats['p90_ms']:>9.2f}{stats['p99_ms']:>9.2f}{side['throughput']:>9.1f}"
            f"{_maybe(side.get('gflops'), '.1f'):>9}{_maybe(side.get('peak_percent'), '.1f'):>8}"
            f"{_maybe(side.get('cpu_peak_percent'), '.1f'):>8}{_maybe(side.get('threads'), 'd'):>8}"
            f"{_maybe(side.get('cores_busy'), '.2f'):>6}{side['peak_rss_mb']:>8.0f}{side['rss_growth_mb']:>+9.0f}"
            f"{'' if diff is None else f'{diff:.1e}':>10}"
        )
    return lines


def efficiency_notes(report: dict[str, Any]) -> list[str]:
    """How GFLOP/s, % of peak and the thread columns were arrived at."""
    peak = report["host"].get("peak")
    flops = [(run["batch_size"], run.get("flops")) for run in report["runs"] if run.get("flops")]
    if not peak or not flops:
        return []
    counted = ", ".join(f"{value / 1e9:.2f} GFLOP at batch {batch}" for batch, value in flops)
    threads = report["settings"]["threads"] or report["runs"][0]["sides"][COMPILED].get("threads") or 1
    used = min(threads, peak["cores"])
    lines = [f"\nFLOPs per call: {counted} (counted on the eager model's exported graph: 2 x multiply-adds of matmuls,"
             " linears, convolutions, attention). GFLOP/s = FLOPs / p50 latency.",
             f"% peak: of this host's peak for the side's precision and threads = {used} core(s) x {peak['clock_ghz']:.2f} GHz "
             f"({peak['clock_source']}{'; ' + '; '.join(peak['notes']) if peak['notes'] else ''}) x FLOP/cycle/core:"]
    lines += [f"  {precision} {peak['flop_per_cycle'][precision]} ({peak['why'][precision]})" for precision in peak["flop_per_cycle"]]
    lines.append("%/CPU s: GFLOP per second of CPU time the side's process got, as % of ONE core's peak: what its kernels"
                 " achieve while they run, whatever other processes take on a shared machine.")
    lines.append("threads: the intra-op threads each side was given; busy: its CPU time / wall time over the timed calls"
                 " (the threads really working, or less when other processes take the cores; spinning pools count too).")
    return lines


def _maybe(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _ratios(run: dict[str, Any]) -> dict[tuple[str, str], float]:
    """{(side, baseline): p50 speed-up} of a report's run."""
    return {tuple(key.split("_vs_")): value for key, value in run["speedups"].items() if value}


def headline(report: dict[str, Any]) -> str:
    """One line for job lists: the compiled artifact's speed-ups at the first batch size."""
    if report.get("kind") == "generation":
        from .generation import generation_headline

        return generation_headline(report)
    run = report["runs"][0]
    said = [f"{ratio:.2f}x {SIDE_LABELS[baseline]}" for (side, baseline), ratio in _ratios(run).items() if side == COMPILED]
    p50 = run["sides"][COMPILED]["stats"]["p50_ms"]
    return f"compiled p50 {p50:.2f} ms at batch {run['batch_size']}" + (f": {', '.join(said)}" if said else "")
