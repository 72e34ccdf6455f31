"""The benchmark of a generative artifact: time to first token, time per token and tokens/s.

Three sides, each in its own process (sides.py), timed in interleaved rounds on the same prompt:
the compiled model's generate(), and transformers' generate() on the eager source model with its
static KV cache (cache_implementation="static") and with its default dynamic cache. Every call
generates exactly the same number of tokens (min_new_tokens = max_new_tokens, greedy), and the
sides' tokens are compared. A side's main latency is its time per token (the decode step); its
throughput is new tokens per second of whole generate() calls.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..artifact import Manifest
from ..errors import NeuronExportError
from ..progress import Progress
from .report import make_report, save_results
from .sides import COMPILED, EAGER, EAGER_STATIC, SIDE_LABELS, Side, SideRunner
from .stats import latency_stats, speedup

DEFAULT_NEW_TOKENS = 32
SPEECH_PROMPT = 4  # Whisper: start, language, task and no-timestamps tokens come before the new ones


class GenerationSideRunner(SideRunner):
    """A side of a generation benchmark. Each call is one whole generate(), timed token by token
    (SideRunner's commands; it shares none of SideRunner's loading)."""

    def __init__(self, side: Side, threads: Optional[int]):  # noqa: super().__init__ loads single-graph artifacts
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.threads = threads or torch.get_num_threads()
        self.side, self.calls, self.pipeline = side, 0, False
        manifest = Manifest.read(side.path)
        self.device = manifest.device
        self.timings: list[Any] = []
        self._inputs: dict[str, Any] = {}
        self._settings: dict[str, Any] = {"cache_implementation": "static"} if side.name == EAGER_STATIC else {}
        if side.kind == COMPILED:
            from ..modeling import model_class_for_artifact

            self._model = model_class_for_artifact(side.path).from_pretrained(side.path)
            return
        from ..reference import reference_generator

        try:
            self._model = reference_generator(manifest)
        except NeuronExportError as error:
            raise NeuronExportError(f"the eager model {manifest.source!r} is not available: {error}") from None

    def bind(self, arrays: dict[str, Any]) -> tuple[str, dict[str, list[int]]]:
        import torch

        from .sides import input_digest

        self.calls, self.timings = 0, []
        new_tokens = int(arrays["new_tokens"])
        self._settings.update(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        self._inputs = {name: torch.from_numpy(value).to(self.device) for name, value in arrays.items() if name != "new_tokens"}
        return input_digest(arrays), {name: list(value.shape) for name, value in arrays.items()}

    def _generate(self):
        from ..generation.timing import timed_generation

        self.calls += 1
        return timed_generation(self._model.generate, self._inputs, self._settings)

    def call(self) -> dict[str, Any]:
        tokens, _ = self._generate()
        return {"tokens": np.array(tokens)}

    def time(self, count: int) -> tuple[list[float], float]:
        """Seconds of `count` whole generations after an untimed one (their token timings are kept), and
        the process's CPU seconds over them, as SideRunner.time gives them."""
        self._generate()
        seconds = []
        cpu_start = time.process_time()
        for _ in range(count):
            _, timing = self._generate()
            self.timings.append(timing)
            seconds.append(timing.seconds)
        return seconds, time.process_time() - cpu_start

    def flops(self) -> None:
        """Not counted: a generation's work depends on how many tokens it makes (no % of peak for it)."""
        return None

    def generation(self) -> dict[str, Any]:
        """The kept timings: time to first token and every later token's step, in seconds."""
        steps = [b - a for t in self.timings for a, b in zip(t.token_times, t.token_times[1:])]
        return {"first_token_s": [t.first_token_s for t in self.timings], "per_token_s": steps,
                "new_tokens": sum(t.tokens for t in self.timings), "seconds": sum(t.seconds for t in self.timings)}


def generation_inputs(artifact: Path, manifest: Manifest, options, seed: int) -> dict[str, np.ndarray]:
    """One batch for the first graph (prompt graph or encoder): random tokens of the vocabulary, or
    random audio features of the compiled shape; and how many tokens to generate."""
    from ..registry import DECODER, GENERATION_TASKS

    rng = np.random.RandomState(seed)
    length = int(manifest.shapes["sequence_length"])
    decoder = GENERATION_TASKS[manifest.task].kind == DECODER
    first = Manifest.read(artifact / manifest.components[0]).inputs[0]
    if first.dtype.startswith("float"):  # speech features: the extractor's whole window
        arrays = {first.name: rng.randn(*first.shape).astype(np.float32)}
        used = SPEECH_PROMPT
    else:
        batch, prompt = first.shape[0], options.prompt_length or max(1, length // 4)
        if prompt > first.shape[1]:
            raise NeuronExportError(f"--prompt_length {prompt}: the artifact's prompt graph takes at most {first.shape[1]} tokens")
        ids = rng.randint(5, 100, size=(batch, prompt)).astype(np.int64)
        arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        used = prompt if decoder else 1
    new_tokens = options.new_tokens or min(DEFAULT_NEW_TOKENS, length - used)
    if used + new_tokens > length or new_tokens < 1:
        raise NeuronExportError(f"--new_tokens {new_tokens} after {used} tokens exceeds the compiled sequence_length {length}")
    return {**arrays, "new_tokens": np.array(new_tokens)}


def benchmark_generation(artifact: Path, manifest: Manifest, options, on_event=None) -> dict[str, Any]:
    from .run import side_processes, time_sides

    batch_size = int(manifest.shapes["batch_size"])
    if options.batch_sizes and set(options.batch_sizes) != {batch_size}:
        raise NeuronExportError(f"--batch_size: this artifact was compiled for batch size {batch_size} only")
    inputs = generation_inputs(artifact, manifest, options, options.seed)
    sides = [Side(COMPILED, COMPILED, str(artifact)), Side(EAGER, EAGER, str(artifact)), Side(EAGER_STATIC, EAGER_STATIC, str(artifact))]
    progress = Progress(on_event, 2)
    with side_processes(sides, options.threads, GenerationSideRunner) as processes:
        results = time_sides(processes, lambda _: inputs, [batch_size], options, progress)
        details = {process.side.name: process.ask("generation") for process in processes}
    compiled = results[batch_size][COMPILED]
    if not compiled.ok:
        raise NeuronExportError(f"the compiled artifact could not be benchmarked: {compiled.detail}")
    report = make_report(artifact, manifest, dataclasses.replace(options, onnx=False), results, None)
    report["kind"] = "generation"
    run = report["runs"][0]
    for name, side in run["sides"].items():
        if side["status"] == "ok" and details.get(name):
            side.update(_generation_summary(details[name]))
    run["speedups"] = _speedups(run["sides"], "stats")
    run["first_token_speedups"] = _speedups(run["sides"], "time_to_first_token")
    if options.save:
        report["saved_to"] = str(save_results(artifact, report))
    return report


def _generation_summary(detail: dict[str, Any]) -> dict[str, Any]:
    """The side's per-token latency as its main stats, tokens/s as its throughput, and its time to first token."""
    return {
        "stats": dataclasses.asdict(latency_stats(detail["per_token_s"])) if detail["per_token_s"] else None,
        "time_to_first_token": dataclasses.asdict(latency_stats(detail["first_token_s"])),
        "throughput": detail["new_tokens"] / detail["seconds"],
        "new_tokens": detail["new_tokens"],
    }


def _speedups(sides: dict[str, Any], key: str) -> dict[str, Optional[float]]:
    """p50 `key` of each eager side over the compiled one's (>1: the compiled model is faster)."""
    compiled = sides[COMPILED].get(key) if sides[COMPILED]["status"] == "ok" else None
    return {f"{COMPILED}_vs_{name}": speedup(side[key]["p50_ms"], compiled["p50_ms"])
            for name, side in sides.items() if name != COMPILED and side["status"] == "ok" and side.get(key) and compiled}


def format_generation_report(report: dict[str, Any]) -> list[str]:
    model, settings, run = report["model"], report["settings"], report["runs"][0]
    compiled = run["sides"][COMPILED]
    lines = [
        f"Benchmark of {report['artifact']}",
        f"  {model['source']} ({model['task']}), {model['backend']} -O{model['optlevel']}, batch {run['batch_size']}, "
        f"sequence_length {model['shapes'].get('sequence_length')}, on {model['device']}",
        f"  inputs {', '.join(f'{k} {v}' for k, v in compiled['input_shapes'].items() if v)}, "
        f"{compiled.get('new_tokens', 0) // max(settings['iterations'], 1)} new tokens "
        f"per call (greedy); {settings['iterations']} timed calls per side, interleaved in up to {settings['rounds']} rounds; "
        f"every side in its own process; threads: {compiled['threads']}",
        "",
        f"  {'side':<22}{'first token ms':>16}{'per token ms':>14}{'p90 ms':>9}{'tokens/s':>10}{'peak RSS MB':>13}{'same tokens':>13}",
    ]
    for name, side in run["sides"].items():
        label = SIDE_LABELS.get(name, name)
        if side["status"] != "ok" or not side.get("stats"):
            lines.append(f"  {label:<22}{side['status']}: {side['detail']}")
            continue
        diffs = side["max_abs_diff"]
        same = "" if name == EAGER else "—" if not diffs else "yes" if not any(diffs.values()) else "NO"
        lines.append(f"  {label:<22}{side['time_to_first_token']['p50_ms']:>16.2f}{side['stats']['p50_ms']:>14.2f}"
                     f"{side['stats']['p90_ms']:>9.2f}{side['throughput']:>10.1f}{side['peak_rss_mb']:>13.0f}{same:>13}")
    for title, key in (("per token", "speedups"), ("time to first token", "first_token_speedups")):
        said = [f"{ratio:.2f}x {SIDE_LABELS.get(name.split('_vs_')[1])}" for name, ratio in run[key].items() if ratio]
        if said:
            lines.append(f"  compiled speed-up, {title} (p50): " + "; ".join(said))
    if report.get("saved_to"):
        lines.append(f"Results saved to {report['saved_to']}")
    return lines


def generation_headline(report: dict[str, Any]) -> str:
    run = report["runs"][0]
    compiled = run["sides"][COMPILED]
    said = [f"{ratio:.2f}x {SIDE_LABELS.get(name.split('_vs_')[1])}" for name, ratio in run["speedups"].items() if ratio]
    return (f"compiled {compiled['stats']['p50_ms']:.2f} ms per token, {compiled['throughput']:.1f} tokens/s"
            + (f": {', '.join(said)}" if said else ""))
