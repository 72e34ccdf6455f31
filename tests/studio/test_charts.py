"""studio/charts.py: the figures and table rows built from validation reports and playground results.

Reports are made with the engine's own ValidationReport / OutputCheck (so a change of the JSON
format breaks these tests) from inputs whose expected rendering is known. Budget: < 5 s.
"""

import json
import math

import pytest

from neuron_export.validation import ERROR_BIN_EDGES, OutputCheck, ValidationReport
from studio import charts

ATOL = 1e-4


def report_dict(*outputs: OutputCheck, atol: float = ATOL) -> dict:
    report = ValidationReport(
        component="model", atol=atol, atol_source="default for the model family",
        reference_output_names=[o.name for o in outputs], compiled_output_names=[o.name for o in outputs],
        outputs=list(outputs), runs=[{"input_ids": [1, 16], "attention_mask": [1, 16]}, {"input_ids": [2, 16], "attention_mask": [2, 16]}],
    )
    return json.loads(json.dumps(report.to_dict()))  # as validation.json reads back (inf edge included)


def histogram(**counts_by_bin: int) -> list[int]:
    counts = [0] * (len(ERROR_BIN_EDGES) - 1)
    for index, count in counts_by_bin.items():
        counts[int(index.removeprefix("b"))] = count
    return counts


def check(name, max_diff, mean_diff, hist=None, shape=(1, 2), compiled_shape=None):
    compiled_shape = list(compiled_shape or shape)
    return OutputCheck(name, list(shape), compiled_shape, list(shape) == compiled_shape, max_diff, mean_diff, ATOL,
                       hist or histogram(b5=3))


@pytest.fixture
def mixed_report() -> dict:
    """logits passes (3.7e-9), hidden exactly 0, scores fails (2e-3), mask has a shape mismatch."""
    return report_dict(
        check("logits", 3.7e-9, 2.3e-9, histogram(b3=1, b4=1)),
        check("hidden", 0.0, 0.0, histogram(b0=32), shape=(1, 16, 2)),
        check("scores", 2e-3, 4e-4, histogram(b9=6, b10=2)),
        check("mask", None, None, histogram(), shape=(1, 16), compiled_shape=(1, 8)),
    )


def test_output_rows_show_every_field_of_each_output(mixed_report):
    rows = {row["Output"]: row for row in charts.output_rows(mixed_report)}
    assert list(rows) == ["logits", "hidden", "scores", "mask"]
    assert rows["logits"] == {"Output": "logits", "Reference shape": "1 × 2", "Compiled shape": "1 × 2", "Shape": "✓",
                              "Max abs diff": 3.7e-9, "Mean abs diff": 2.3e-9, "atol": ATOL, "Within atol": "✓"}
    assert rows["scores"]["Within atol"] == "✗" and rows["scores"]["Shape"] == "✓"
    assert rows["mask"]["Shape"] == "✗" and rows["mask"]["Compiled shape"] == "1 × 8" and rows["mask"]["Max abs diff"] is None


def test_run_rows_list_input_shapes_per_run(mixed_report):
    assert charts.run_rows(mixed_report) == [
        {"Run": "1", "input_ids": "1 × 16", "attention_mask": "1 × 16"},
        {"Run": "2", "input_ids": "2 × 16", "attention_mask": "2 × 16"},
    ]


def test_max_diff_figure_log_axis_atol_line_and_zero_floor(mixed_report):
    figure = charts.max_diff_figure(mixed_report)
    bars, means = figure.data
    assert list(bars.x) == ["logits", "hidden", "scores", "mask"]
    assert list(bars.y) == [3.7e-9, charts.ZERO_FLOOR, 2e-3, None]  # exact zero drawn at the floor
    assert "exactly 0" in bars.hovertext[1] and "exactly 0" not in bars.hovertext[0]
    assert "not compared" in bars.hovertext[3]
    assert list(bars.marker.color) == [charts.PASS_COLOR, charts.PASS_COLOR, charts.FAIL_COLOR, charts.FAIL_COLOR]
    assert list(means.y)[:3] == [2.3e-9, charts.ZERO_FLOOR, 4e-4]
    assert figure.layout.yaxis.type == "log"
    low, high = figure.layout.yaxis.range  # log10 units: the floor, atol and the largest bar are all in view
    assert low < math.log10(charts.ZERO_FLOOR) and high > math.log10(2e-3)
    atol_lines = [s for s in figure.layout.shapes if s.y0 == ATOL and s.y1 == ATOL]
    assert len(atol_lines) == 1
    (label,) = [a for a in figure.layout.annotations if a.text.startswith("atol")]
    assert label.y == pytest.approx(math.log10(ATOL))  # log axes place annotations in log10 units
    assert any("shape mismatch" in a.text for a in figure.layout.annotations)


def test_max_diff_figure_keeps_atol_in_view_when_all_diffs_are_tiny():
    figure = charts.max_diff_figure(report_dict(check("logits", 1e-9, 1e-10), atol=1e-2))
    low, high = figure.layout.yaxis.range
    assert low <= -10 and high >= -2


def test_bin_labels_cover_zero_and_infinity():
    labels = charts.bin_labels(ERROR_BIN_EDGES)
    assert len(labels) == len(ERROR_BIN_EDGES) - 1
    assert labels[0] == "< 1e-12" and labels[1] == "1e-12 – 1e-11" and labels[-1] == "≥ 100"


@pytest.mark.parametrize("atol, expected", [(1e-4, 8.5), (1e-3, 9.5), (10 ** -3.5, 9.0), (1e-13, 0.0), (1e3, 15.0)])
def test_atol_position_on_the_decade_axis(atol, expected):
    # bin i (centre i) spans [edges[i], edges[i+1]); 1e-4 is edges[9]: the boundary between bins 8 and 9
    assert charts.atol_position(ERROR_BIN_EDGES, atol) == pytest.approx(expected)


def test_error_distribution_shares_per_output_and_atol_marker(mixed_report):
    figure = charts.error_distribution_figure(mixed_report)
    by_name = {trace.name: trace for trace in figure.data}
    assert set(by_name) == {"logits", "hidden", "scores"}  # mask was never compared: no counts
    shown = list(by_name["scores"].x)
    assert shown == list(range(0, 11))  # from the first non-empty bin (0, hidden's zeros) to the last (10)
    scores = dict(zip(by_name["scores"].x, by_name["scores"].y))
    assert scores[9] == pytest.approx(75.0) and scores[10] == pytest.approx(25.0) and scores[3] == 0
    assert dict(zip(by_name["hidden"].x, by_name["hidden"].y))[0] == pytest.approx(100.0)
    assert figure.layout.xaxis.ticktext[0] == "< 1e-12"
    (line,) = [s for s in figure.layout.shapes if s.x0 == s.x1]
    assert line.x0 == pytest.approx(8.5)


def test_error_distribution_range_includes_atol_even_when_errors_are_far_below():
    figure = charts.error_distribution_figure(report_dict(check("logits", 1e-11, 1e-11, histogram(b2=4)), atol=1e-2))
    (trace,) = figure.data
    assert min(trace.x) == 2 and max(trace.x) >= charts.atol_position(ERROR_BIN_EDGES, 1e-2)


def test_scores_figure_puts_the_best_on_top():
    figure = charts.scores_figure([("NEGATIVE", 0.2), ("POSITIVE", 0.7), ("NEUTRAL", 0.1)], "Labels")
    (bars,) = figure.data
    assert list(bars.y) == ["NEUTRAL", "NEGATIVE", "POSITIVE"]  # plotly draws the last bar on top
    assert list(bars.x) == [0.1, 0.2, 0.7]
    assert list(bars.text) == ["10.0%", "20.0%", "70.0%"]
    assert tuple(figure.layout.xaxis.range) == (0, 1)


def test_scores_figure_zooms_in_on_small_probabilities():
    figure = charts.scores_figure([("in", 0.002), ("on", 0.001)], "Top tokens")
    assert tuple(figure.layout.xaxis.range) == pytest.approx((0, 0.0025))


def test_similarity_figure_writes_values_in_cells():
    matrix = [[1.0, 0.75], [0.75, 1.0]]
    figure = charts.similarity_figure(["a cat", "a kitten"], matrix)
    (heatmap,) = figure.data
    assert [list(row) for row in heatmap.z] == matrix
    assert heatmap.zmin == -1 and heatmap.zmax == 1
    assert heatmap.text[0][1] == "0.75"


def test_percent_bars_colour_by_load():
    figure = charts.percent_bars_figure(["core 0", "core 1", "core 2"], [10.0, 70.0, 95.0], "CPU")
    (bars,) = figure.data
    assert list(bars.marker.color) == [charts.PASS_COLOR, charts.ATOL_COLOR, charts.FAIL_COLOR]
    assert tuple(figure.layout.yaxis.range) == (0, 110)


def test_latent_drift_figure_marks_the_steps_over_the_limit_and_the_divergence():
    figure = charts.latent_drift_figure([1e-4, 0.0, 3e-3, 8e-3], 1e-3, 3)
    trace = figure.data[0]
    assert list(trace.x) == [1, 2, 3, 4] and list(trace.customdata) == [1e-4, 0.0, 3e-3, 8e-3]
    assert trace.y[1] == charts.ZERO_FLOOR  # exact 0 on a log axis
    assert list(trace.marker.color) == [charts.PASS_COLOR, charts.PASS_COLOR, charts.FAIL_COLOR, charts.FAIL_COLOR]
    assert figure.layout.shapes[0].y0 == 1e-3 and figure.layout.shapes[1].x0 == 3
    low, high = figure.layout.yaxis.range
    assert low <= math.log10(charts.ZERO_FLOOR) and high >= math.log10(8e-3)


def test_image_difference_scale_reaches_the_allowed_difference():
    pale = charts.image_difference_figure([[0.0, 1e-4], [2e-4, 0.0]], 1 / 255)
    assert pale.data[0].zmax == pytest.approx(1 / 255)  # a passing map stays pale
    loud = charts.image_difference_figure([[0.0, 0.5], [0.1, 0.0]], 1 / 255)
    assert loud.data[0].zmax == pytest.approx(0.5) and loud.layout.yaxis.autorange == "reversed"
