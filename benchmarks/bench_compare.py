"""CPU target run: export time and latency per backend and option, against eager PyTorch and ONNX Runtime.

For a bert-base-sized model (BertConfig defaults, random weights built here) and the real MiniLM
(demo:minilm), batch 1, sequence length 128:
1. export with every variant below through the real CLI (`--no-cache`, a fresh Inductor cache each),
   timing the whole command and reading the compile stages from the manifest;
2. time eager PyTorch, ONNX Runtime and every artifact in ONE interleaved run per thread count
   (neuron_export.benchmark.run_sides: each side in its own process, same inputs, rotating rounds);
3. print the README table "compile time vs latency per option" and write everything as JSON.

    python benchmarks/bench_compare.py                       # both models, 1 and 2 threads (~20 min on 2 cores)
    python benchmarks/bench_compare.py --models minilm --threads 2 --iterations 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuron_export.artifact import read_manifest, read_validation  # noqa: E402
from neuron_export.benchmark import COMPILED, EAGER, ONNXRUNTIME, BenchmarkOptions, Side, run_sides  # noqa: E402
from neuron_export.benchmark.inputs import benchmark_inputs  # noqa: E402
from neuron_export.benchmark.peers import export_onnx_isolated, onnxruntime_missing  # noqa: E402
from neuron_export.benchmark.report import host_summary, speedups  # noqa: E402
from neuron_export.progress import Progress  # noqa: E402

SEQUENCE_LENGTH = 128
MODELS = {"bert-base": "feature-extraction", "minilm": "feature-extraction"}


@dataclass(frozen=True)
class Variant:
    backend: str
    optlevel: int
    auto_cast: str = "none"

    @property
    def name(self) -> str:
        cast = f" bf16 {self.auto_cast}" if self.auto_cast != "none" else ""
        return f"{self.backend} -O{self.optlevel}{cast}"

    @property
    def folder(self) -> str:
        return self.name.replace(" ", "_")

    def cli_args(self) -> list[str]:
        args = ["--backend", self.backend, f"-O{self.optlevel}"]
        if self.auto_cast != "none":
            args += ["--auto_cast", self.auto_cast, "--auto_cast_type", "bf16"]
        return args


VARIANTS = (
    Variant("torchscript", 1),
    Variant("torchscript", 2),
    Variant("inductor", 1),
    Variant("inductor", 2),
    Variant("inductor", 3),
    Variant("inductor", 2, "matmul"),
)


def build_bert_base(folder: Path) -> Path:
    """bert-base-uncased's architecture (BertConfig defaults: 12 layers, hidden 768, 110M params), random weights."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(folder)
    return folder


def export_variant(model: str, task: str, variant: Variant, output: Path) -> dict[str, Any]:
    """Export through the real CLI with a fresh Inductor cache (no cached compile can shorten it)."""
    with tempfile.TemporaryDirectory(prefix="bench-inductor-cache-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "neuron_export", "export", "--model", model, "--task", task,
                "--sequence_length", str(SEQUENCE_LENGTH), "--batch_size", "1", *variant.cli_args(), "--no-cache", "--force", str(output)]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"variant": variant.name, "error": (done.stderr.strip().splitlines() or ["?"])[-1], "export_s": wall}
    manifest = read_manifest(output)
    timings = manifest.timings
    validation = read_validation(output) or {}
    return {
        "variant": variant.name,
        "artifact": str(output),
        "export_s": wall,
        "compile_s": sum(v for k, v in timings.items() if k.endswith(("tracing", "compiling"))),
        "validation_max_abs_diff": max((o["max_abs_diff"] or 0.0) for o in validation.get("outputs", [])) if validation else None,
        "validation_atol": validation.get("atol"),
        "artifact_mb": sum(p.stat().st_size for p in output.rglob("*") if p.is_file()) / 1e6,
    }


def log_event(event: dict[str, Any]) -> None:
    if event.get("type") == "stage" and event.get("index") and "round" not in event.get("message", ""):
        print(f"    {event['message']}", flush=True)


def compare_model(name: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    task = MODELS[name]
    model = str(build_bert_base(workdir / "bert-base-model")) if name == "bert-base" else "demo:minilm"
    print(f"\n== {name} ({model}), {task}, batch 1, sequence length {SEQUENCE_LENGTH}", flush=True)
    exports = []
    for variant in VARIANTS:
        print(f"  exporting {variant.name} ...", flush=True)
        result = export_variant(model, task, variant, workdir / f"{name}-{variant.folder}")
        print(f"    {result['error']}" if "error" in result else f"    {result['export_s']:.1f} s", flush=True)
        exports.append(result)
    built = [e for e in exports if "error" not in e]
    if not built:
        raise SystemExit(f"no {name} variant could be exported")
    reference = Path(built[0]["artifact"])
    manifest = read_manifest(reference)
    sides = [Side(EAGER, EAGER, str(reference))] + [Side(e["variant"], COMPILED, e["artifact"]) for e in built]
    onnx = {"variant": ONNXRUNTIME}
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as folder:
        missing = onnxruntime_missing()
        if missing:
            onnx["error"] = missing
        else:
            print("  exporting to ONNX ...", flush=True)
            path, error, onnx["export_s"] = export_onnx_isolated(reference, Path(folder))
            if error:
                onnx["error"] = error
            else:
                sides.append(Side(ONNXRUNTIME, ONNXRUNTIME, str(path)))
        timings = {}
        for threads in args.threads:
            print(f"  timing {len(sides)} sides, {threads} thread(s) each ...", flush=True)
            options = BenchmarkOptions(iterations=args.iterations, warmup=args.warmup, threads=threads, rounds=args.rounds, save=False)
            by_side = run_sides(sides, lambda b: benchmark_inputs(manifest, reference, b, 0), [1], options, Progress(log_event, 2))[1]
            timings[threads] = {"sides": {k: asdict(v) for k, v in by_side.items()}, "speedups": speedups(by_side)}
    return {"model": name, "source": model, "task": task, "exports": exports + [onnx], "timings": timings}


def markdown_table(result: dict[str, Any], threads: list[int]) -> list[str]:
    head = "| model | backend / option | export (s) | compile (s) | " + " | ".join(
        f"p50 ms ({t} thr) | vs eager | vs ORT" for t in threads) + " | max diff vs eager |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    rows = [{"variant": EAGER}] + result["exports"]
    for row in rows:
        name = row["variant"]
        label = {EAGER: "eager PyTorch", ONNXRUNTIME: "ONNX Runtime"}.get(name, name)
        if "error" in row:
            lines.append(f"| {result['model']} | {label} | failed: {row['error']} |" + " |" * (3 * len(threads) + 2))
            continue
        cells = [result["model"], label, _num(row.get("export_s"), 0), _num(row.get("compile_s"), 1)]
        diff = None
        for t in threads:
            timing = result["timings"][t]
            side = timing["sides"].get(name)
            if side is None or side["status"] != "ok":
                cells += [side["status"] if side else "", "", ""]
                continue
            cells.append(_num(side["stats"]["p50_ms"], 1))
            cells.append("1.00x" if name == EAGER else _times(timing["speedups"].get(f"{name}_vs_{EAGER}")))
            cells.append(_times(timing["speedups"].get(f"{name}_vs_{ONNXRUNTIME}")) if name not in (EAGER, ONNXRUNTIME) else "")
            diff = max(side["max_abs_diff"].values()) if side["max_abs_diff"] else diff
        cells.append("" if diff is None else f"{diff:.1e}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _num(value: Optional[float], digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _times(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="intra-op threads per side (one interleaved run each)")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workdir", help="keep the artifacts here (default: a temporary folder)")
    parser.add_argument("--json", default="bench_compare.json", help="write all numbers here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [compare_model(name, workdir, args) for name in args.models]
    host = host_summary()
    print(f"\nHost: {host['processor']}, {host['cpu_count']} cores, torch {host['torch']}, onnxruntime {host['onnxruntime']}")
    print(f"{args.iterations} timed calls per side after {args.warmup} warm-up calls, interleaved in {args.rounds} rounds\n")
    for result in results:
        print("\n".join(markdown_table(result, args.threads)) + "\n")
    Path(args.json).write_text(json.dumps({"host": host, "settings": vars(args), "results": results}, indent=2, default=str))
    print(f"All numbers: {args.json}")


if __name__ == "__main__":
    main()
