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

from ..artifact import Manifest, write_json
from .sides import COMPILED, EAGER, ONNXRUNTIME, SIDE_LABELS, SideResult
from .stats import speedup

RESULTS_DIR = "benchmarks"  # inside the artifact folder: one JSON file per run
RESULTS_FORMAT = 1


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
    artifact: Path, manifest: Manifest, options, results: dict[int, dict[str, SideResult]],
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
        "device": manifest.device,
        "dynamic_batch": manifest.dynamic_batch,
        "shapes": manifest.shapes,
        "input_shapes": {spec.name: spec.shape for spec in manifest.inputs},
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
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector ISA torch's CPU kernels use
        "vector_flags": _vector_flags(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__ if onnxruntime else None,
        "gpu": gpu,
    }


def host_line(host: dict[str, Any]) -> str:
    """The host a figure was measured on, in one line: CPU, torch's vector ISA and the CPU's vector flags."""
    flags = " ".join(host.get("vector_flags") or []) or "unknown"
    return f"{host.get('processor', 'unknown CPU')}, torch CPU capability {host.get('cpu_capability', 'unknown')}, flags {flags}"


def _vector_flags() -> list[str]:
    """The CPU's vector-ISA flags (lscpu's avx*, amx*, fma): what a speed figure depends on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    model, settings = report["model"], report["settings"]
    cast = f", auto_cast {model['auto_cast']} {model['auto_cast_type']}" if model.get("auto_cast") not in (None, "none") else ""
    shapes = " x ".join(f"{k} {v}" for k, v in (model.get("shapes") or {}).items() if k != "batch_size")
    lines = [
        f"Benchmark of {report['artifact']}",
        f"  {model['source']} ({model['task']}), {model['backend']} -O{model['optlevel']}{cast}, {shapes}, on {model['device']}",
        f"  {settings['iterations']} timed calls per side after {settings['warmup']} warm-up calls, interleaved in up to "
        f"{settings['rounds']} rounds; every side in its own process; threads: {report['runs'][0]['sides'][COMPILED]['threads']}",
        f"  host: {host_line(report.get('host') or {})}",
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
    if report.get("kind") == "generation":
        from .generation import generation_headline

        return generation_headline(report)
    run = report["runs"][0]
    said = [f"{ratio:.2f}x {SIDE_LABELS[baseline]}" for (side, baseline), ratio in _ratios(run).items() if side == COMPILED]
    p50 = run["sides"][COMPILED]["stats"]["p50_ms"]
    return f"compiled p50 {p50:.2f} ms at batch {run['batch_size']}" + (f": {', '.join(said)}" if said else "")
