"""studio.bench_charts: figures and rows built from synthetic benchmark reports. Budget: < 2 s."""

import dataclasses

import numpy as np
import pytest

from neuron_export import ExportOptions, Manifest
from neuron_export.artifact import TensorSpec
from neuron_export.benchmark import BenchmarkOptions, SideResult, latency_stats, make_report, throughput
from studio import bench_charts

MANIFEST = Manifest(
    source="demo:tiny-bert", library="transformers", task="text-classification", model_type="bert", backend="inductor",
    backend_reason="chosen with --backend", is_neuron=False, device="cpu", target=None, runs_on="x86_64 CPUs",
    torch_version="2.13.0", compiler="torch.export + AOTInductor", options=ExportOptions(backend="inductor", optlevel=3),
    optlevel=3, auto_cast="none", auto_cast_type=None, dynamic_batch=True,
    shapes={"batch_size": 1, "sequence_length": 16},
    inputs=[TensorSpec("input_ids", [1, 16], "int64", ["batch_size", "sequence_length"])],
    timings={"loading": 1.0, "text-classification.tracing": 2.0, "text-classification.compiling": 30.0},
)


def synthetic_report(name, latencies_by_batch, optlevel=3, created="2026-11-01T10:00:00+00:00", onnx_missing=False):
    """A report as neuron_export.benchmark writes it, from made-up latencies (ms) per batch size and side."""
    results = {}
    for batch_size, by_side in latencies_by_batch.items():
        sides = {}
        for side, latencies in by_side.items():
            result = SideResult(side, side, latencies_ms=list(latencies), calls=len(latencies), peak_rss_mb=500.0,
                                rss_growth_mb=100.0, input_digest="same")
            result.stats = latency_stats([ms / 1000 for ms in latencies])
            result.throughput = throughput([ms / 1000 for ms in latencies], batch_size)
            sides[side] = result
        if onnx_missing:
            sides["onnxruntime"] = SideResult("onnxruntime", "onnxruntime", status="not installed", detail="pip install onnxruntime")
        results[batch_size] = sides
    report = make_report(f"/artifacts/{name}", dataclasses.replace(MANIFEST, optlevel=optlevel), BenchmarkOptions(), results, 3.0)
    report["created"] = created
    return report


@pytest.fixture
def reports():
    rng = np.random.default_rng(0)
    fast = {b: {"compiled": rng.normal(10 * b, 1, 30), "eager": rng.normal(30 * b, 2, 30), "onnxruntime": rng.normal(12 * b, 1, 30)}
            for b in (1, 4)}
    slow = {1: {"compiled": rng.normal(20, 1, 30), "eager": rng.normal(30, 2, 30)}}
    return [synthetic_report("bert-o3", fast), synthetic_report("bert-o1", slow, optlevel=1, onnx_missing=True)]


def test_labels_show_the_trade_off_choices(reports):
    assert bench_charts.report_label(reports[0]) == "bert-o3 (inductor -O3)"
    cast = synthetic_report("x", {1: {"compiled": [1.0]}})
    cast["model"].update(auto_cast="matmul", auto_cast_type="bf16")
    assert bench_charts.report_label(cast) == "x (inductor -O3, bf16 matmul)"


def test_latency_figure_holds_every_timed_call_grouped_by_side(reports):
    figure = bench_charts.latency_figure(reports, batch_size=1)
    by_name = {trace.name: trace for trace in figure.data}
    assert set(by_name) == {"compiled", "eager PyTorch", "ONNX Runtime"}
    compiled = by_name["compiled"]
    expected = reports[0]["runs"][0]["sides"]["compiled"]["latencies_ms"] + reports[1]["runs"][0]["sides"]["compiled"]["latencies_ms"]
    assert list(compiled.y) == expected
    assert set(compiled.x) == {"bert-o3 (inductor -O3)", "bert-o1 (inductor -O1)"}
    assert len(by_name["ONNX Runtime"].y) == 30  # the second report has no ONNX Runtime numbers
    violin = bench_charts.latency_figure(reports, violin=True)
    assert {trace.type for trace in violin.data} == {"violin"}


def test_throughput_figure_plots_each_batch_size(reports):
    figure = bench_charts.throughput_figure(reports)
    trace = next(t for t in figure.data if t.name == "bert-o3 (inductor -O3) · compiled")
    assert list(trace.x) == [1, 4]
    for batch_size, value in zip(trace.x, trace.y):
        latencies = np.array(reports[0]["runs"][[1, 4].index(batch_size)]["sides"]["compiled"]["latencies_ms"]) / 1000
        assert value == pytest.approx(batch_size * len(latencies) / latencies.sum())


def test_speedup_figure_is_the_ratio_of_medians(reports):
    figure = bench_charts.speedup_figure(reports)
    over_eager, over_onnx = figure.data
    for index, report in enumerate(reports):
        sides = report["runs"][0]["sides"]
        expected = np.median(sides["eager"]["latencies_ms"]) / np.median(sides["compiled"]["latencies_ms"])
        assert over_eager.y[index] == pytest.approx(expected)
    assert over_onnx.y[0] == pytest.approx(np.median(reports[0]["runs"][0]["sides"]["onnxruntime"]["latencies_ms"])
                                           / np.median(reports[0]["runs"][0]["sides"]["compiled"]["latencies_ms"]))
    assert over_onnx.y[1] is None  # not installed: no bar, not a zero


def test_history_figure_orders_runs_by_time():
    runs = [synthetic_report("a", {1: {"compiled": [float(ms)], "eager": [50.0]}}, created=created)
            for ms, created in ((9, "2026-11-03T00:00:00+00:00"), (11, "2026-11-01T00:00:00+00:00"), (10, "2026-11-02T00:00:00+00:00"))]
    figure = bench_charts.history_figure(runs)
    compiled = next(t for t in figure.data if t.name == "compiled")
    assert list(compiled.x) == ["2026-11-01 00:00:00", "2026-11-02 00:00:00", "2026-11-03 00:00:00"]
    assert list(compiled.y) == [11.0, 10.0, 9.0]


def test_history_of_a_single_run_has_one_run_label_not_a_time_scale():
    run = synthetic_report("a", {1: {"compiled": [9.0], "eager": [50.0]}}, created="2026-11-29T22:33:09.52+00:00")
    figure = bench_charts.history_figure([run])
    assert figure.layout.xaxis.type == "category"  # a date axis around one point zooms to sub-millisecond ticks
    assert [list(trace.x) for trace in figure.data] == [["2026-11-29 22:33:09"]] * 2


def test_speedup_labels_fit_and_do_not_cover_the_as_fast_line():
    # 0.96x: the bar ends just under the 1x line, where the old label sat over it.
    report = synthetic_report("a", {1: {"compiled": [50.0], "eager": [48.0]}})
    figure = bench_charts.speedup_figure([report])
    (line_label,) = figure.layout.annotations
    assert line_label.text == "1x: as fast" and line_label.x >= 1 and line_label.xanchor == "left"  # right of the plot
    over_eager = figure.data[0]
    assert list(over_eager.text) == ["0.96x"] and over_eager.cliponaxis is False
    assert figure.layout.yaxis.range[1] >= 0.96 * bench_charts.SPEEDUP_HEADROOM
    assert figure.layout.margin.r >= 60 and figure.layout.legend.orientation == "h"  # the legend is not in its way


def test_tradeoff_figure_pairs_compile_time_with_latency(reports):
    (trace,) = bench_charts.tradeoff_figure(reports).data
    assert list(trace.x) == [32.0, 32.0]  # tracing + compiling from the manifest's timings
    assert list(trace.y) == [pytest.approx(np.median(r["runs"][0]["sides"]["compiled"]["latencies_ms"])) for r in reports]


def test_summary_rows_cover_every_side_and_say_why_one_is_missing(reports):
    rows = bench_charts.summary_rows(reports)
    assert len(rows) == 3 * 2 + 3  # two batch sizes x three sides, then one batch size x three sides
    missing = next(r for r in rows if r["artifact"].startswith("bert-o1") and r["side"] == "ONNX Runtime")
    assert missing["status"].startswith("not installed") and "p50 ms" not in missing
    compiled = next(r for r in rows if r["artifact"].startswith("bert-o3") and r["side"] == "compiled" and r["batch size"] == 4)
    assert compiled["p50 ms"] == pytest.approx(np.median(reports[0]["runs"][1]["sides"]["compiled"]["latencies_ms"]), abs=1e-3)


def test_efficiency_figure_shows_each_sides_share_of_peak_and_its_assumptions(reports):
    run = reports[0]["runs"][0]
    for name, (gflops, percent) in {"compiled": (95.0, 40.2), "eager": (70.0, 29.6)}.items():
        run["sides"][name].update(gflops=gflops, peak_percent=percent, threads=1)
    figure = bench_charts.efficiency_figure(reports, batch_size=1)
    bars = {trace.name: trace for trace in figure.data}
    assert set(bars) == {"compiled", "eager PyTorch"}  # ONNX Runtime has no efficiency figures here: no bar
    assert list(bars["compiled"].y) == [40.2] and list(bars["compiled"].text) == ["95 GFLOP/s"]
    peak = reports[0]["host"]["peak"]
    assert list(bars["eager PyTorch"].hovertext) == [
        f"fp32 peak = 1 core(s) x {peak['clock_ghz']:.2f} GHz ({peak['clock_source']}) x {peak['flop_per_cycle']['fp32']} "
        f"FLOP/cycle ({peak['why']['fp32']})"]
    rows = [row for row in bench_charts.summary_rows(reports[:1]) if row["batch size"] == 1 and row["side"] == "compiled"]
    assert rows[0]["GFLOP/s"] == 95.0 and rows[0]["% of peak"] == 40.2 and rows[0]["threads"] == 1
