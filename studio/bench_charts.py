"""Plotly figures and tables of benchmark reports (neuron_export.benchmark's JSON), as pure functions.

Every function takes reports (dicts as stored in ARTIFACT/benchmarks/*.json) and returns a figure or
rows; nothing here runs a model or touches Streamlit, so the page stays thin and this is unit-tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import plotly.graph_objects as go

from neuron_export.benchmark import COMPILED, EAGER, ONNXRUNTIME, ONNXRUNTIME_INT8, OPENVINO, OPENVINO_INT8, SIDE_LABELS

SIDE_COLORS = {COMPILED: "#1f77b4", EAGER: "#7f7f7f", ONNXRUNTIME: "#ff7f0e", OPENVINO: "#2ca02c",
               ONNXRUNTIME_INT8: "#ffbb78", OPENVINO_INT8: "#98df8a"}
Report = dict[str, Any]
SPEEDUP_HEADROOM = 1.2  # the speed-up axis ends 20% above the highest bar: room for its label


def report_label(report: Report) -> str:
    """Artifact folder name and the choices that trade compile time for speed: 'bert (inductor -O3, bf16 matmul)'."""
    model = report["model"]
    choices = f"{model['backend']} -O{model['optlevel']}"
    if model.get("auto_cast") not in (None, "none"):
        choices += f", {model['auto_cast_type']} {model['auto_cast']}"
    return f"{Path(report['artifact']).name} ({choices})"


def side_label(name: str) -> str:
    return SIDE_LABELS.get(name, name)


def run_for(report: Report, batch_size: Optional[int] = None) -> Optional[dict[str, Any]]:
    """The report's run at `batch_size` (default: its first, the smallest), or None."""
    runs = report.get("runs", [])
    if batch_size is None:
        return runs[0] if runs else None
    return next((run for run in runs if run["batch_size"] == batch_size), None)


def ok_sides(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: side for name, side in run["sides"].items() if side["status"] == "ok" and side.get("stats")}


def latency_figure(reports: list[Report], batch_size: Optional[int] = None, violin: bool = False) -> go.Figure:
    """Distribution of the timed calls: one box (or violin) per side, grouped by artifact."""
    traces: dict[str, dict[str, list]] = {}
    for report in reports:
        run = run_for(report, batch_size)
        if run is None:
            continue
        for name, side in ok_sides(run).items():
            trace = traces.setdefault(name, {"x": [], "y": []})
            trace["x"] += [report_label(report)] * len(side["latencies_ms"])
            trace["y"] += side["latencies_ms"]
    figure = go.Figure()
    for name, data in traces.items():
        common = {"x": data["x"], "y": data["y"], "name": side_label(name), "marker_color": SIDE_COLORS.get(name)}
        figure.add_trace(go.Violin(**common, box_visible=True, points=False) if violin else go.Box(**common, boxpoints="outliers"))
    where = f"batch size {batch_size}" if batch_size else "smallest batch size"
    figure.update_layout(
        title=f"Latency per call ({where})", yaxis_title="latency (ms)", boxmode="group", violinmode="group",
        legend_title="side",
    )
    return figure


def throughput_figure(reports: list[Report]) -> go.Figure:
    """Inferences per second by batch size: one line per artifact and side."""
    figure = go.Figure()
    for report in reports:
        by_side: dict[str, tuple[list, list]] = {}
        for run in report.get("runs", []):
            for name, side in ok_sides(run).items():
                sizes, values = by_side.setdefault(name, ([], []))
                sizes.append(run["batch_size"])
                values.append(side["throughput"])
        for name, (sizes, values) in by_side.items():
            figure.add_trace(go.Scatter(
                x=sizes, y=values, mode="lines+markers", name=f"{report_label(report)} · {side_label(name)}",
                line={"dash": "solid" if name == COMPILED else "dot"},
            ))
    figure.update_layout(title="Throughput by batch size", xaxis_title="batch size", yaxis_title="inferences / s",
                         xaxis={"type": "category"})
    return figure


def speedup_figure(reports: list[Report], batch_size: Optional[int] = None) -> go.Figure:
    """Median-latency speed-up of each compiled artifact over eager PyTorch and over ONNX Runtime (1 = as fast)."""
    labels, over_eager, over_onnx = [], [], []
    for report in reports:
        run = run_for(report, batch_size)
        if run is None:
            continue
        labels.append(report_label(report))
        over_eager.append(run["speedups"].get(f"{COMPILED}_vs_{EAGER}"))
        over_onnx.append(run["speedups"].get(f"{COMPILED}_vs_{ONNXRUNTIME}"))
    figure = go.Figure([
        go.Bar(x=labels, y=over_eager, name=f"over {SIDE_LABELS[EAGER]}", marker_color=SIDE_COLORS[EAGER],
               text=[_times(v) for v in over_eager], textposition="outside"),
        go.Bar(x=labels, y=over_onnx, name=f"over {SIDE_LABELS[ONNXRUNTIME]}", marker_color=SIDE_COLORS[ONNXRUNTIME],
               text=[_times(v) for v in over_onnx], textposition="outside"),
    ])
    # The "as fast" label sits right of the plot, where no bar or bar label can cover it; the bar labels
    # are drawn above the bars and the y axis leaves room for them, so a 0.96x next to the line shows whole.
    figure.add_hline(y=1.0, line_dash="dash", annotation_text="1x: as fast", annotation_position="right")
    highest = max([value for value in over_eager + over_onnx if value is not None] + [1.0])
    figure.update_traces(cliponaxis=False)
    figure.update_layout(title="Speed-up of the compiled artifact (p50 latency ratio)", yaxis_title="times faster",
                         barmode="group", yaxis_range=[0, highest * SPEEDUP_HEADROOM], margin={"r": 90},
                         legend={"orientation": "h", "yanchor": "top", "y": -0.15})
    return figure


def efficiency_figure(reports: list[Report], batch_size: Optional[int] = None) -> go.Figure:
    """Achieved share of the host's peak FLOP/s per side (GFLOP/s on the bars), grouped by artifact."""
    figure = go.Figure()
    by_side: dict[str, tuple[list, list, list, list]] = {}
    for report in reports:
        run = run_for(report, batch_size)
        if run is None:
            continue
        for name, side in ok_sides(run).items():
            if side.get("peak_percent") is None:
                continue
            labels, percents, texts, hovers = by_side.setdefault(name, ([], [], [], []))
            labels.append(report_label(report))
            percents.append(side["peak_percent"])
            texts.append(f"{side['gflops']:.0f} GFLOP/s")
            per_cpu = side.get("cpu_peak_percent")
            hovers.append(peak_assumptions(report, side) + ("" if per_cpu is None else
                          f"<br>per second of CPU time it got: {per_cpu:.0f}% of one core's peak"))
    for name, (labels, percents, texts, hovers) in by_side.items():
        figure.add_trace(go.Bar(x=labels, y=percents, name=side_label(name), marker_color=SIDE_COLORS.get(name),
                                text=texts, textposition="outside", hovertext=hovers, hoverinfo="text+y"))
    where = f"batch size {batch_size}" if batch_size else "smallest batch size"
    figure.update_layout(title=f"Efficiency: % of this CPU's peak FLOP/s for each side's precision ({where})",
                         yaxis_title="% of peak", barmode="group", legend_title="side")
    return figure


def peak_assumptions(report: Report, side: dict[str, Any]) -> str:
    """How the side's peak was computed: cores x clock x FLOP/cycle, and why that many FLOP/cycle."""
    peak = report["host"].get("peak")
    if not peak:
        return ""
    precision, cores = side.get("precision", "fp32"), min(side.get("threads") or 1, peak["cores"])
    return (f"{precision} peak = {cores} core(s) x {peak['clock_ghz']:.2f} GHz ({peak['clock_source']}) x "
            f"{peak['flop_per_cycle'][precision]} FLOP/cycle ({peak['why'][precision]})")


def history_figure(reports: list[Report], batch_size: Optional[int] = None) -> go.Figure:
    """Median latency of each side across the stored runs of one artifact, oldest first."""
    ordered = sorted(reports, key=lambda r: r["created"])
    figure = go.Figure()
    series: dict[str, tuple[list, list]] = {}
    for report in ordered:
        run = run_for(report, batch_size)
        if run is None:
            continue
        for name, side in ok_sides(run).items():
            times, values = series.setdefault(name, ([], []))
            times.append(run_time(report["created"]))
            values.append(side["stats"]["p50_ms"])
    for name, (times, values) in series.items():
        figure.add_trace(go.Scatter(x=times, y=values, mode="lines+markers", name=side_label(name),
                                    marker_color=SIDE_COLORS.get(name)))
    # One label per run, not a time axis: a time axis around a single run zooms to sub-millisecond ticks.
    figure.update_layout(title="History: median latency of earlier runs", xaxis_title="run (UTC)",
                         yaxis_title="p50 latency (ms)", xaxis={"type": "category"})
    return figure


def run_time(created: str) -> str:
    """'2026-11-29T22:33:09.123+00:00' -> '2026-11-29 22:33:09': when the run was made, to the second."""
    return created[:19].replace("T", " ")


def tradeoff_figure(reports: list[Report], batch_size: Optional[int] = None) -> go.Figure:
    """Compile time against median latency, one point per artifact: the -O level / auto-cast trade-off."""
    xs, ys, labels = [], [], []
    for report in reports:
        run = run_for(report, batch_size)
        compiled = ok_sides(run).get(COMPILED) if run else None
        if compiled is None:
            continue
        xs.append(report["model"].get("compile_s"))
        ys.append(compiled["stats"]["p50_ms"])
        labels.append(report_label(report))
    figure = go.Figure(go.Scatter(x=xs, y=ys, text=labels, mode="markers+text", textposition="top center",
                                  marker={"size": 12, "color": SIDE_COLORS[COMPILED]}))
    figure.update_layout(title="Compile time vs latency per option", xaxis_title="compile time (s)",
                         yaxis_title="p50 latency (ms)")
    return figure


def summary_rows(reports: list[Report]) -> list[dict[str, Any]]:
    """One row per artifact, batch size and side: the numbers of the CLI's table."""
    rows = []
    for report in reports:
        for run in report.get("runs", []):
            for name, side in run["sides"].items():
                row = {"artifact": report_label(report), "batch size": run["batch_size"], "side": side_label(name),
                       "status": side["status"] if side["status"] == "ok" else f"{side['status']}: {side['detail']}"}
                if side["status"] == "ok" and side.get("stats"):
                    stats = side["stats"]
                    row.update({
                        "p50 ms": round(stats["p50_ms"], 3), "p90 ms": round(stats["p90_ms"], 3),
                        "p99 ms": round(stats["p99_ms"], 3), "inferences/s": round(side["throughput"], 2),
                        "peak RSS MB": round(side["peak_rss_mb"]), "model RSS MB": round(side["rss_growth_mb"]),
                        "speed-up vs eager": _round(run["speedups"].get(f"{name}_vs_{EAGER}")),
                        "GFLOP/s": _round(side.get("gflops")), "% of peak": _round(side.get("peak_percent")),
                        "% of a core's peak per CPU-s": _round(side.get("cpu_peak_percent")),
                        "precision": side.get("precision"), "threads": side.get("threads"),
                        "busy cores": _round(side.get("cores_busy")),
                    })
                    row.update(pipeline_columns(side))
                rows.append(row)
    return rows


def pipeline_columns(side: dict[str, Any]) -> dict[str, Any]:
    """A Stable Diffusion side's class, seconds per image, per denoising step and in each component (one call's breakdown)."""
    found = side.get("pipeline")
    if not found:
        return {}
    columns = {"pipeline": found["class_name"], "s/image": round(side["seconds_per_image"], 3),
               "ms per step": _round(found["step_s"] * 1000) if found.get("step_s") else None}
    columns.update({f"{component} s/image": round(seconds, 4) for component, seconds in found["component_s"].items()})
    return columns


def _times(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}x"


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)
