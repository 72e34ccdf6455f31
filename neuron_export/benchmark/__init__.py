"""Benchmark a compiled artifact against eager PyTorch, ONNX Runtime and OpenVINO, in one interleaved run.

A Stable Diffusion pipeline artifact is timed per image against the eager diffusers pipeline
(same prompts, steps and seed); the peers (peers.py) are for transformers models.

Every side (the compiled artifact, the eager model it came from, the same model exported to ONNX and
run by ONNX Runtime or OpenVINO, in fp32 or int8) runs in a process of its own (sides.py), so:
- the peak memory reported for a side is its own process's (peak RSS, and its growth over the
  process right after imports), never a mix of models;
- no side's caches, thread pools or global state touch another's (the legacy ONNX exporter even
  leaves the exported model in training mode in its process).
The parent generates the inputs once and sends the same arrays to every side (inputs.py); each
side fingerprints what it actually passes to its model and counts its calls. The timed calls run
in rounds, side after side in a rotating order (ABC BCA CAB ...), so a busy shared machine slows
every side alike (run.py). The eager side counts the FLOPs of a call on its exported graph
(flops.py), which give every side's GFLOP/s and share of the host's peak (peak.py). report.py turns
the results into the stored report and its text.
"""

from .report import RESULTS_DIR, benchmark_history, format_report, headline, make_report
from .run import BenchmarkOptions, benchmark, resolve_batch_sizes, run_sides
from .sides import COMPILED, EAGER, ONNXRUNTIME, ONNXRUNTIME_INT8, OPENVINO, OPENVINO_INT8, SIDE_LABELS, Side, SideResult
from .stats import LatencyStats, latency_stats, percentile, speedup, spread, throughput, too_noisy

__all__ = [
    "benchmark", "BenchmarkOptions", "benchmark_history", "format_report", "headline", "make_report", "resolve_batch_sizes",
    "run_sides", "Side", "SideResult", "COMPILED", "EAGER", "ONNXRUNTIME", "ONNXRUNTIME_INT8", "OPENVINO", "OPENVINO_INT8",
    "SIDE_LABELS", "RESULTS_DIR", "LatencyStats", "latency_stats", "percentile", "speedup", "throughput", "spread", "too_noisy",
]
