"""The playground's core: loading an artifact (the compiled model, its preprocessor and the eager
PyTorch model it came from, via neuron_export.reference) and running both on the same input.

Callers share LoadedArtifacts between threads: hold `.lock` while calling. Nothing here imports streamlit.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from neuron_export import Manifest, read_manifest
from neuron_export.benchmark.alternate import alternate, time_calls
from neuron_export.benchmark.stats import percentile, spread, too_noisy
from neuron_export.demo import DEMO_MODELS
from neuron_export.errors import NeuronExportError
from neuron_export.reference import reference_generator, reference_model, source_folder
from neuron_export.processors import load_processor
from neuron_export.registry import GENERATION_CLASSES, modality_of_inputs, task_view

# The playground's timing (measure_speed): few calls, so the page stays responsive; the Benchmark page times more.
WARMUP_CALLS = 2  # per side
TIMED_CALLS = 10  # per side, in ROUNDS alternating rounds (one per round for slow models) ...
ROUNDS = 5
TIMING_BUDGET_S = 4.0  # ... and no round after the first MIN_ROUNDS starts later than this after the warm-up began
MIN_ROUNDS = 3
TOP_K = 5  # labels / tokens shown, best first


def artifact_view(manifest: Manifest) -> Optional[str]:
    """The kind of playground view of an artifact (registry.task_view), or None when it has none."""
    return task_view(manifest.task, modality_of_inputs(manifest.input_names), manifest.library, manifest.pipeline_class)


def random_weights_demo(manifest: Manifest) -> bool:
    """Whether the artifact was compiled from a built-in demo model with random weights."""
    demo = DEMO_MODELS.get(manifest.source or "")
    return demo is not None and demo.random_weights


@dataclass
class LoadedArtifact:
    path: Path
    manifest: Manifest
    view: str  # the kind of playground view (registry TaskSpec.views)
    model: Any  # a NeuronModel, a Neuron Stable Diffusion pipeline, or a generative model class
    processor: Any  # tokenizer, image processor or (speech) processor; None for pipelines (they hold their tokenizers)
    # named tensors -> {output: tensor}; SD: the diffusers pipeline, loaded on first use; generative: the transformers model
    eager: Optional[Callable[..., Any]]
    eager_source: Optional[Path]  # local folder of the source model, if it is here
    eager_note: Optional[str]  # why there is no eager comparison
    lock: threading.Lock = field(default_factory=threading.Lock)
    cache: dict[str, Any] = field(default_factory=dict)  # what a view loads on first use (SD: another pipeline class)

    @property
    def shapes(self) -> dict[str, int]:
        return self.manifest.shapes


def load(path: Path, demo_root: Path, trust_remote_code: bool = False) -> LoadedArtifact:
    """Load an artifact for the playground; NeuronExportError if it cannot run here. The eager
    source model runs its own code only with trust_remote_code (the person's consent, never the manifest's)."""
    manifest = read_manifest(path)
    view = artifact_view(manifest)
    if view is None:
        raise NeuronExportError(f"the playground has no view for {manifest.task} artifacts")
    generative = manifest.pipeline_class in GENERATION_CLASSES  # several graphs, one model class with generate()
    if manifest.is_pipeline and not generative:
        model, processor = _load_pipeline(path, manifest), None
    else:
        from neuron_export.modeling import model_class_for_artifact

        model = model_class_for_artifact(path).from_pretrained(path)
        processor = load_processor(model.config_path, manifest.model_type, manifest.shapes)
    eager, folder, note = None, None, None
    try:
        folder = source_folder(manifest, demo_root)
        if generative:
            eager = reference_generator(manifest, folder)
        elif not manifest.is_pipeline:  # an eager SD pipeline is big: loaded only when a run asks for it
            eager = reference_model(manifest, folder, trust_remote_code=trust_remote_code)
    except NeuronExportError as error:
        note = f"No eager PyTorch comparison: {error}"
        if manifest.options.trust_remote_code and not trust_remote_code:
            note = f"No eager PyTorch comparison: {manifest.source} runs code of its own; allow it above to compare."
    return LoadedArtifact(path, manifest, view, model, processor, eager, folder, note)


def _load_pipeline(path: Path, manifest: Manifest):
    """The Neuron*Pipeline the artifact runs by default (its source's class: txt2img, or img2img for a refiner)."""
    import neuron_export
    from neuron_export.diffusion.requests import artifact_pipeline_spec

    pipeline_class = getattr(neuron_export, artifact_pipeline_spec(manifest).class_name)
    pipeline = pipeline_class.from_pretrained(path)
    pipeline.set_progress_bar_config(disable=True)  # its bars would go to the server's console
    return pipeline




@dataclass
class RunStats:
    compiled_s: Optional[float] = None  # median per call (per image for Stable Diffusion); None until measured
    eager_s: Optional[float] = None
    max_abs_diff: Optional[float] = None  # largest |compiled - eager| over the outputs both returned
    unit: str = "call"
    notes: list[str] = field(default_factory=list)
    method: str = ""  # how the times were measured, in words
    noisy: bool = False  # no speed-up to show: the calls' spread is larger than the difference, or the host is busy
    seconds_per_step: dict[str, Optional[float]] = field(default_factory=dict)  # Stable Diffusion: by side, the median denoising step
    # Times both models the benchmark's way and fills in the fields above; run once, after the result is shown.
    measure: Optional[Callable[[], None]] = field(default=None, repr=False, compare=False)

    @property
    def speedup(self) -> Optional[float]:
        return self.eager_s / self.compiled_s if self.eager_s and self.compiled_s else None


def measure_speed(loaded: LoadedArtifact, batches: list[dict[str, torch.Tensor]], stats: RunStats) -> None:
    """Time the compiled model and eager PyTorch as the benchmark does (alternate.py): warm-up calls, then
    timed calls alternating between the two in rounds, in this process (the same threads for both), on
    the same inputs padded to the compiled shape: the work the compiled model does whatever the input's length."""
    padded = [loaded.model.pad_inputs(batch)[0] for batch in batches]
    calls = [lambda: [loaded.model(**batch) for batch in padded]]
    if loaded.eager is not None:
        calls.append(lambda: [loaded.eager(**batch) for batch in padded])
    rounds: list[int] = []
    load = os.getloadavg()[0]  # before this measure's own threads add to it
    busy = busy_host_note(load)  # then no speed-up is shown: time no more rounds than the budget allows
    with torch.inference_mode():
        started = time.perf_counter()
        for _ in range(WARMUP_CALLS):
            for call in calls:
                call()
        # A turn is one untimed call and its timed ones (2 a round): slow models get one timed call a round.
        round_s = 3 * (time.perf_counter() - started) / WARMUP_CALLS
        iterations = TIMED_CALLS if round_s * ROUNDS < TIMING_BUDGET_S else ROUNDS
        timings = alternate([functools.partial(time_calls, call) for call in calls], iterations, ROUNDS,
                            on_round=lambda done, _: rounds.append(done), deadline=started + TIMING_BUDGET_S,
                            min_rounds=1 if busy else MIN_ROUNDS)
    compiled = timings[0][0]
    stats.compiled_s = percentile(compiled, 50)
    shape = " x ".join(str(size) for size in next(iter(padded[0].values())).shape)
    stats.method = (f"Median of {counted(len(compiled), 'call')} per side, alternating in {counted(len(rounds), 'round')} "
                    f"after {WARMUP_CALLS} warm-up calls, "
                    f"{torch.get_num_threads()} threads for both, as the Benchmark page measures; both sides run the input "
                    f"padded to the compiled shape ({shape}).")
    if len(timings) > 1:
        eager = timings[1][0]
        stats.eager_s = percentile(eager, 50)
        if too_noisy(compiled, eager):
            stats.noisy = True
            stats.method += (f" Too noisy to tell which is faster: the calls' spread ({_ms(max(spread(compiled), spread(eager)))} "
                             f"between quartiles) is larger than the difference ({_ms(abs(stats.compiled_s - stats.eager_s))}); "
                             "the Benchmark page times more calls.")
    if busy:
        stats.noisy = stats.eager_s is not None
        stats.notes.append(busy)



def counted(number: int, noun: str) -> str:
    """"1 call", "3 calls": the method sentence is read by people, not parsed."""
    return f"{number} {noun}{'' if number == 1 else 's'}"

def busy_host_note(load: float) -> Optional[str]:
    """Why timings are slow and erratic when other work (the load average) wants more cores than our threads
    leave free, or None."""
    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    if load <= cores - threads + 1:
        return None
    waiting = f", and with {threads} threads every parallel step waits for its slowest thread" if threads > 1 else ""
    return (f"This host is busy (load {load:.1f} on {cores} cores): both sides share the CPU with other work{waiting}, "
            "so the times are longer and vary more than on an idle host, and no speed-up is shown: try again when it is idle.")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def _eager_inputs(encoded: dict[str, torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The tokenizer's tensors the compiled model takes; masks and segment ids it left out get transformers' defaults."""
    main = encoded[names[0]]
    defaults = {"attention_mask": torch.ones_like, "token_type_ids": torch.zeros_like}
    missing = [n for n in names if n not in encoded and n not in defaults]
    if missing:
        raise NeuronExportError(f"the tokenizer does not produce {', '.join(missing)}, which the model takes")
    return {n: encoded[n] if n in encoded else defaults[n](main) for n in names}


def _max_abs_diff(compiled: dict[str, Any], eager: dict[str, Any]) -> Optional[float]:
    diffs = [
        float((compiled[name].detach().float().cpu() - tensor.detach().float().cpu()).abs().max())
        for name, tensor in eager.items()
        if isinstance(compiled.get(name), torch.Tensor) and compiled[name].shape == tensor.shape and tensor.numel()
    ]
    return max(diffs) if diffs else None


def bucket_note(compiled: Any) -> Optional[str]:
    """Which bucket served the latest call of a bucketed compiled model, in words (None for one static shape)."""
    if not getattr(compiled, "buckets", None) or compiled.last_bucket is None:
        return None
    axes = " x ".join(compiled.bucketed_axes).replace("_", " ")
    return f"Served by the {axes} {compiled.last_bucket} bucket (compiled: {', '.join(r.name for r in compiled.records)})."


def run_both(loaded: LoadedArtifact, batches: list[dict[str, torch.Tensor]]) -> tuple[list[Any], RunStats]:
    """Run the compiled model (and eager PyTorch) once on each batch and compare their outputs; the
    stats' measure() times them afterwards."""
    with torch.inference_mode():
        compiled = [loaded.model(**batch) for batch in batches]
    stats = RunStats()
    stats.notes += [note] if (note := bucket_note(getattr(loaded.model, "compiled", None))) else []
    if loaded.eager is not None:
        names = loaded.manifest.input_names
        with torch.inference_mode():
            eager = [loaded.eager(**_eager_inputs(batch, names)) for batch in batches]
        diffs = [d for d in map(_max_abs_diff, compiled, eager) if d is not None]
        stats.max_abs_diff = max(diffs) if diffs else None
    stats.measure = functools.partial(measure_speed, loaded, batches, stats)
    return compiled, stats


def placement(loaded: LoadedArtifact) -> list[tuple[str, list[int], list[int]]]:
    """(component, NeuronCores its manifest asks for, NeuronCores it runs on here) of a loaded Neuron
    artifact; [] for portable ones. The SD UNet asks for a copy on cores 0 and 1 (CFG's halves side by side)."""
    if not loaded.manifest.is_neuron:
        return []
    if hasattr(loaded.model, "runtime"):  # a generative model: its prompt / decode (or encoder / decoder) graphs
        runtime = loaded.model.runtime
        graphs = [*getattr(runtime, "prefills", []), *(getattr(runtime, n, None) for n in ("decode", "encoder", "decoder"))]
        models = {graph.path.name: graph for graph in graphs if graph is not None}
    elif not loaded.manifest.is_pipeline:
        models = {loaded.manifest.task: loaded.model.compiled}
    else:
        models = {}
        for module in loaded.model.components.values():
            for compiled in (getattr(module, "compiled", None), getattr(module, "encoder_model", None)):
                if compiled is not None:
                    models[compiled.manifest.component] = compiled
    return [(name, compiled.manifest.neuron_cores or [0], compiled.cores) for name, compiled in models.items()]


def require(text: str, what: str) -> str:
    """The stripped text, or the one-line error asking for `what`."""
    if not text or not text.strip():
        raise NeuronExportError(f"Enter {what} first.")
    return text.strip()


def label_name(config, index: int) -> str:
    """A class index's label in the model config (LABEL_i when it has none)."""
    return str((config.id2label or {}).get(index, f"LABEL_{index}"))
