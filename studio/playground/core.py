"""The playground's core: loading an artifact (the compiled model, its preprocessor and the eager
PyTorch model it came from, via neuron_export.reference) and running both on the same input.

Callers share LoadedArtifacts between threads: hold `.lock` while calling. Nothing here imports streamlit.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from neuron_export import Manifest, read_manifest
from neuron_export.demo import DEMO_MODELS
from neuron_export.errors import NeuronExportError
from neuron_export.reference import reference_model, source_folder
from neuron_export.processors import load_processor
from neuron_export.registry import DIFFUSION_TASKS, modality_of_inputs, task_view

TIMED_CALLS = 5  # latency: median of up to this many calls after one warm-up call (whose result is returned)
TIMING_BUDGET_S = 2.0  # ... stopping early once the timed calls took this long
TOP_K = 5  # labels / tokens shown, best first


def artifact_view(manifest: Manifest) -> Optional[str]:
    """The kind of playground view of an artifact (registry.task_view), or None when it has none."""
    return task_view(manifest.task, modality_of_inputs(manifest.input_names), manifest.library)


def random_weights_demo(manifest: Manifest) -> bool:
    """Whether the artifact was compiled from a built-in demo model with random weights."""
    demo = DEMO_MODELS.get(manifest.source or "")
    return demo is not None and demo.random_weights


@dataclass
class LoadedArtifact:
    path: Path
    manifest: Manifest
    view: str  # the kind of playground view (registry TaskSpec.views)
    model: Any  # a NeuronModel, or a Neuron Stable Diffusion pipeline
    processor: Any  # tokenizer or image processor; None for pipelines (they hold their tokenizers)
    eager: Optional[Callable[..., Any]]  # named tensors -> {output: tensor}; SD: the diffusers pipeline, loaded on first use
    eager_source: Optional[Path]  # local folder of the source model, if it is here
    eager_note: Optional[str]  # why there is no eager comparison
    lock: threading.Lock = field(default_factory=threading.Lock)

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
    if manifest.is_pipeline:
        model, processor = _load_pipeline(path, manifest), None
    else:
        from neuron_export.modeling import model_class_for_artifact

        model = model_class_for_artifact(path).from_pretrained(path)
        processor = load_processor(model.config_path, manifest.model_type, manifest.shapes)
    eager, folder, note = None, None, None
    try:
        folder = source_folder(manifest, demo_root)
        if not manifest.is_pipeline:  # an eager SD pipeline is big: loaded only when a run asks for it
            eager = reference_model(manifest, folder, trust_remote_code=trust_remote_code)
    except NeuronExportError as error:
        note = f"No eager PyTorch comparison: {error}"
        if manifest.options.trust_remote_code and not trust_remote_code:
            note = f"No eager PyTorch comparison: {manifest.source} runs code of its own; allow it above to compare."
    return LoadedArtifact(path, manifest, view, model, processor, eager, folder, note)


def _load_pipeline(path: Path, manifest: Manifest):
    """The Neuron*Pipeline that generates from text with the compiled components."""
    import neuron_export

    pipeline_class = getattr(neuron_export, DIFFUSION_TASKS[manifest.task].text_to_image.class_name)
    pipeline = pipeline_class.from_pretrained(path)
    pipeline.set_progress_bar_config(disable=True)  # its bars would go to the server's console
    return pipeline




@dataclass
class RunStats:
    compiled_s: float  # per call (per image for Stable Diffusion)
    eager_s: Optional[float] = None
    max_abs_diff: Optional[float] = None  # largest |compiled - eager| over the outputs both returned
    unit: str = "call"
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> Optional[float]:
        return self.eager_s / self.compiled_s if self.eager_s and self.compiled_s else None


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """The first call's result (it warms up), and the median seconds of up to TIMED_CALLS more calls
    (fewer when they would take longer than TIMING_BUDGET_S)."""
    with torch.inference_mode():
        result = call()
        seconds: list[float] = []
        while len(seconds) < TIMED_CALLS and (not seconds or sum(seconds) < TIMING_BUDGET_S):
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
    return result, statistics.median(seconds)


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
    """Run the compiled model (and eager PyTorch) on each batch; latency of the whole list, outputs compared."""
    compiled, compiled_s = timed(lambda: [loaded.model(**batch) for batch in batches])
    stats = RunStats(compiled_s)
    stats.notes += [note] if (note := bucket_note(getattr(loaded.model, "compiled", None))) else []
    if loaded.eager is not None:
        names = loaded.manifest.input_names
        eager_batches = [_eager_inputs(batch, names) for batch in batches]
        eager, stats.eager_s = timed(lambda: [loaded.eager(**batch) for batch in eager_batches])
        diffs = [d for d in map(_max_abs_diff, compiled, eager) if d is not None]
        stats.max_abs_diff = max(diffs) if diffs else None
    return compiled, stats



def placement(loaded: LoadedArtifact) -> list[tuple[str, list[int], list[int]]]:
    """(component, NeuronCores its manifest asks for, NeuronCores it runs on here) of a loaded Neuron
    artifact; [] for portable ones. The SD UNet asks for a copy on cores 0 and 1 (CFG's halves side by side)."""
    if not loaded.manifest.is_neuron:
        return []
    if not loaded.manifest.is_pipeline:
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
