"""CPU target run: inductor artifacts (native, portable AVX2 / AVX-512 code, int8) against eager PyTorch,
ONNX Runtime and OpenVINO (fp32 and int8), with achieved GFLOP/s and % of the CPU's peak.

For a bert-base-sized model (BertConfig defaults, random weights built here) and the real MiniLM
(demo:minilm), sequence length 128, at each batch size:
1. export every variant through the real CLI (`--no-cache`, a fresh Inductor cache each);
2. make the peers' models once (ONNX export, ONNX Runtime int8, OpenVINO int8);
3. time every side in ONE interleaved run per thread count (neuron_export.benchmark.run_sides: each
   side in its own process, same inputs, rotating rounds); with --emulate-avx2, once more with
   every side's process seeing an AVX2-only CPU (ATEN_CPU_CAPABILITY=avx2 for torch,
   ONEDNN_MAX_CPU_ISA=AVX2 for oneDNN and OpenVINO; ONNX Runtime cannot be capped);
4. print one table per model and batch size, and write everything as JSON.

    nice -n 10 python benchmarks/bench_compare.py                       # both models, batch 1 and 8, 1 and 2 threads
    nice -n 10 python benchmarks/bench_compare.py --models minilm --batch_sizes 1 --threads 1 --emulate-avx2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuron_export.artifact import read_manifest, read_validation  # noqa: E402
from neuron_export.benchmark import COMPILED, EAGER, BenchmarkOptions, Side, run_sides  # noqa: E402
from neuron_export.benchmark.inputs import benchmark_inputs  # noqa: E402
from neuron_export.benchmark.peers import PEERS, peer_files_isolated, peer_missing, peer_side  # noqa: E402
from neuron_export.benchmark.report import host_summary  # noqa: E402
from neuron_export.benchmark.run import artifact_precision  # noqa: E402
from neuron_export.benchmark.sides import SIDE_LABELS  # noqa: E402
from neuron_export.progress import Progress  # noqa: E402

SEQUENCE_LENGTH = 128
MODELS = ("bert-base", "minilm")
# name -> export arguments (inductor -O2, the default, plus these)
VARIANTS = {
    "inductor": [],
    "inductor avx2": ["--cpu_isa", "avx2"],
    "inductor avx512": ["--cpu_isa", "avx512"],
    "inductor int8": ["--quantize", "int8-dynamic"],
}
AVX2_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def build_bert_base(folder: Path) -> Path:
    """bert-base-uncased's architecture (BertConfig defaults: 12 layers, hidden 768, 110M params), random weights."""
    import torch
    from transformers import BertConfig, BertModel

    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        BertModel(BertConfig()).save_pretrained(folder)
    return folder


def export_variant(model: str, name: str, batch_size: int, output: Path, threads: int) -> dict[str, Any]:
    """Export through the real CLI with a fresh Inductor cache (no cached compile can shorten it)."""
    with tempfile.TemporaryDirectory(prefix="bench-inductor-cache-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "neuron_export", "export", "--model", model, "--task", "feature-extraction",
                "--backend", "inductor", "--sequence_length", str(SEQUENCE_LENGTH), "--batch_size", str(batch_size),
                "--threads", str(threads), *VARIANTS[name], "--no-cache", "--force", str(output)]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: built, validation failed (reported below)
        return {"variant": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1], "export_s": wall}
    manifest = read_manifest(output)
    validation = read_validation(output) or {}
    return {
        "variant": name, "artifact": str(output), "export_s": wall,
        "compile_s": sum(v for k, v in manifest.timings.items() if k.endswith(("tracing", "compiling"))),
        "validation": {"passed": manifest.validation.passed, "atol": validation.get("atol"),
                       "max_abs_diff": max((o["max_abs_diff"] or 0.0) for o in validation.get("outputs", [{}])) if validation else None},
        "cpu_flags": manifest.cpu_flags, "threads": manifest.threads,
    }


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set in os.environ while timing: every side's process inherits it."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_event(event: dict[str, Any]) -> None:
    if event.get("type") == "stage" and event.get("index") and "round" not in event.get("message", ""):
        print(f"    {event['message']}", flush=True)


def compare(name: str, batch_size: int, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    model = str(build_bert_base(workdir / "bert-base-model")) if name == "bert-base" else "demo:minilm"
    print(f"\n== {name} ({model}), batch {batch_size}, sequence length {SEQUENCE_LENGTH}", flush=True)
    exports = []
    for variant in args.variants:
        print(f"  exporting {variant} ...", flush=True)
        result = export_variant(model, variant, batch_size, workdir / f"{name}-b{batch_size}-{variant.replace(' ', '_')}",
                                max(args.threads))
        print(f"    {result['error']}" if "error" in result else f"    {result['export_s']:.0f} s", flush=True)
        exports.append(result)
    built = [e for e in exports if "error" not in e]
    if not built:
        raise SystemExit(f"no {name} variant could be exported")
    reference = Path(built[0]["artifact"])
    manifest = read_manifest(reference)
    sides = [Side(EAGER, EAGER, str(reference))]
    sides += [Side(e["variant"], COMPILED, e["artifact"], artifact_precision(read_manifest(e["artifact"]))) for e in built]
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as folder:
        wanted = [peer for peer in PEERS if not peer_missing(peer)]
        print(f"  preparing peers ({', '.join(wanted)}) ...", flush=True)
        files, _ = peer_files_isolated(reference, Path(folder), wanted)
        peers = {peer: error or path for peer, (path, error) in files.items()}
        sides += [peer_side(peer, path) for peer, (path, error) in files.items() if path]
        for mode, values in (("native", {}), *((("avx2 (emulated)", AVX2_ENVIRONMENT),) if args.emulate_avx2 else ())):
            for threads in args.threads:
                print(f"  timing {len(sides)} sides, {mode}, {threads} thread(s) each ...", flush=True)
                options = BenchmarkOptions(iterations=args.iterations, warmup=args.warmup, threads=threads, rounds=args.rounds, save=False)
                with environment(values):
                    by_side = run_sides(sides, lambda b: benchmark_inputs(manifest, reference, b, 0), [batch_size], options,
                                        Progress(log_event, 2))[batch_size]
                runs[f"{mode}, {threads} thread{'s' if threads > 1 else ''}"] = {k: asdict(v) for k, v in by_side.items()}
    return {"model": name, "source": model, "batch_size": batch_size, "exports": exports, "peers": {k: str(v) for k, v in peers.items()},
            "runs": runs}


def best_peer_p50(sides: dict[str, Any], precision: str) -> Optional[float]:
    """The fastest peer of the same precision class (fp32 for fp32/bf16 sides, int8 for int8 ones)."""
    times = [side["stats"]["p50_ms"] for name, side in sides.items() if name in PEERS and side["status"] == "ok"
             and (side["precision"] == "int8") == (precision == "int8")]
    return min(times) if times else None


def markdown_table(result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    head = "| side | " + " | ".join(f"{run}: p50 ms / vs best peer / GFLOP/s / % peak / % peak per CPU-s / busy" for run in runs)
    head += " | max diff vs eager |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    names = list(next(iter(runs.values())))
    for name in names:
        cells, diff = [SIDE_LABELS.get(name, name)], None
        for sides in runs.values():
            side = sides[name]
            if side["status"] != "ok":
                cells.append(f"{side['status']}: {side['detail']}"[:90])
                continue
            p50 = side["stats"]["p50_ms"]
            best = best_peer_p50(sides, side["precision"])
            ratio = "" if name in PEERS or name == EAGER or not best else f"{best / p50:.2f}x"
            cells.append(f"{p50:.1f} / {ratio} / {side['gflops'] or 0:.0f} / {side['peak_percent'] or 0:.0f}% / "
                         f"{side['cpu_peak_percent'] or 0:.0f}% / {side['cores_busy']:.2f}")
            diff = max(side["max_abs_diff"].values()) if side["max_abs_diff"] else diff
        cells.append("" if diff is None else f"{diff:.1e}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="intra-op threads per side (one interleaved run each)")
    parser.add_argument("--emulate-avx2", action="store_true", help="also time every side in processes that see an AVX2-only CPU")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workdir", help="keep the artifacts here (default: a temporary folder)")
    parser.add_argument("--json", default="bench_compare.json", help="write all numbers here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [compare(name, batch, workdir, args) for name in args.models for batch in args.batch_sizes]
    host = host_summary()
    print(f"\nHost: {host['processor']}, ISA {host['isa']} (torch: {host['cpu_capability']}), {host['cpu_count']} cores, "
          f"torch {host['torch']}, onnxruntime {host['onnxruntime']}, openvino {host['openvino']}")
    print(f"{args.iterations} timed calls per side after {args.warmup} warm-up calls, interleaved in {args.rounds} rounds\n")
    for result in results:
        print(f"{result['model']}, batch {result['batch_size']} x {SEQUENCE_LENGTH}:")
        print("\n".join(markdown_table(result)) + "\n")
    Path(args.json).write_text(json.dumps({"host": host, "settings": vars(args), "results": results}, indent=2, default=str))
    print(f"All numbers: {args.json}")


if __name__ == "__main__":
    main()
