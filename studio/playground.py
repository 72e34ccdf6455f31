"""The Playground's logic: run a compiled artifact on a person's input, task by task, next to eager PyTorch.

`load(path, demo_root)` gives a LoadedArtifact: the compiled model (a neuron_export.modeling class, which pads
to the compiled shape, or a Neuron Stable Diffusion pipeline), the tokenizer / image processor saved with it,
and, when the artifact's source model can be loaded here, the eager PyTorch model it was compiled from. The
task functions turn text or images into the task's natural result plus RunStats (compiled and eager latency,
how far apart their outputs are). Callers share LoadedArtifacts between threads: hold `.lock` while calling.
Nothing here imports streamlit.
"""

from __future__ import annotations

import html
import inspect
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from neuron_export import read_manifest
from neuron_export.errors import NeuronExportError, first_line

TEXT_TASKS = ("text-classification", "token-classification", "question-answering", "fill-mask", "feature-extraction",
              "multiple-choice")
DIFFUSION_TASKS = ("stable-diffusion", "stable-diffusion-xl")
PLAYGROUND_TASKS = TEXT_TASKS + ("image-classification",) + DIFFUSION_TASKS
TIMED_CALLS = 5  # latency: median of up to this many calls after one warm-up call (whose result is returned)
TIMING_BUDGET_S = 2.0  # ... stopping early once the timed calls took this long
MAX_ANSWER_TOKENS = 30
TOP_K = 5


def playground_task(manifest: dict[str, Any]) -> Optional[str]:
    """The playground view of an artifact: its task, or None when the playground has no view for it."""
    task = manifest.get("task")
    inputs = manifest.get("inputs") or [{}]
    if task == "feature-extraction" and inputs[0].get("name") == "pixel_values":
        return None  # image features: no natural view
    return task if task in PLAYGROUND_TASKS else None


def random_weights_demo(manifest: dict[str, Any]) -> bool:
    """Whether the artifact was compiled from a built-in demo model with random weights."""
    from neuron_export.demo import DEMO_MODELS

    demo = DEMO_MODELS.get(manifest.get("source") or "")
    return demo is not None and demo.random_weights


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


@dataclass
class LoadedArtifact:
    path: Path
    manifest: dict[str, Any]
    task: str
    model: Any  # a NeuronModel, or a Neuron Stable Diffusion pipeline
    processor: Any  # tokenizer or image processor; None for pipelines (they hold their tokenizers)
    eager: Optional[Callable[..., Any]]  # named tensors -> {output: tensor}; SD: the diffusers pipeline, loaded on first use
    eager_source: Optional[Path]  # local folder of the source model, if it is here
    eager_note: Optional[str]  # why there is no eager comparison
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def shapes(self) -> dict[str, int]:
        return self.manifest.get("shapes", {})


# ---- loading ------------------------------------------------------------------------------------


def load(path: Path, demo_root: Path) -> LoadedArtifact:
    """Load an artifact for the playground; NeuronExportError if it cannot run here."""
    manifest = read_manifest(path)
    task = playground_task(manifest)
    if task is None:
        raise NeuronExportError(f"the playground has no view for {manifest.get('task')} artifacts")
    if task in DIFFUSION_TASKS:
        import neuron_export

        pipeline_class = neuron_export.NeuronStableDiffusionXLPipeline if task == "stable-diffusion-xl" else neuron_export.NeuronStableDiffusionPipeline
        model, processor = pipeline_class.from_pretrained(path), None
        model.set_progress_bar_config(disable=True)  # its bars would go to the server's console
    else:
        from neuron_export.modeling import model_class_for_artifact

        model = model_class_for_artifact(path).from_pretrained(path)
        processor = _load_processor(model.config_path, task)
    eager, folder, note = None, None, None
    try:
        folder = eager_source_folder(manifest, demo_root)
        if task not in DIFFUSION_TASKS:  # an eager SD pipeline is big: loaded only when a run asks for it
            eager = _load_eager_module(manifest, folder)
    except NeuronExportError as error:
        note = f"No eager PyTorch comparison: {error}"
    return LoadedArtifact(path, manifest, task, model, processor, eager, folder, note)


def _load_processor(folder: Path, task: str):
    import transformers

    auto = transformers.AutoImageProcessor if task == "image-classification" else transformers.AutoTokenizer
    try:
        return auto.from_pretrained(folder)
    except Exception as error:  # transformers raises many types for missing / broken files
        kind = "image processor" if task == "image-classification" else "tokenizer"
        raise NeuronExportError(f"the artifact's {kind} files cannot be loaded: {first_line(error)}") from None


def eager_source_folder(manifest: dict[str, Any], demo_root: Path) -> Path:
    """The local folder of the model an artifact was compiled from; never downloads."""
    source = manifest.get("source") or ""
    if source.startswith("demo:"):
        from neuron_export.demo import resolve_demo

        return resolve_demo(source, root=demo_root)
    folder = Path(source).expanduser()
    if folder.is_dir():
        return folder
    from neuron_export.sources import HUB_ID, HUB_PATTERNS

    if not source or source.startswith((".", "/", "~")) or not HUB_ID.match(source):
        raise NeuronExportError(f"its source model {source or '(unknown)'} is no longer at that path")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, cache_dir=manifest.get("options", {}).get("cache_dir"),
                                      allow_patterns=HUB_PATTERNS, local_files_only=True))
    except Exception as error:  # not cached: LocalEntryNotFoundError, OSError, ...
        raise NeuronExportError(f"{source} is not in the local Hugging Face cache ({first_line(error)})") from None


def _load_eager_module(manifest: dict[str, Any], folder: Path):
    from neuron_export.benchmark import eager_module

    module = eager_module({**manifest, "source": str(folder)}).to(manifest["device"])
    input_names = [spec["name"] for spec in manifest["inputs"]]
    output_names = list(manifest["outputs"])

    def run(**tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(output_names, module(*[tensors[name] for name in input_names])))

    return run


def _load_eager_pipeline(manifest: dict[str, Any], folder: Path):
    import diffusers

    pipeline_class = getattr(diffusers, manifest.get("pipeline_class") or "DiffusionPipeline", diffusers.DiffusionPipeline)
    extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in inspect.signature(pipeline_class.__init__).parameters else {}
    try:
        pipeline = pipeline_class.from_pretrained(folder, local_files_only=True, **extra)
    except Exception as error:  # diffusers raises many types for missing / broken files
        raise NeuronExportError(f"cannot load the eager pipeline from {folder}: {first_line(error)}") from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# ---- running and timing -------------------------------------------------------------------------


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
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


def _run(loaded: LoadedArtifact, batches: list[dict[str, torch.Tensor]]) -> tuple[list[Any], RunStats]:
    """Run the compiled model (and eager PyTorch) on each batch; latency of the whole list, outputs compared."""
    compiled, compiled_s = _timed(lambda: [loaded.model(**batch) for batch in batches])
    stats = RunStats(compiled_s)
    if loaded.eager is not None:
        names = [spec["name"] for spec in loaded.manifest["inputs"]]
        eager_batches = [_eager_inputs(batch, names) for batch in batches]
        eager, stats.eager_s = _timed(lambda: [loaded.eager(**batch) for batch in eager_batches])
        diffs = [d for d in map(_max_abs_diff, compiled, eager) if d is not None]
        stats.max_abs_diff = max(diffs) if diffs else None
    return compiled, stats


# ---- text ---------------------------------------------------------------------------------------


def _sequence_length(loaded: LoadedArtifact) -> int:
    return int(loaded.shapes["sequence_length"])


def _require(text: str, what: str) -> str:
    if not text or not text.strip():
        raise NeuronExportError(f"Enter {what} first.")
    return text.strip()


def _tokenize(loaded: LoadedArtifact, *texts: Any, notes: list[str], truncation: Any = True, **options: Any):
    """Tokenize, cut to the compiled sequence length (with a note when that drops tokens)."""
    length = _sequence_length(loaded)
    ids = loaded.processor(*texts)["input_ids"]
    longest = max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)
    if longest > length:
        notes.append(f"The input has {longest} tokens: it was cut to the compiled sequence length of {length}.")
    return loaded.processor(*texts, truncation=truncation, max_length=length, return_tensors="pt", **options)


def _label(config, index: int) -> str:
    return str((config.id2label or {}).get(index, f"LABEL_{index}"))


def classify_text(loaded: LoadedArtifact, text: str) -> tuple[list[tuple[str, float]], RunStats]:
    """Labels with probabilities, best first."""
    notes: list[str] = []
    encoded = _tokenize(loaded, _require(text, "some text"), notes=notes)
    (output,), stats = _run(loaded, [dict(encoded)])
    logits = output.logits[0].float().cpu()
    multi_label = getattr(loaded.model.config, "problem_type", None) == "multi_label_classification"
    probabilities = logits.sigmoid() if multi_label else logits.softmax(-1)
    stats.notes += notes
    scores = [(_label(loaded.model.config, i), float(p)) for i, p in enumerate(probabilities)]
    return sorted(scores, key=lambda item: -item[1]), stats


@dataclass(frozen=True)
class Segment:
    """A piece of the input text; `entity` set when the model tagged it."""

    text: str
    entity: Optional[str] = None
    score: Optional[float] = None


def _offsets_or_error(loaded: LoadedArtifact) -> None:
    if not getattr(loaded.processor, "is_fast", False):
        raise NeuronExportError("this view needs a fast tokenizer (tokenizer.json) to map tokens back to the text")


def tag_tokens(loaded: LoadedArtifact, text: str) -> tuple[list[Segment], RunStats]:
    """The text cut into plain and entity segments (B-/I- tags merged into one entity per span)."""
    _offsets_or_error(loaded)
    notes: list[str] = []
    text = _require(text, "some text")
    encoded = dict(_tokenize(loaded, text, notes=notes, return_offsets_mapping=True))
    offsets = encoded.pop("offset_mapping")[0].tolist()
    (output,), stats = _run(loaded, [encoded])
    probabilities = output.logits[0].float().cpu().softmax(-1)
    best, ids = probabilities.max(-1)
    spans: list[list] = []  # [start, end, entity, scores]
    for (start, end), label_id, score in zip(offsets, ids.tolist(), best.tolist()):
        if end <= start:
            continue  # special tokens
        label = _label(loaded.model.config, label_id)
        prefix, _, kind = label.partition("-") if label[:2] in ("B-", "I-") else ("", "", label)
        if kind == "O":
            continue
        previous = spans[-1] if spans else None
        joins = previous and previous[2] == kind and prefix != "B" and not text[previous[1]:start].strip(" ")
        subword = previous and previous[2] == kind and previous[1] == start
        if joins or subword:
            previous[1] = end
            previous[3].append(score)
        else:
            spans.append([start, end, kind, [score]])
    segments, cursor = [], 0
    for start, end, kind, scores in spans:
        if start > cursor:
            segments.append(Segment(text[cursor:start]))
        segments.append(Segment(text[start:end], kind, sum(scores) / len(scores)))
        cursor = end
    if cursor < len(text):
        segments.append(Segment(text[cursor:]))
    stats.notes += notes
    return segments, stats


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offsets in the context
    end: int
    score: float  # P(start) * P(end) over the context tokens


def answer_question(loaded: LoadedArtifact, question: str, context: str) -> tuple[Answer, RunStats]:
    """The most likely answer span of the context (at most MAX_ANSWER_TOKENS tokens)."""
    _offsets_or_error(loaded)
    notes: list[str] = []
    question, context = _require(question, "a question"), _require(context, "a context")
    too_long = NeuronExportError(
        f"the question fills the compiled sequence length ({_sequence_length(loaded)} tokens): shorten it to leave room for the context"
    )
    try:
        encoded = _tokenize(loaded, question, context, notes=notes, truncation="only_second", return_offsets_mapping=True)
    except Exception as error:  # the Rust tokenizer raises a bare Exception when only the question would fit
        if "Truncation error" in str(error):
            raise too_long from None
        raise
    sequence_ids = encoded.sequence_ids(0)
    offsets = encoded.pop("offset_mapping")[0].tolist()
    in_context = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not in_context:
        raise too_long
    (output,), stats = _run(loaded, [dict(encoded)])
    start_p = output.start_logits[0].float().cpu()[in_context].softmax(-1)
    end_p = output.end_logits[0].float().cpu()[in_context].softmax(-1)
    pair = start_p[:, None] * end_p[None, :]  # [start, end] over context tokens
    valid = torch.ones_like(pair, dtype=torch.bool).triu().tril(MAX_ANSWER_TOKENS - 1)
    flat = torch.where(valid, pair, torch.zeros_like(pair)).argmax()
    first, last = divmod(int(flat), len(in_context))
    start, end = offsets[in_context[first]][0], offsets[in_context[last]][1]
    stats.notes += notes
    return Answer(context[start:end], start, end, float(pair[first, last])), stats


def fill_mask(loaded: LoadedArtifact, text: str, top_k: int = TOP_K) -> tuple[list[tuple[str, float]], RunStats]:
    """The top-k tokens for the (first) mask token, with probabilities."""
    tokenizer = loaded.processor
    mask = tokenizer.mask_token
    if mask is None:
        raise NeuronExportError("this tokenizer has no mask token")
    text = _require(text, f"a sentence with {mask}")
    if mask not in text:
        raise NeuronExportError(f"put {mask} where the missing word goes")
    notes: list[str] = []
    encoded = _tokenize(loaded, text, notes=notes)
    positions = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    if not positions:
        raise NeuronExportError(f"{mask} is beyond the compiled sequence length ({_sequence_length(loaded)} tokens): move it earlier")
    if len(positions) > 1:
        notes.append(f"Only the first {mask} is filled.")
    (output,), stats = _run(loaded, [dict(encoded)])
    probabilities = output.logits[0, positions[0]].float().cpu().softmax(-1)
    values, ids = probabilities.topk(min(top_k, probabilities.numel()))
    stats.notes += notes
    return [(tokenizer.decode([i]).strip(), float(v)) for v, i in zip(values.tolist(), ids.tolist())], stats


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def embed_sentences(loaded: LoadedArtifact, text: str) -> tuple[list[str], torch.Tensor, torch.Tensor, RunStats]:
    """Sentences (one per line) -> (sentences, embeddings, cosine similarity matrix, stats).

    Runs as many batches of the compiled batch size as needed (any number at once with a dynamic batch).
    A sentence-transformers artifact gives its own pooled embedding; a plain encoder is mean-pooled."""
    sentences = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(sentences) < 2:
        raise NeuronExportError("Enter at least two sentences, one per line.")
    batch = len(sentences) if loaded.manifest.get("dynamic_batch") else int(loaded.shapes.get("batch_size", 1))
    notes: list[str] = []
    batches = [dict(_tokenize(loaded, sentences[i: i + batch], notes=notes, padding=True))
               for i in range(0, len(sentences), batch)]
    outputs, stats = _run(loaded, batches)
    pooled = []
    for encoded, output in zip(batches, outputs):
        if "sentence_embedding" in output:
            pooled.append(output["sentence_embedding"].float().cpu())
        else:
            pooled.append(_mean_pool(output["last_hidden_state"].float().cpu(), encoded["attention_mask"]))
    embeddings = torch.cat(pooled)
    normalized = torch.nn.functional.normalize(embeddings, dim=-1)
    stats.notes += sorted(set(notes))
    if len(batches) > 1:
        stats.notes.append(f"{len(sentences)} sentences ran as {len(batches)} calls of the compiled batch size {batch}.")
    return sentences, embeddings, normalized @ normalized.T, stats


def choose(loaded: LoadedArtifact, prompt: str, choices_text: str) -> tuple[list[tuple[str, float]], RunStats]:
    """A prompt and its choices (one per line) -> the probability of each choice, in the given order."""
    prompt = _require(prompt, "a prompt")
    choices = [line.strip() for line in (choices_text or "").splitlines() if line.strip()]
    limit = int(loaded.shapes.get("num_choices", len(choices)))
    if len(choices) < 2:
        raise NeuronExportError("Enter at least two choices, one per line.")
    if len(choices) > limit:
        raise NeuronExportError(f"this model was compiled for at most {limit} choices (--num_choices); you gave {len(choices)}")
    notes: list[str] = []
    encoded = _tokenize(loaded, [prompt] * len(choices), choices, notes=notes, padding=True)
    (output,), stats = _run(loaded, [{name: tensor.unsqueeze(0) for name, tensor in encoded.items()}])
    probabilities = output.logits[0].float().cpu().softmax(-1)
    stats.notes += notes
    return [(choice, float(p)) for choice, p in zip(choices, probabilities)], stats


# ---- images -------------------------------------------------------------------------------------


def sample_image(size: int = 224):
    """A generated picture (sky, sun, hills, a house) to try an image classifier without an upload."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):  # sky gradient
        draw.line([(0, y), (size, y)], fill=(90 + y * 100 // size, 150 + y * 60 // size, 235))
    s = size / 224
    draw.ellipse([160 * s, 20 * s, 200 * s, 60 * s], fill=(255, 214, 64))
    draw.ellipse([-60 * s, 140 * s, 150 * s, 300 * s], fill=(76, 153, 0))
    draw.ellipse([90 * s, 150 * s, 300 * s, 300 * s], fill=(56, 130, 20))
    draw.rectangle([70 * s, 120 * s, 130 * s, 175 * s], fill=(200, 80, 60))
    draw.polygon([(62 * s, 122 * s), (100 * s, 88 * s), (138 * s, 122 * s)], fill=(120, 50, 40))
    draw.rectangle([92 * s, 145 * s, 108 * s, 175 * s], fill=(90, 60, 30))
    return image


def read_image(upload):
    """An uploaded image file (anything PIL opens) as RGB, or the sample picture when there is none."""
    if upload is None:
        return sample_image()
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(upload) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise NeuronExportError(f"cannot read this image: {first_line(error)}") from None


def classify_image(loaded: LoadedArtifact, image, top_k: int = TOP_K) -> tuple[list[tuple[str, float]], RunStats]:
    """Top labels of a PIL image, resized by the artifact's image processor to the compiled size."""
    if image is None:
        raise NeuronExportError("Upload an image (or use the sample) first.")
    size = getattr(loaded.processor, "size", None) or {}
    options = {}
    if {"height", "width"} <= set(size) and {"height", "width"} <= set(loaded.shapes):
        options["size"] = {"height": int(loaded.shapes["height"]), "width": int(loaded.shapes["width"])}
    try:
        encoded = loaded.processor(images=image.convert("RGB"), return_tensors="pt", **options)
    except Exception as error:  # PIL / processor errors on odd images
        raise NeuronExportError(f"cannot prepare this image: {first_line(error)}") from None
    (output,), stats = _run(loaded, [dict(encoded)])
    probabilities = output.logits[0].float().cpu().softmax(-1)
    values, ids = probabilities.topk(min(top_k, probabilities.numel()))
    return [(_label(loaded.model.config, i), float(v)) for v, i in zip(values.tolist(), ids.tolist())], stats


# ---- Stable Diffusion ---------------------------------------------------------------------------


def max_images(loaded: LoadedArtifact) -> int:
    """Images one prompt can ask for: what the pipeline was compiled for (more with a dynamic batch)."""
    compiled = int(loaded.shapes.get("batch_size", 1)) * int(loaded.shapes.get("num_images_per_prompt", 1))
    return max(compiled, 4) if loaded.manifest.get("dynamic_batch") else compiled


def generate_images(
    loaded: LoadedArtifact,
    prompt: str,
    negative_prompt: str = "",
    steps: int = 20,
    guidance: float = 7.5,
    seed: int = 0,
    num_images: int = 1,
    compare_eager: bool = True,
) -> tuple[list, RunStats]:
    """Images from the compiled pipeline, timed per image; with compare_eager, the eager pipeline runs the
    same request (same seed) for its time and the largest pixel difference (0..1 scale)."""
    prompt = _require(prompt, "a prompt")
    request = {
        "negative_prompt": negative_prompt.strip() or None, "num_inference_steps": int(steps),
        "guidance_scale": float(guidance), "num_images_per_prompt": int(num_images),
        "height": int(loaded.shapes["height"]), "width": int(loaded.shapes["width"]),
    }
    with torch.inference_mode():
        started = time.perf_counter()
        images = loaded.model(prompt, seed=int(seed), **request).images
        stats = RunStats((time.perf_counter() - started) / len(images), unit="image")
        if compare_eager and loaded.eager_source is not None:
            if loaded.eager is None:
                loaded.eager = _load_eager_pipeline(loaded.manifest, loaded.eager_source)
            started = time.perf_counter()
            eager_images = loaded.eager(prompt, generator=torch.Generator().manual_seed(int(seed)), **request).images
            stats.eager_s = (time.perf_counter() - started) / len(eager_images)
            stats.max_abs_diff = max(_pixel_diff(a, b) for a, b in zip(images, eager_images))
    return images, stats


def _pixel_diff(first, second) -> float:
    import numpy

    return float(numpy.abs(numpy.asarray(first, dtype=numpy.float32) - numpy.asarray(second, dtype=numpy.float32)).max() / 255)


# ---- rendering helpers (HTML for st.html; every piece of user text is escaped) ------------------

ENTITY_COLORS = ("#ffe082", "#a5d6a7", "#90caf9", "#f48fb1", "#ce93d8", "#ffab91", "#80deea", "#e6ee9c")


def entity_colors(segments: Sequence[Segment]) -> dict[str, str]:
    kinds = sorted({s.entity for s in segments if s.entity})
    return {kind: ENTITY_COLORS[i % len(ENTITY_COLORS)] for i, kind in enumerate(kinds)}


def entities_html(segments: Sequence[Segment]) -> str:
    """The text with each entity on a coloured background, its type in small caps after it."""
    colors = entity_colors(segments)
    parts = []
    for segment in segments:
        text = html.escape(segment.text)
        if segment.entity is None:
            parts.append(text)
        else:
            parts.append(
                f'<span title="{html.escape(segment.entity)} · {segment.score:.0%}" style="background:{colors[segment.entity]};'
                f'padding:0.1em 0.35em;border-radius:0.35em;margin:0 0.1em">{text}'
                f'<span style="font-size:0.7em;font-weight:600;margin-left:0.35em;opacity:0.75">{html.escape(segment.entity)}</span></span>'
            )
    return f'<div style="font-size:1.15rem;line-height:2.1">{"".join(parts)}</div>'


def highlight_html(context: str, start: int, end: int) -> str:
    """The context with the answer span highlighted."""
    before, answer, after = (html.escape(part) for part in (context[:start], context[start:end], context[end:]))
    return (f'<div style="font-size:1.1rem;line-height:1.9">{before}<mark style="background:#ffd54f;padding:0.1em 0.3em;'
            f'border-radius:0.3em;font-weight:600">{answer}</mark>{after}</div>')
