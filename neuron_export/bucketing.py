"""Buckets: several static shapes in one artifact, and the cost model that proposes them.

A shape option that the registry marks as bucketable (registry BucketAxes) may hold several values:
`--sequence_length 32,64,128` compiles one model per value; `--height 512,768 --width 512,768`
pairs by position (512x512 and 768x768). `--sequence_length auto:16-512` lets the cost model pick:
powers of two by default, or with `--length_histogram FILE` the lengths that minimise the expected
padded tokens of that traffic. This module turns option values into buckets; it imports no torch.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .errors import NeuronExportError, first_line

# One static shape, several (buckets, in the order given), or "auto:LOW-HIGH[:COUNT]".
ShapeValue = Union[int, tuple[int, ...], str]
AUTO_PREFIX = "auto:"
AUTO_PATTERN = re.compile(r"^auto:(\d+)-(\d+)(?::(\d+))?$")
MAX_BUCKETS = 16  # each bucket is a compile and a copy of the compiled graph (and, often, of the weights)
ALIGNMENT = 8  # lengths the histogram model picks are multiples of this (vector-unit friendly)


@dataclass(frozen=True)
class AutoBuckets:
    """`auto:LOW-HIGH[:COUNT]`: buckets from LOW to HIGH chosen by the cost model."""

    low: int
    high: int
    count: Optional[int] = None  # None: as many as powers of two from LOW to HIGH

    def __str__(self) -> str:
        return f"{AUTO_PREFIX}{self.low}-{self.high}" + (f":{self.count}" if self.count else "")


def parse_auto(flag: str, text: str) -> AutoBuckets:
    match = AUTO_PATTERN.match(text.strip())
    if not match:
        raise NeuronExportError(f"{flag} {text!r}: write auto:LOW-HIGH or auto:LOW-HIGH:COUNT, e.g. auto:16-512")
    low, high, count = int(match[1]), int(match[2]), int(match[3]) if match[3] else None
    if not 0 < low < high:
        raise NeuronExportError(f"{flag} {text}: LOW must be positive and below HIGH")
    if count is not None and not 1 <= count <= MAX_BUCKETS:
        raise NeuronExportError(f"{flag} {text}: COUNT must be 1 to {MAX_BUCKETS}")
    return AutoBuckets(low, high, count)


def parse_shape_text(flag: str, text: str) -> ShapeValue:
    """A shape option as typed: "128", "32,64,128" or "auto:16-512" (one-line error otherwise)."""
    text = str(text).strip()
    if text.startswith(AUTO_PREFIX):
        return str(parse_auto(flag, text))
    parts = [part.strip() for part in text.split(",")]
    if not all(re.fullmatch(r"\d+", part) for part in parts):
        raise NeuronExportError(f"{flag} {text!r}: give a positive integer, several separated by commas (buckets), or auto:LOW-HIGH")
    return shape_value(flag, tuple(int(part) for part in parts))


def shape_value(flag: str, value: Any) -> Optional[ShapeValue]:
    """A multi-value shape option checked and normalised: lists become tuples, one value an int."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_shape_text(flag, value)
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    for item in values:
        if not isinstance(item, int) or isinstance(item, bool) or item <= 0:
            raise NeuronExportError(f"{flag} must be a positive integer (or several: buckets), got {item!r}")
    if not values:
        raise NeuronExportError(f"{flag}: give at least one value")
    if len(values) > MAX_BUCKETS:
        raise NeuronExportError(f"{flag}: {len(values)} buckets; at most {MAX_BUCKETS} (each is a compile of its own)")
    return values[0] if len(values) == 1 else values


def format_shape_value(value: ShapeValue) -> str:
    """The command-line spelling of a shape option value (the inverse of parse_shape_text)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def is_multi(value: Any) -> bool:
    """Whether a shape option value asks for buckets (several values, or auto)."""
    return isinstance(value, (tuple, str))


# ---- the cost model ------------------------------------------------------------------------------


def powers_of_two(low: int, high: int) -> list[int]:
    """Powers of two from LOW up to HIGH, starting at the first one >= LOW and always ending at HIGH."""
    values, power = [], 1 << max(0, math.ceil(math.log2(low)))
    while power < high:
        values.append(power)
        power *= 2
    return values + [high]


def read_length_histogram(path: str | Path) -> dict[int, int]:
    """Lengths seen in traffic -> how often: a JSON object {"12": 340, ...}, a JSON list of lengths,
    or text with one length (or "length count") per line."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise NeuronExportError(f"--length_histogram {path}: cannot read it ({first_line(error)})") from None
    try:
        counts = _histogram_from_text(text)
    except (ValueError, TypeError) as error:
        raise NeuronExportError(f"--length_histogram {path}: {first_line(error)}") from None
    if not counts:
        raise NeuronExportError(f"--length_histogram {path}: it holds no lengths")
    return counts


def _histogram_from_text(text: str) -> dict[int, int]:
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        data = json.loads(stripped)
        pairs = data.items() if isinstance(data, dict) else ((length, 1) for length in data)
    else:
        rows = [line.split() for line in stripped.splitlines() if line.strip() and not line.startswith("#")]
        pairs = ((row[0], row[1] if len(row) > 1 else 1) for row in rows)
    counts: dict[int, int] = {}
    for length, count in pairs:
        length, count = int(length), int(count)
        if length <= 0 or count < 0:
            raise ValueError(f"lengths must be positive and counts not negative (got {length}: {count})")
        counts[length] = counts.get(length, 0) + count
    return {length: count for length, count in sorted(counts.items()) if count}


def expected_padded_length(histogram: dict[int, int], buckets: list[int]) -> float:
    """Mean bucket length over the traffic: what each call pays when it runs on the smallest bucket that fits."""
    total = sum(histogram.values())
    cost = sum(count * next(b for b in buckets if b >= length) for length, count in histogram.items())
    return cost / total


def cheapest_buckets(histogram: dict[int, int], count: int, high: int, candidates: list[int]) -> list[int]:
    """At most `count` buckets from `candidates`, the last one `high`, minimising the expected padded
    length of the histogram's traffic (an exact dynamic programme over the sorted candidates)."""
    candidates = sorted(set(c for c in candidates if c < high)) + [high]
    lengths = sorted(histogram)
    # mass[i]: calls whose smallest fitting candidate is candidates[i]
    mass = [0] * len(candidates)
    for length in lengths:
        mass[next(i for i, c in enumerate(candidates) if c >= length)] += histogram[length]
    n, calls_up_to = len(candidates), [0]
    for calls in mass:
        calls_up_to.append(calls_up_to[-1] + calls)
    # best[k][i]: cheapest cost of the calls up to candidates[i], with k buckets, the last at candidates[i]
    best = [[math.inf] * n for _ in range(count + 1)]
    choice = [[-1] * n for _ in range(count + 1)]
    for i in range(n):
        best[1][i] = candidates[i] * calls_up_to[i + 1]
    for k in range(2, count + 1):
        for i in range(n):
            for j in range(i):
                cost = best[k - 1][j] + candidates[i] * (calls_up_to[i + 1] - calls_up_to[j + 1])
                if cost < best[k][i]:
                    best[k][i], choice[k][i] = cost, j
    k = min(range(1, count + 1), key=lambda k: (best[k][n - 1], k))
    picked, i = [], n - 1
    while i >= 0 and k >= 1:
        picked.append(candidates[i])
        i, k = choice[k][i], k - 1
    return sorted(picked)


def propose_buckets(flag: str, auto: AutoBuckets, histogram_file: Optional[str]) -> tuple[list[int], str]:
    """The buckets of an auto option and a sentence saying what was chosen and why."""
    default = powers_of_two(auto.low, auto.high)
    count = auto.count or len(default)
    if histogram_file is None:
        buckets = default if auto.count is None else _spread(auto.low, auto.high, count)
        how = "powers of two" if auto.count is None else f"{count} lengths spread geometrically"
        return buckets, f"{flag} {auto}: buckets {', '.join(map(str, buckets))} ({how} from {auto.low} to {auto.high})"
    histogram = read_length_histogram(histogram_file)
    longest = max(histogram)
    if longest > auto.high:
        raise NeuronExportError(f"--length_histogram {histogram_file} has lengths up to {longest}, beyond {flag} {auto}: raise HIGH")
    candidates = [min(auto.high, max(auto.low, _align(length))) for length in histogram]
    buckets = cheapest_buckets(histogram, count, auto.high, candidates)
    calls = sum(histogram.values())
    said = (f"{flag} {auto}: buckets {', '.join(map(str, buckets))}, chosen for the {calls} lengths of {histogram_file}: "
            f"{expected_padded_length(histogram, buckets):.1f} padded tokens per call on average, against "
            f"{expected_padded_length(histogram, default):.1f} with powers of two and {auto.high} with one bucket")
    return buckets, said


def _align(length: int) -> int:
    return -(-length // ALIGNMENT) * ALIGNMENT


def _spread(low: int, high: int, count: int) -> list[int]:
    """`count` lengths from low to high, evenly spaced on a log scale, aligned, the last exactly high."""
    if count == 1:
        return [high]
    ratio = (high / low) ** (1 / (count - 1))
    values = {min(high, _align(round(low * ratio**i))) for i in range(count - 1)}
    return sorted(values - {high}) + [high]


def parse_resolutions(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Resolutions typed as "512x512, 768x1024" (width x height) -> (heights, widths), paired by position."""
    heights, widths = [], []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", item)
        if not match:
            raise NeuronExportError(f"resolution {item!r}: write WIDTHxHEIGHT, several separated by commas, e.g. 512x512, 768x768")
        widths.append(int(match[1]))
        heights.append(int(match[2]))
    if not heights:
        raise NeuronExportError("give at least one resolution, e.g. 512x512")
    return shape_value("--height", tuple(heights)), shape_value("--width", tuple(widths))
