"""Validate a compiled artifact against eager PyTorch: output names, shapes, max/mean abs diff <= atol."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

# Absolute errors are summarised as a histogram over decades, for the dashboard's error chart.
ERROR_BIN_EDGES = [0.0] + [10.0**e for e in range(-12, 3)] + [math.inf]


@dataclass
class OutputCheck:
    name: str
    reference_shape: list[int]
    compiled_shape: list[int]
    shape_match: bool
    max_abs_diff: Optional[float]
    mean_abs_diff: Optional[float]
    atol: float
    error_histogram: list[int] = field(default_factory=list)

    @property
    def values_close(self) -> bool:
        return self.max_abs_diff is not None and self.max_abs_diff <= self.atol

    @property
    def passed(self) -> bool:
        return self.shape_match and self.values_close


@dataclass
class ValidationReport:
    component: str
    atol: float
    atol_source: str
    reference_output_names: list[str]
    compiled_output_names: list[str]
    outputs: list[OutputCheck]
    runs: list[dict[str, list[int]]]  # input shapes of each validation run
    notes: list[str] = field(default_factory=list)

    @property
    def names_match(self) -> bool:
        return self.reference_output_names == self.compiled_output_names

    @property
    def passed(self) -> bool:
        return self.names_match and all(o.passed for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        data["names_match"] = self.names_match
        data["error_bin_edges"] = ERROR_BIN_EDGES
        for check, out in zip(self.outputs, data["outputs"]):
            out["values_close"] = check.values_close
            out["passed"] = check.passed
        return data

    def log_lines(self) -> list[str]:
        """The seed guide's validation log (and its notes, as warnings)."""
        mark = "✓" if self.names_match else "x"
        lines = [f"Validating {self.component} model..."] + [f"\tWarning: {note}" for note in self.notes]
        if self.names_match:
            lines.append(f"\t-[{mark}] Compiled model output names match reference model ({', '.join(self.compiled_output_names)})")
        else:
            lines.append(
                f"\t-[{mark}] Compiled model output names ({', '.join(self.compiled_output_names)}) do not match "
                f"reference model ({', '.join(self.reference_output_names)})"
            )
        for check in self.outputs:
            lines.append(f'\t- Validating compiled model output "{check.name}":')
            shape = "matches" if check.shape_match else "does not match"
            lines.append(
                f"\t\t-[{'✓' if check.shape_match else 'x'}] {tuple(check.compiled_shape)} {shape} {tuple(check.reference_shape)}"
            )
            if check.values_close:
                lines.append(f"\t\t-[✓] all values close (atol: {check.atol:g})")
            elif check.max_abs_diff is None:
                lines.append("\t\t-[x] values not compared (shape mismatch)")
            else:
                lines.append(f"\t\t-[x] values not close enough, max diff: {check.max_abs_diff:.3g} (atol: {check.atol:g})")
        return lines


def error_histogram(diff: torch.Tensor) -> list[int]:
    """Counts of absolute errors per ERROR_BIN_EDGES bin (the first bin holds exact zeros and tiny ones)."""
    interior = torch.tensor(ERROR_BIN_EDGES[1:-1], dtype=torch.float64)
    bins = torch.bucketize(diff.double().flatten(), interior, right=True)
    return torch.bincount(bins, minlength=len(ERROR_BIN_EDGES) - 1).tolist()


@dataclass
class _Totals:
    """One output's differences, summed over the validation runs."""

    reference_shape: list[int]
    compiled_shape: list[int]
    shape_match: bool = True
    max: float = 0.0
    sum: float = 0.0
    count: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(ERROR_BIN_EDGES) - 1))
    reference_nonfinite: int = 0  # NaN / inf values the eager model itself returned

    def add(self, got: torch.Tensor, want: torch.Tensor) -> None:
        if got.shape != want.shape:
            self.shape_match, self.reference_shape, self.compiled_shape = False, list(want.shape), list(got.shape)
            return
        diff = absolute_difference(got, want)
        self.reference_nonfinite += int((~torch.isfinite(want)).sum())
        self.max = max(self.max, float(diff.max()) if diff.numel() else 0.0)
        self.sum += float(diff.sum())
        self.count += diff.numel()
        self.histogram = [a + b for a, b in zip(self.histogram, error_histogram(diff))]

    def check(self, name: str, atol: float) -> OutputCheck:
        compared = self.shape_match and self.count > 0
        return OutputCheck(name, self.reference_shape, self.compiled_shape, self.shape_match,
                           self.max if compared else None, self.sum / self.count if compared else None, atol, self.histogram)


def absolute_difference(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """|got - want|, where a NaN or infinity on either side counts as an infinite difference unless
    both sides hold the same non-finite value there (NaN and NaN, +inf and +inf)."""
    diff = (got - want).abs()
    if torch.isfinite(diff).all():
        return diff
    agree = (torch.isnan(got) & torch.isnan(want)) | (torch.isinf(got) & (got == want))
    # nan_to_num's default would turn +inf into the dtype's largest finite value, which a large atol passes.
    return torch.where(agree, torch.zeros_like(diff), torch.nan_to_num(diff, nan=math.inf, posinf=math.inf))


def compare(
    component: str,
    reference: Callable[..., Sequence[torch.Tensor]],
    reference_names: list[str],
    compiled,  # CompiledModel
    input_sets: list[dict[str, torch.Tensor]],
    atol: float,
    atol_source: str,
) -> ValidationReport:
    """Run the eager reference and the compiled model on each input set and compare every output."""
    totals: dict[str, _Totals] = {}
    runs = []
    for inputs in input_sets:
        runs.append({name: list(t.shape) for name, t in inputs.items()})
        with torch.no_grad():
            expected = dict(zip(reference_names, reference(*[inputs[n] for n in compiled.input_names])))
            actual = compiled(**inputs)
        for name in reference_names:
            if name in actual:
                got, want = actual[name].detach().float().cpu(), expected[name].detach().float().cpu()
                totals.setdefault(name, _Totals(list(want.shape), list(got.shape))).add(got, want)
    # Both sides agreeing on NaN passes, but the eager model returning NaN is worth saying loudly.
    notes = [f"the eager model's own {name} holds {t.reference_nonfinite} NaN or infinite values: check its weights"
             for name, t in totals.items() if t.reference_nonfinite]
    return ValidationReport(
        component=component,
        atol=atol,
        atol_source=atol_source,
        reference_output_names=list(reference_names),
        compiled_output_names=list(compiled.output_names),
        outputs=[totals[name].check(name, atol) for name in reference_names if name in totals],
        runs=runs,
        notes=notes,
    )


def merge_reports(component: str, reports: list[ValidationReport]) -> ValidationReport:
    """One report over several (a bucketed model's buckets): per output the largest difference, the
    mean over every compared value, the summed error histogram; shapes of the last (largest) report;
    the runs of all; a note per report with its verdict."""
    last = reports[-1]
    outputs = []
    for check in last.outputs:
        same = [o for r in reports for o in r.outputs if o.name == check.name]
        counts = [sum(o.error_histogram) for o in same]
        compared = all(o.max_abs_diff is not None for o in same) and sum(counts) > 0
        outputs.append(OutputCheck(
            check.name, check.reference_shape, check.compiled_shape, all(o.shape_match for o in same),
            max(o.max_abs_diff for o in same) if compared else None,
            sum(o.mean_abs_diff * n for o, n in zip(same, counts)) / sum(counts) if compared else None,
            check.atol, [sum(bins) for bins in zip(*(o.error_histogram for o in same))],
        ))
    return ValidationReport(
        component=component,
        atol=last.atol,
        atol_source=last.atol_source,
        reference_output_names=last.reference_output_names,
        compiled_output_names=last.compiled_output_names if all(r.names_match for r in reports) else
        next(r.compiled_output_names for r in reports if not r.names_match),
        outputs=outputs,
        runs=[run for r in reports for run in r.runs],
        notes=[f"{r.component}: {'passed' if r.passed else 'failed'}" for r in reports],
    )
