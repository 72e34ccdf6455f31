"""Validation never calls NaN or infinity "close": a non-finite value on one side (or infinities of
opposite signs) fails, unless both sides agree element-wise; an infinite or NaN atol is refused.

The reference is a real torch module; the "compiled" side is a stand-in returning chosen outputs.
"""

from __future__ import annotations

import math

import pytest
import torch

from neuron_export import ExportOptions
from neuron_export.errors import NeuronExportError
from neuron_export.validation import compare

NAN, INF = math.nan, math.inf


class Reference(torch.nn.Module):
    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values)

    def forward(self, x):
        return (self.values + 0 * x.sum(),)


class Compiled:
    input_names = ["x"]
    output_names = ["y"]

    def __init__(self, values):
        self.values = torch.tensor(values)

    def __call__(self, **inputs):
        return {"y": self.values}


def verdict(reference, compiled, atol=1e-3):
    return compare("model", Reference(reference), ["y"], Compiled(compiled), [{"x": torch.zeros(1)}], atol, "--atol")


@pytest.mark.parametrize("reference, compiled", [
    ([1.0, 2.0], [1.0, NAN]),  # compiled NaN
    ([1.0, NAN], [1.0, 2.0]),  # reference NaN
    ([1.0, INF], [1.0, -INF]),  # opposite infinities
    ([1.0, 2.0], [1.0, INF]),
    ([NAN, 2.0], [1.0, NAN]),  # NaN on both sides, but not at the same places
], ids=["compiled-nan", "reference-nan", "opposite-inf", "compiled-inf", "nan-elsewhere"])
def test_a_non_finite_disagreement_fails(reference, compiled):
    report = verdict(reference, compiled, atol=1e300)  # however large a finite atol (beyond float32's range too)
    assert not report.passed
    assert report.outputs[0].max_abs_diff == INF


def test_values_that_agree_element_wise_pass_with_a_note_about_the_eager_model():
    report = verdict([NAN, INF, 1.0], [NAN, INF, 1.0])
    assert report.passed and report.outputs[0].max_abs_diff == 0.0
    assert report.notes == ["the eager model's own y holds 2 NaN or infinite values: check its weights"]
    assert report.log_lines()[1] == "\tWarning: the eager model's own y holds 2 NaN or infinite values: check its weights"


@pytest.mark.parametrize("atol", [INF, -INF, NAN, 0.0, -1.0, True])
def test_atol_must_be_positive_and_finite(atol):
    with pytest.raises(NeuronExportError, match="--atol must be a positive finite number"):
        ExportOptions(atol=atol)
