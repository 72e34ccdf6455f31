"""What bucketing buys on CPU: a bert-base-sized model (BertConfig defaults, random weights) exported
with AOTInductor twice, with buckets 32/64/128/256 and with the single static shape 256, then timed on
inputs of a real length (20 tokens by default) in ONE interleaved run (neuron_export.benchmark.run_sides:
each side in its own process, same inputs, rotating rounds):

- buckets: the bucketed artifact, which runs the call on its 32 bucket;
- largest bucket only: the same artifact restricted to its 256 bucket (what `benchmark --sequence_length` compares);
- single shape 256: the one-shape artifact through its model class, which pads the call to 256;
- eager PyTorch on the unpadded input.

    nice python benchmarks/bench_buckets.py                          # ~15 min on 2 busy cores
    nice python benchmarks/bench_buckets.py --lengths 20,100,200 --threads 1 --json buckets.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_compare import build_bert_base  # noqa: E402

from neuron_export.artifact import read_manifest  # noqa: E402
from neuron_export.benchmark import COMPILED, EAGER, BenchmarkOptions, Side, run_sides  # noqa: E402
from neuron_export.benchmark.inputs import benchmark_inputs  # noqa: E402
from neuron_export.benchmark.report import host_line, host_summary  # noqa: E402
from neuron_export.benchmark.sides import LARGEST_BUCKET, MODEL_CLASS  # noqa: E402
from neuron_export.progress import Progress  # noqa: E402

BUCKETS = "32,64,128,256"
SIDES = {"buckets": COMPILED, "largest bucket only": LARGEST_BUCKET, "single shape 256": MODEL_CLASS, "eager": EAGER}


def export(model: Path, output: Path, sequence_length: str) -> float:
    """The real CLI with a fresh Inductor cache; returns the command's seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCHINDUCTOR_CACHE_DIR": str(output.parent / f"inductor-{output.name}")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "neuron_export", "export", "--model", str(model), "--task", "feature-extraction",
                    "--backend", "inductor", "--sequence_length", sequence_length, "--no-cache", str(output)], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="20", help="comma-separated input lengths (default 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-buckets-") as folder:
        root = Path(folder)
        model = build_bert_base(root / "bert-base")
        bucketed, single = root / "buckets", root / "single"
        export_s = {"buckets": export(model, bucketed, BUCKETS), "single": export(model, single, "256")}
        paths = {"buckets": bucketed, "largest bucket only": bucketed, "single shape 256": single, "eager": bucketed}
        sides = [Side(name, kind, str(paths[name])) for name, kind in SIDES.items()]
        manifest = read_manifest(bucketed)
        options = BenchmarkOptions(iterations=args.iterations, warmup=5, threads=args.threads, save=False)
        inputs_for = lambda length: benchmark_inputs(manifest, bucketed, 1, 0, {"sequence_length": length})  # noqa: E731
        results = run_sides(sides, inputs_for, lengths, options, Progress(None, 1 + len(lengths)), case="sequence length", rows=1)
        report = {"host": host_summary(), "threads": args.threads, "export_s": export_s, "buckets": BUCKETS,
                  "weights_note": manifest.bucketing.weights_note,
                  "disk_mb": {name: sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 for name, path in
                              (("buckets", bucketed), ("single", single))},
                  "runs": {length: {name: asdict(result) for name, result in by_side.items()} for length, by_side in results.items()}}
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


def print_report(report: dict) -> None:
    print(f"\nbert-base-size (random weights), inductor -O2, batch 1, {report['threads']} thread(s); buckets {report['buckets']} "
          f"vs one static shape 256")
    print(f"host: {host_line(report['host'])}")
    print(f"export: buckets {report['export_s']['buckets']:.0f} s, single {report['export_s']['single']:.0f} s; on disk: buckets "
          f"{report['disk_mb']['buckets']:.0f} MB, single {report['disk_mb']['single']:.0f} MB ({report['weights_note']})")
    for length, sides in report["runs"].items():
        p50 = {name: side["stats"]["p50_ms"] for name, side in sides.items() if side["status"] == "ok"}
        print(f"\n{length} tokens:  " + "  ".join(f"{name} p50 {ms:.1f} ms" for name, ms in p50.items()))
        if "buckets" in p50:
            print("  buckets' speed-up: " + ", ".join(f"{p50[name] / p50['buckets']:.2f}x {name}" for name in p50 if name != "buckets"))
        for name, side in sides.items():
            if side["status"] != "ok":
                print(f"  {name}: {side['status']} ({side['detail']})")
            elif side["max_abs_diff"]:
                print(f"  {name}: max |diff| vs eager {max(side['max_abs_diff'].values()):.1e}")


if __name__ == "__main__":
    main()
