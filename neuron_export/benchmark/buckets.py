"""What bucketing buys: a bucketed artifact timed on inputs of real lengths, each on the bucket it
picks, against the same artifact restricted to its largest bucket (what one static shape would
cost) and eager PyTorch, all in one interleaved run (`neuron-export benchmark OUT --sequence_length 10,50,200`)."""

from __future__ import annotations

import datetime
import functools
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from ..artifact import Manifest
from ..backends import get_backend
from ..errors import ArtifactError, NeuronExportError
from ..progress import Progress
from ..registry import PAD
from .inputs import benchmark_inputs
from .report import artifact_summary, host_line, host_summary, save_results
from .run import BenchmarkOptions, run_sides
from .sides import COMPILED, EAGER, LARGEST_BUCKET, SIDE_LABELS, Side
from .stats import speedup

RESULTS_KIND = "buckets"  # stored in ARTIFACT/benchmarks/buckets/, apart from the sides' results


def benchmark_lengths(artifact: str | Path, lengths: list[int], options: Optional[BenchmarkOptions] = None, on_event=None) -> dict[str, Any]:
    """Time `lengths` on a bucketed artifact: chosen bucket vs largest bucket only vs eager, interleaved."""
    options = options or BenchmarkOptions()
    artifact = Path(artifact).expanduser().resolve()
    manifest = Manifest.read(artifact)
    axis = _length_axis(manifest, artifact)
    largest = manifest.buckets[-1].shapes[axis]
    for length in lengths:
        if not isinstance(length, int) or not 0 < length <= largest:
            raise NeuronExportError(f"--{axis} {length}: give lengths from 1 to the largest bucket, {largest}")
    problem = get_backend(manifest.backend).runtime_problem(manifest)
    if problem:
        raise ArtifactError(f"cannot benchmark {artifact} here: {problem}")
    lengths = sorted(set(lengths))
    progress = Progress(on_event, 1 + len(lengths))
    sides = [Side(COMPILED, COMPILED, str(artifact)), Side(LARGEST_BUCKET, LARGEST_BUCKET, str(artifact)), Side(EAGER, EAGER, str(artifact))]
    inputs_for = functools.partial(_inputs_at, manifest, artifact, axis, options.seed)
    results = run_sides(sides, inputs_for, lengths, options, progress, case=axis.replace("_", " "), rows=manifest.batch_size)
    if not results[lengths[0]][COMPILED].ok:
        raise NeuronExportError(f"the compiled artifact could not be benchmarked: {results[lengths[0]][COMPILED].detail}")
    report = {
        "format_version": 1,
        "kind": RESULTS_KIND,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "artifact": str(artifact),
        "model": artifact_summary(manifest),
        "host": host_summary(),
        "settings": asdict(options),
        "axis": axis,
        "buckets": [bucket.shapes[axis] for bucket in manifest.buckets],
        "runs": [_run(axis, length, by_side, manifest) for length, by_side in results.items()],
    }
    if options.save:
        report["saved_to"] = str(save_results(artifact, report, RESULTS_KIND))
    return report


def _length_axis(manifest: Manifest, artifact: Path) -> str:
    bucketing = manifest.bucketing
    if not manifest.is_bucketed or manifest.is_pipeline:
        raise NeuronExportError(f"{artifact} has one static shape: timing lengths compares the buckets of an artifact "
                                "exported with several, e.g. --sequence_length 32,64,128")
    if bucketing.fit != PAD or len(bucketing.axes) != 1:
        raise NeuronExportError(f"{artifact} is bucketed by {' x '.join(bucketing.axes)}, matched exactly: there are no lengths to pad")
    return bucketing.axes[0]


def _inputs_at(manifest: Manifest, artifact: Path, axis: str, seed: int, length: int) -> dict[str, Any]:
    return benchmark_inputs(manifest, artifact, manifest.batch_size, seed, {axis: length})


def _run(axis: str, length: int, by_side, manifest: Manifest) -> dict[str, Any]:
    bucket = next(b.shapes[axis] for b in manifest.buckets if b.shapes[axis] >= length)
    p50 = {name: result.stats.p50_ms for name, result in by_side.items() if result.ok and result.stats}
    ratios = {f"{COMPILED}_vs_{other}": speedup(p50[other], p50[COMPILED]) for other in (LARGEST_BUCKET, EAGER) if other in p50 and COMPILED in p50}
    return {axis: length, "bucket": bucket, "same_inputs": len({r.input_digest for r in by_side.values() if r.ok}) == 1,
            "speedups": ratios, "sides": {name: asdict(result) for name, result in by_side.items()}}


def format_lengths_report(report: dict[str, Any]) -> list[str]:
    model, axis, settings = report["model"], report["axis"], report["settings"]
    host = report["host"]
    lines = [
        f"Buckets of {report['artifact']}: {axis} {', '.join(map(str, report['buckets']))}",
        f"  {model['source']} ({model['task']}), {model['backend']} -O{model['optlevel']}, batch {model['shapes'].get('batch_size')}, "
        f"on {host_line(host)}",
        f"  {settings['iterations']} timed calls per side and length, interleaved in up to {settings['rounds']} rounds; every side in its own process",
        "",
        f"  {axis:<16}{'bucket':>8}{'p50 ms':>10}{'largest only':>14}{'speed-up':>10}{'eager p50':>11}{'vs eager':>10}",
    ]
    for run in report["runs"]:
        sides = run["sides"]
        p50 = {name: side["stats"]["p50_ms"] if side["status"] == "ok" else None for name, side in sides.items()}
        failed = [f"{SIDE_LABELS.get(n, n)}: {s['detail']}" for n, s in sides.items() if s["status"] != "ok"]
        ratio = run["speedups"].get(f"{COMPILED}_vs_{LARGEST_BUCKET}")
        versus_eager = run["speedups"].get(f"{COMPILED}_vs_{EAGER}")
        lines.append(f"  {run[axis]:<16}{run['bucket']:>8}{_ms(p50.get(COMPILED)):>10}{_ms(p50.get(LARGEST_BUCKET)):>14}"
                     f"{_times(ratio):>10}{_ms(p50.get(EAGER)):>11}{_times(versus_eager):>10}"
                     + ("" if run["same_inputs"] else "  (WARNING: the sides did not get the same inputs)")
                     + ("".join(f"  [{f}]" for f in failed)))
    lines.append(f"  speed-up: the largest bucket's p50 over the chosen bucket's, on the same inputs ({axis} as given, unpadded for eager)")
    if report.get("saved_to"):
        lines.append(f"Results saved to {report['saved_to']}")
    return lines


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _times(value: Optional[float]) -> str:
    return "-" if not value else f"{value:.2f}x"
