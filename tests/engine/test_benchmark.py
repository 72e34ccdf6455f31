"""neuron_export.benchmark: statistics on synthetic timings, and real runs on tiny TorchScript artifacts.

Budget: ~60 s on 2 quiet cores (two tiny exports, three in-process runs, one CLI run, three CLI errors).
"""

import json
import statistics
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from support import run_cli
from neuron_export import ExportOptions, export, read_manifest
from neuron_export import benchmark as bench
from neuron_export.benchmark import peers
from neuron_export.benchmark.peak import host_peak
from neuron_export.benchmark.report import speedups
from neuron_export.errors import NeuronExportError

ITERATIONS, WARMUP, ROUNDS = 6, 2, 3


def test_percentile_matches_numpy_on_synthetic_timings():
    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 100, 1001):
        values = list(rng.lognormal(mean=3.0, sigma=0.5, size=size))
        for q in (0, 1, 50, 90, 99, 100):
            assert bench.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        bench.percentile([], 50)
    with pytest.raises(ValueError):
        bench.percentile([1.0], 101)


def test_latency_stats_in_milliseconds():
    rng = np.random.default_rng(1)
    seconds = list(rng.uniform(0.01, 0.05, size=57))
    stats = bench.latency_stats(seconds)
    ms = [s * 1000 for s in seconds]
    assert stats.count == 57
    assert stats.mean_ms == pytest.approx(statistics.fmean(ms))
    assert stats.std_ms == pytest.approx(statistics.stdev(ms))
    assert (stats.min_ms, stats.max_ms) == pytest.approx((min(ms), max(ms)))
    for q, value in ((50, stats.p50_ms), (90, stats.p90_ms), (99, stats.p99_ms)):
        assert value == pytest.approx(float(np.percentile(ms, q)))
    assert bench.latency_stats([0.002]).std_ms == 0.0


def test_throughput_counts_samples_not_calls():
    seconds = [0.1, 0.3, 0.2, 0.4]  # 4 calls in 1 s
    assert bench.throughput(seconds, batch_size=1) == pytest.approx(4 / sum(seconds))
    assert bench.throughput(seconds, batch_size=8) == pytest.approx(32 / sum(seconds))


def _side(name, kind, p50_ms, status="ok"):
    result = bench.SideResult(name, kind, status=status)
    if status == "ok":
        result.stats = bench.latency_stats([p50_ms / 1000])
    return result


def test_speedups_are_p50_ratios_over_eager_and_onnxruntime():
    sides = {
        "compiled": _side("compiled", bench.COMPILED, 20.0),
        "eager": _side("eager", bench.EAGER, 50.0),
        "onnxruntime": _side("onnxruntime", bench.ONNXRUNTIME, 25.0),
    }
    ratios = speedups(sides)
    assert ratios == pytest.approx({"compiled_vs_eager": 50 / 20, "compiled_vs_onnxruntime": 25 / 20, "onnxruntime_vs_eager": 50 / 25})
    sides["onnxruntime"] = _side("onnxruntime", bench.ONNXRUNTIME, 0, status="not installed")
    assert set(speedups(sides)) == {"compiled_vs_eager"}
    assert bench.speedup(None, 3.0) is None


def test_batch_sizes_of_a_static_artifact_are_refused_with_one_line():
    manifest = SimpleNamespace(batch_size=2, dynamic_batch=False, inputs=[SimpleNamespace(name="input_ids", shape=[2, 16])])
    assert bench.resolve_batch_sizes(manifest, bench.BenchmarkOptions()) == [2]
    with pytest.raises(NeuronExportError, match="compiled for batch size 2 only"):
        bench.resolve_batch_sizes(manifest, bench.BenchmarkOptions(batch_sizes=[2, 4]))
    manifest.dynamic_batch = True
    assert bench.resolve_batch_sizes(manifest, bench.BenchmarkOptions(batch_sizes=[4, 1, 4])) == [1, 4]
    with pytest.raises(NeuronExportError, match="--iterations"):
        bench.BenchmarkOptions(iterations=0)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench") / "tiny-bert"
    export("demo:tiny-bert", folder, ExportOptions(backend="torchscript", sequence_length=16, use_cache=False))
    return folder


def tiny_bert_flops(config: dict, tokens: int) -> int:
    """2 x multiply-adds of BERT's linears, attention matmuls, pooler and classifier (batch 1)."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    linears = layers * (4 * hidden * hidden + 2 * hidden * config["intermediate_size"])
    return 2 * tokens * linears + layers * 4 * tokens * tokens * hidden + 2 * hidden * hidden + 2 * hidden * len(config["id2label"])


def test_real_run_times_every_side_on_the_same_inputs(tiny_artifact):
    manifest = read_manifest(tiny_artifact)
    events = []
    options = bench.BenchmarkOptions(iterations=ITERATIONS, warmup=WARMUP, rounds=ROUNDS, peers=list(peers.PEERS))
    report = bench.benchmark(tiny_artifact, options, on_event=events.append)

    (run,) = report["runs"]
    assert run["batch_size"] == 1 and set(run["sides"]) == {"compiled", "eager", *peers.PEERS}
    installed = {name for name in run["sides"] if name not in peers.PEERS or not peers.peer_missing(name)}
    assert {"compiled", "eager", "onnxruntime", "onnxruntime-int8"} <= installed
    compiled_shapes = {spec.name: spec.shape for spec in manifest.inputs}
    for name, side in run["sides"].items():
        if name not in installed:
            assert side["status"] == "not installed" and "pip install" in side["detail"]
            continue
        assert side["status"] == "ok", (name, side["detail"])
        assert len(side["latencies_ms"]) == ITERATIONS and all(ms > 0 for ms in side["latencies_ms"])
        # warm-up, one call for the accuracy check, one untimed call per round, the timed calls
        assert side["calls"] == WARMUP + 1 + ROUNDS + ITERATIONS, name
        assert side["input_shapes"] == compiled_shapes
        assert side["peak_rss_mb"] > 0 and side["throughput"] > 0
    assert run["same_inputs"]
    assert len({run["sides"][name]["input_digest"] for name in installed}) == 1
    # Outputs of random-weight models on other inputs would differ by far more than the export's atol:
    # the compiled model and the fp32 peers agree with transformers' eager model on these inputs; int8 does not quite.
    for name in installed - {"eager"}:
        assert run["sides"][name]["max_abs_diff"]["logits"] <= (1e-2 if name.endswith("int8") else 1e-4), name
    assert run["sides"]["onnxruntime-int8"]["max_abs_diff"]["logits"] > 1e-6
    assert run["speedups"]["compiled_vs_eager"] == pytest.approx(
        run["sides"]["eager"]["stats"]["p50_ms"] / run["sides"]["compiled"]["stats"]["p50_ms"]
    )
    assert report["model"]["backend"] == "torchscript" and report["model"]["optlevel"] == 2
    assert report["onnx_export_s"] > 0
    assert events[-1]["fraction"] == pytest.approx(1.0)

    history = bench.benchmark_history(tiny_artifact)
    assert report["saved_to"] in [entry["saved_to"] for entry in history]
    assert json.loads(open(report["saved_to"]).read())["runs"][0]["sides"]["compiled"]["calls"] == run["sides"]["compiled"]["calls"]
    check_efficiency(report, json.loads((tiny_artifact / "config.json").read_text()))


def check_efficiency(report, config):
    """FLOPs counted from the graph match BERT's analytic count; GFLOP/s and % of peak follow from them."""
    (run,) = report["runs"]
    assert run["flops"] == tiny_bert_flops(config, report["model"]["shapes"]["sequence_length"])
    peak = host_peak()
    for name, side in run["sides"].items():
        if side["status"] != "ok":
            continue
        assert side["gflops"] == pytest.approx(run["flops"] / side["stats"]["p50_ms"] * 1e-6)
        precision = "int8" if name.endswith("int8") else "fp32"
        assert side["precision"] == precision
        assert side["peak_percent"] == pytest.approx(100 * side["gflops"] / side["peak_gflops"])
        # each side's process measures the clock itself: the same peak within the measurement's noise
        assert side["peak_gflops"] == pytest.approx(peak.gflops(precision, side["threads"]), rel=0.1)
        assert side["threads"] == torch.get_num_threads() and side["cores_busy"] > 0
    assert report["host"]["isa"] == peak.isa and report["host"]["peak"]["clock_ghz"] > 0.5
    text = "\n".join(bench.format_report(report))
    assert f"ISA {peak.isa}" in text and "FLOPs per call: 0.00 GFLOP at batch 1" in text and "% peak" in text


def test_without_onnxruntime_and_openvino_the_peer_columns_say_not_installed(tiny_artifact, monkeypatch):
    real_find_spec = peers.importlib.util.find_spec
    absent = ("onnxruntime", "openvino")
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name, *a: None if name in absent else real_find_spec(name, *a))
    report = bench.benchmark(tiny_artifact, bench.BenchmarkOptions(iterations=2, warmup=0, rounds=1, save=False))
    sides = report["runs"][0]["sides"]
    assert sides["onnxruntime"]["status"] == "not installed" and "pip install onnx onnxruntime" in sides["onnxruntime"]["detail"]
    assert sides["openvino"]["status"] == "not installed" and "pip install openvino" in sides["openvino"]["detail"]
    assert sides["compiled"]["status"] == sides["eager"]["status"] == "ok"
    assert "saved_to" not in report
    text = bench.format_report(report)
    assert any(line.strip().startswith("ONNX Runtime       not installed") for line in text)
    assert any(line.strip().startswith("OpenVINO f32       not installed") for line in text)


def test_stable_diffusion_pipeline_is_timed_per_image_against_diffusers(tmp_path):
    artifact = tmp_path / "tiny-sd"
    export("demo:tiny-sd", artifact, ExportOptions(backend="torchscript", use_cache=False))
    report = bench.benchmark(artifact, bench.BenchmarkOptions(iterations=3, warmup=1, rounds=1, steps=2, save=False))
    (run,) = report["runs"]
    assert run["same_inputs"] and run["sides"]["onnxruntime"]["status"] == run["sides"]["openvino"]["status"] == "skipped"
    for name in ("compiled", "eager"):
        side = run["sides"][name]
        assert side["status"] == "ok" and len(side["latencies_ms"]) == 3 and side["calls"] == 1 + 1 + 1 + 3
        assert side["seconds_per_image"] == pytest.approx(side["stats"]["p50_ms"] / 1000)  # batch 1, one image per prompt
    # Same prompts, steps and latents: the compiled pipeline's images match diffusers' eager ones.
    assert run["sides"]["compiled"]["max_abs_diff"]["images"] <= 1e-3
    assert any("seconds per image" in line for line in bench.format_report(report))


def test_cli_benchmark_prints_the_table_and_writes_json(tiny_artifact, tmp_path):
    before = len(bench.benchmark_history(tiny_artifact))
    out = tmp_path / "results.json"
    result = run_cli("benchmark", str(tiny_artifact), "--iterations", "3", "--warmup", "1", "--rounds", "1", "--no-onnx",
                     "--json", str(out), "--events", str(tmp_path / "events.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "p50 ms" in result.stdout and "eager PyTorch" in result.stdout
    report = json.loads(out.read_text())
    assert report["runs"][0]["sides"]["onnxruntime"]["status"] == "skipped"
    assert len(report["runs"][0]["sides"]["compiled"]["latencies_ms"]) == 3
    assert len(bench.benchmark_history(tiny_artifact)) == before + 1
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["results"] == report["saved_to"]


def test_cli_benchmark_errors_are_one_line(tiny_artifact, tmp_path):
    component = tmp_path / "sd" / "unet"
    component.mkdir(parents=True)
    # A Stable Diffusion component's manifest: a complete one, of the diffusers library.
    manifest = {**json.loads((tiny_artifact / "manifest.json").read_text()), "library": "diffusers", "task": "stable-diffusion"}
    (component / "manifest.json").write_text(json.dumps(manifest))
    for args, expected in (((str(tmp_path),), "not a compiled artifact"),
                           ((str(component),), "benchmark the pipeline folder"),
                           ((str(tiny_artifact), "--batch_size", "3"), "compiled for batch size 1 only")):
        result = run_cli("benchmark", *args)
        assert result.returncode == 2
        assert result.stderr.strip().startswith("error:") and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_clip_is_timed_at_its_compiled_text_and_image_batches(tmp_path):
    # Two batch axes (texts, images): neither is the batch_size the benchmark varies.
    artifact = tmp_path / "tiny-clip"
    export("demo:tiny-clip", artifact, ExportOptions(backend="torchscript", text_batch_size=3, sequence_length=16, use_cache=False))
    report = bench.benchmark(artifact, bench.BenchmarkOptions(iterations=2, warmup=0, rounds=1, onnx=False, save=False))
    compiled_shapes = {spec.name: spec.shape for spec in read_manifest(artifact).inputs}
    assert compiled_shapes["pixel_values"][0] == 1 and compiled_shapes["input_ids"][0] == 3
    (run,) = report["runs"]
    for name in ("compiled", "eager"):
        assert run["sides"][name]["status"] == "ok", run["sides"][name]["detail"]
        assert run["sides"][name]["input_shapes"] == compiled_shapes
    assert max(run["sides"]["compiled"]["max_abs_diff"].values()) <= 1e-4
