"""Plotly figures (and the tables beside them) for the Validation report, Playground, Artifacts and System pages.

Pure functions of plain data (validation.json reports, scores, matrices): nothing here runs a model
or touches Streamlit, so the pages stay thin and these are unit-tested.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import plotly.graph_objects as go

from studio.jobs.timeline import component_name, fmt_duration

# A log axis has no 0: exact-zero differences are drawn at this floor, and the hover says so.
ZERO_FLOOR = 1e-12
PASS_COLOR = "#2e7d32"
FAIL_COLOR = "#c62828"
ATOL_COLOR = "#ff9900"
MEAN_COLOR = "#37474f"
OUTPUT_COLORS = ("#1f77b4", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f")
Report = dict[str, Any]


def _layout(figure: go.Figure, title: str, height: int = 360) -> go.Figure:
    figure.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 50, "b": 10}, template="plotly_white")
    return figure


def shape_text(shape: Optional[Sequence[int]]) -> str:
    """(1, 16, 32) -> '1 × 16 × 32'; a scalar is '()'."""
    if shape is None:
        return "—"
    return " × ".join(str(size) for size in shape) if len(shape) else "()"


def mark(ok: Optional[bool]) -> str:
    return "✓" if ok else "✗"


# ---- validation report ------------------------------------------------------------------------


def output_rows(report: Report) -> list[dict[str, Any]]:
    """One table row per output: shapes, shape ✓/✗, max and mean abs diff, atol, ✓/✗."""
    return [
        {
            "Output": output["name"],
            "Reference shape": shape_text(output["reference_shape"]),
            "Compiled shape": shape_text(output["compiled_shape"]),
            "Shape": mark(output["shape_match"]),
            "Max abs diff": output["max_abs_diff"],
            "Mean abs diff": output["mean_abs_diff"],
            "atol": output["atol"],
            "Within atol": mark(output.get("values_close")),
        }
        for output in report["outputs"]
    ]


def run_rows(report: Report) -> list[dict[str, str]]:
    """One row per validation run: the shape of each input it fed."""
    return [{"Run": str(index), **{name: shape_text(shape) for name, shape in run.items()}}
            for index, run in enumerate(report.get("runs", []), start=1)]


def _sci(value: float) -> str:
    return f"{value:.3g}" if value else "0"


def max_diff_figure(report: Report) -> go.Figure:
    """Max abs diff per output as bars on a log axis, mean abs diff as markers, and the atol line."""
    atol = report["atol"]
    names, heights, colors, hovers, means, mean_hovers = [], [], [], [], [], []
    uncompared = []
    for output in report["outputs"]:
        names.append(output["name"])
        diff, mean = output["max_abs_diff"], output["mean_abs_diff"]
        if diff is None:
            uncompared.append(output["name"])
            heights.append(None)
            means.append(None)
            hovers.append("not compared (shape mismatch)")
            mean_hovers.append("")
            colors.append(FAIL_COLOR)
            continue
        heights.append(max(diff, ZERO_FLOOR))
        colors.append(PASS_COLOR if output.get("values_close") else FAIL_COLOR)
        hovers.append(f"max abs diff {_sci(diff)}" + (f" (exactly 0: drawn at {ZERO_FLOOR:g}, a log axis has no 0)" if diff < ZERO_FLOOR else "")
                      + f"<br>atol {atol:g}")
        means.append(max(mean, ZERO_FLOOR))
        mean_hovers.append(f"mean abs diff {_sci(mean)}" + (f" (drawn at {ZERO_FLOOR:g})" if mean < ZERO_FLOOR else ""))
    figure = go.Figure()
    figure.add_trace(go.Bar(x=names, y=heights, name="max abs diff", marker_color=colors,
                            hovertext=hovers, hoverinfo="x+text"))
    figure.add_trace(go.Scatter(x=names, y=means, name="mean abs diff", mode="markers",
                                marker={"color": MEAN_COLOR, "symbol": "diamond", "size": 10},
                                hovertext=mean_hovers, hoverinfo="x+text"))
    figure.add_hline(y=atol, line_dash="dash", line_color=ATOL_COLOR)
    # Annotations on a log axis take log10 coordinates (add_hline's own annotation would land off-chart).
    figure.add_annotation(x=1, xref="paper", y=math.log10(atol), text=f"atol {atol:g}", showarrow=False,
                          xanchor="right", yanchor="bottom", font={"color": ATOL_COLOR})
    for name in uncompared:
        figure.add_annotation(x=name, y=math.log10(atol), text="shape mismatch:<br>not compared", showarrow=False,
                              font={"color": FAIL_COLOR})
    shown = [h for h in heights + means if h is not None] + [atol]
    low, high = math.floor(math.log10(min(shown))) - 1, math.ceil(math.log10(max(shown))) + 1
    figure.update_yaxes(type="log", range=[low, high], title="absolute difference", exponentformat="power")
    figure.update_xaxes(title="output")
    figure.update_layout(legend={"orientation": "h", "y": -0.25})
    return _layout(figure, "Largest difference per output vs atol")


def _decade(value: float) -> str:
    """1e-09 -> '1e-9', 0.01 -> '0.01', 100 -> '100': short labels for powers of ten."""
    return f"1e{round(math.log10(value))}" if value < 1e-3 else f"{value:g}"


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Decade bins [edges[i], edges[i+1]) as labels: '< 1e-12', '1e-12 – 1e-11', ..., '≥ 100'."""
    labels = []
    for low, high in zip(edges[:-1], edges[1:]):
        if low == 0:
            labels.append(f"< {_decade(high)}")
        elif math.isinf(high):
            labels.append(f"≥ {_decade(low)}")
        else:
            labels.append(f"{_decade(low)} – {_decade(high)}")
    return labels


def atol_position(edges: Sequence[float], atol: float) -> float:
    """Where atol falls on the bin axis (bin i spans i-0.5 .. i+0.5), interpolated by decade."""
    for index, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        if low <= atol < high:
            if low <= 0 or math.isinf(high):
                return float(index)
            return index - 0.5 + (math.log10(atol) - math.log10(low)) / (math.log10(high) - math.log10(low))
    return len(edges) - 1.5


def error_distribution_figure(report: Report) -> go.Figure:
    """Share of absolute errors per decade, one bar group per output, with the atol boundary marked.

    Only the decades from the first to the last non-empty one (and atol's) are shown."""
    edges = report["error_bin_edges"]
    labels = bin_labels(edges)
    outputs = [o for o in report["outputs"] if sum(o.get("error_histogram") or [])]
    atol_at = atol_position(edges, report["atol"])
    used = [i for o in outputs for i, count in enumerate(o["error_histogram"]) if count]
    first = min(used + [math.floor(atol_at)])
    last = max(used + [math.ceil(atol_at)])
    first, last = max(first, 0), min(last, len(labels) - 1)
    figure = go.Figure()
    for index, output in enumerate(outputs):
        counts = output["error_histogram"][first: last + 1]
        total = sum(output["error_histogram"])
        figure.add_trace(go.Bar(
            x=list(range(first, last + 1)), y=[100 * c / total for c in counts], name=output["name"],
            marker_color=OUTPUT_COLORS[index % len(OUTPUT_COLORS)],
            customdata=[[labels[first + i], c, total] for i, c in enumerate(counts)],
            hovertemplate="%{customdata[0]}: %{customdata[1]:,} of %{customdata[2]:,} values (%{y:.1f}%)<extra>%{fullData.name}</extra>",
        ))
    figure.add_vline(x=atol_at, line_dash="dash", line_color=ATOL_COLOR, annotation_text=f"atol {report['atol']:g}",
                     annotation_position="top", annotation_font_color=ATOL_COLOR)
    figure.update_xaxes(tickmode="array", tickvals=list(range(first, last + 1)), ticktext=labels[first: last + 1],
                        title="absolute error (per decade)", range=[first - 0.5, last + 0.5])
    figure.update_yaxes(title="% of values", rangemode="tozero")
    figure.update_layout(barmode="group", showlegend=len(outputs) > 1, legend={"orientation": "v", "x": 1.02, "y": 1})
    return _layout(figure, "Distribution of absolute errors")


# ---- playground ---------------------------------------------------------------------------------


def scores_figure(scores: Sequence[tuple[str, float]], title: str, value_name: str = "probability") -> go.Figure:
    """Horizontal bars, best on top, values as percentages."""
    ordered = sorted(scores, key=lambda item: item[1])
    best = max((score for _, score in ordered), default=1.0)
    # Small probabilities (fill-mask over a large vocabulary) would be invisible on a 0-100 % axis: zoom in.
    small = best < 0.05
    percent = ".2%" if small else ".1%"
    figure = go.Figure(go.Bar(
        x=[score for _, score in ordered], y=[label for label, _ in ordered], orientation="h",
        marker_color=[ATOL_COLOR if i == len(ordered) - 1 else "#90a4ae" for i in range(len(ordered))],
        text=[f"{score:{percent}}" for _, score in ordered], textposition="auto",
        hovertemplate=f"%{{y}}: %{{x:.2%}} {value_name}<extra></extra>",
    ))
    figure.update_xaxes(range=[0, 1 if best > 0.3 else best * 1.25], tickformat=".2%" if small else ".0%", title=value_name)
    figure.update_yaxes(automargin=True, type="category")
    return _layout(figure, title, height=max(200, 70 + 36 * len(ordered)))


def similarity_figure(sentences: Sequence[str], matrix: Sequence[Sequence[float]]) -> go.Figure:
    """Cosine similarity heatmap of sentence embeddings (-1..1), values written in the cells."""
    labels = [_short(s) for s in sentences]
    figure = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
        text=[[f"{value:.2f}" for value in row] for row in matrix], texttemplate="%{text}",
        customdata=[[[a, b] for b in sentences] for a in sentences],
        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>cosine similarity %{z:.3f}<extra></extra>",
        colorbar={"title": "cosine"},
    ))
    figure.update_yaxes(autorange="reversed", automargin=True)
    figure.update_xaxes(automargin=True, tickangle=-30)
    return _layout(figure, "Cosine similarity of the sentence embeddings", height=max(320, 160 + 48 * len(sentences)))


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- system -------------------------------------------------------------------------------------


def percent_bars_figure(labels: Sequence[str], percents: Sequence[float], title: str) -> go.Figure:
    """Vertical 0-100 % bars (CPU per core, NeuronCore utilization), coloured by load."""
    colors = [FAIL_COLOR if p >= 90 else ATOL_COLOR if p >= 60 else PASS_COLOR for p in percents]
    figure = go.Figure(go.Bar(x=list(labels), y=list(percents), marker_color=colors,
                              text=[f"{p:.0f}%" for p in percents], textposition="outside",
                              hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    figure.update_yaxes(range=[0, 110], ticksuffix="%")
    figure.update_xaxes(type="category")
    return _layout(figure, title, height=260)


# ---- playground: audio and depth ---------------------------------------------------------------

WAVEFORM_POINTS = 2000  # drawn at most: a longer clip is shown by the extremes of each stretch


def waveform_figure(samples: Sequence[float], sampling_rate: int, title: str = "Waveform") -> go.Figure:
    """Amplitude over time; a long clip is drawn as the min/max envelope of WAVEFORM_POINTS / 2 stretches."""
    import numpy as np

    values = np.asarray(samples, dtype="float32")
    if len(values) > WAVEFORM_POINTS:
        stretches = np.array_split(values, WAVEFORM_POINTS // 2)
        starts = np.cumsum([0] + [len(s) for s in stretches[:-1]])
        times = np.ravel([(start, start + len(s) // 2) for start, s in zip(starts, stretches)])
        values = np.ravel([(s.min(), s.max()) for s in stretches])
    else:
        times = np.arange(len(values))
    figure = go.Figure(go.Scatter(x=times / sampling_rate, y=values, mode="lines", line={"width": 1, "color": OUTPUT_COLORS[0]},
                                  hovertemplate="%{x:.3f} s: %{y:.3f}<extra></extra>"))
    figure.update_xaxes(title="seconds")
    figure.update_yaxes(title="amplitude", range=[-1.05, 1.05])
    return _layout(figure, title, height=220)


def depth_figure(depth: Sequence[Sequence[float]], title: str = "Predicted depth") -> go.Figure:
    """The depth map as an image with its colour scale (the model's own units)."""
    figure = go.Figure(go.Heatmap(z=depth, colorscale="Viridis", colorbar={"title": "depth"},
                                  hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    figure.update_xaxes(showticklabels=False, constrain="domain")
    return _layout(figure, title, height=420)


# ---- artifacts: compile time ------------------------------------------------------------------

# A manifest's timing keys end in the stage's name; the label says it as a short verb.
STAGE_LABELS = {"loading": "load", "tracing": "trace", "compiling": "compile", "saving": "save", "validating": "validate",
                "cache": "copy from the compile cache"}
STAGE_COLORS = {"loading": "#90a4ae", "tracing": "#9467bd", "compiling": ATOL_COLOR, "saving": "#8c564b",
                "validating": PASS_COLOR}


def compile_time_rows(timings: dict[str, float], named_components: bool) -> list[dict[str, Any]]:
    """A manifest's stage timings ("unet.compiling": 812.0, "model.b1.tracing": ...) as labelled rows:
    {"label": "UNet · compile", "component", "stage", "seconds"}, in the order they ran. Without
    named components (a single model, whose one part is named after its task) the part is "model";
    a bucket is written after its component."""
    rows = []
    for key, seconds in timings.items():
        *parts, stage = key.split(".")
        component = component_name(parts[0] if named_components and parts else None)
        what = f"{component} [{parts[1]}]" if len(parts) > 1 else component
        what = what[:1].upper() + what[1:]
        rows.append({"label": f"{what} · {STAGE_LABELS.get(stage, stage)}", "component": what, "stage": stage, "seconds": seconds})
    return rows


def compile_time_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """One horizontal bar per component and stage (first on top), coloured by stage, seconds written on it."""
    figure = go.Figure(go.Bar(
        x=[row["seconds"] for row in rows], y=[row["label"] for row in rows], orientation="h",
        marker_color=[STAGE_COLORS.get(row["stage"], MEAN_COLOR) for row in rows],
        text=[fmt_duration(row["seconds"]) for row in rows], textposition="auto",
        hovertemplate="%{y}: %{x:.1f} s<extra></extra>",
    ))
    figure.update_yaxes(autorange="reversed", automargin=True, type="category")
    figure.update_xaxes(title="seconds", rangemode="tozero")
    return _layout(figure, "Compile time per component and stage", height=max(200, 80 + 26 * len(rows)))


# ---- validation report: a pipeline's end-to-end image check ------------------------------------


def image_difference_figure(difference: Sequence[Sequence[float]], limit: float) -> go.Figure:
    """The largest channel difference per pixel (block maxima for large images) as a heat map, pixels in [0, 1];
    the colour scale reaches at least the allowed largest difference, so a passing map stays pale."""
    import numpy as np

    values = np.asarray(difference, dtype="float32")
    figure = go.Figure(go.Heatmap(z=values, zmin=0, zmax=max(float(values.max()) if values.size else 0.0, limit),
                                  colorscale="Reds", colorbar={"title": "|diff|"},
                                  hovertemplate="x %{x}, y %{y}: %{z:.2g}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    figure.update_xaxes(showticklabels=False, constrain="domain")
    return _layout(figure, f"Pixel difference, compiled vs eager (allowed: {limit:.2g})", height=360)


def latent_drift_figure(drift: Sequence[float], limit: float, diverged_step: Optional[int]) -> go.Figure:
    """Latent drift after each denoising step on a log axis, the allowed drift as a line, and the
    step where it was first exceeded marked."""
    steps = list(range(1, len(drift) + 1))
    shown = [max(value, ZERO_FLOOR) for value in drift]
    colors = [FAIL_COLOR if value > limit else PASS_COLOR for value in drift]
    figure = go.Figure(go.Scatter(x=steps, y=shown, mode="lines+markers", name="latent drift",
                                  line={"color": MEAN_COLOR}, marker={"color": colors, "size": 10},
                                  customdata=list(drift), hovertemplate="step %{x}: drift %{customdata:.3g}<extra></extra>"))
    figure.add_hline(y=limit, line_dash="dash", line_color=ATOL_COLOR)
    figure.add_annotation(x=1, xref="paper", y=math.log10(limit), text=f"allowed {limit:g}", showarrow=False,
                          xanchor="right", yanchor="bottom", font={"color": ATOL_COLOR})
    if diverged_step is not None:
        figure.add_vline(x=diverged_step, line_color=FAIL_COLOR, annotation_text=f"diverged at step {diverged_step}",
                         annotation_font_color=FAIL_COLOR)
    low, high = math.floor(math.log10(min(shown + [limit]))) - 1, math.ceil(math.log10(max(shown + [limit]))) + 1
    figure.update_yaxes(type="log", range=[low, high], title="max |compiled − eager| / max |eager|", exponentformat="power")
    figure.update_xaxes(title="denoising step", tickmode="array", tickvals=steps)
    return _layout(figure, "Latent drift per step")
