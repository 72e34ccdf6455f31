"""Statistics of measured seconds (pure functions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class LatencyStats:
    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    ms = [s * 1000 for s in seconds]
    mean = sum(ms) / len(ms)
    std = math.sqrt(sum((x - mean) ** 2 for x in ms) / (len(ms) - 1)) if len(ms) > 1 else 0.0
    return LatencyStats(len(ms), mean, std, min(ms), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), max(ms))


def throughput(seconds: Sequence[float], batch_size: int) -> float:
    """Inferences (samples) per second over the timed calls: every call handles batch_size samples."""
    return batch_size * len(seconds) / sum(seconds)


def speedup(baseline_ms: Optional[float], candidate_ms: Optional[float]) -> Optional[float]:
    """How many times faster the candidate is (>1: faster); None when either side has no number."""
    if not baseline_ms or not candidate_ms:
        return None
    return baseline_ms / candidate_ms


def spread(values: Sequence[float]) -> float:
    """The interquartile range: how far apart the middle half of the values lie."""
    return percentile(values, 75) - percentile(values, 25)


def too_noisy(first: Sequence[float], second: Sequence[float]) -> bool:
    """Whether two sets of timings' medians differ by less than the larger of their spreads: which
    side is faster cannot be told from them."""
    return abs(percentile(first, 50) - percentile(second, 50)) < max(spread(first), spread(second))
