"""Text views: each turns a person's text into its task's natural result, plus RunStats.

Inputs are tokenized by the artifact's tokenizer and cut to the compiled sequence length (with a
note when that drops tokens); the model classes pad them to the compiled shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from neuron_export.errors import NeuronExportError

from .core import TOP_K, LoadedArtifact, RunStats, label_name, require, run_both

MAX_ANSWER_TOKENS = 30


def _sequence_length(loaded: LoadedArtifact) -> int:
    return int(loaded.shapes["sequence_length"])


def _tokenize(loaded: LoadedArtifact, *texts: Any, notes: list[str], truncation: Any = True, **options: Any):
    """Tokenize, cut to the compiled sequence length (with a note when that drops tokens)."""
    length = _sequence_length(loaded)
    ids = loaded.processor(*texts)["input_ids"]
    longest = max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)
    if longest > length:
        notes.append(f"The input has {longest} tokens: it was cut to the compiled sequence length of {length}.")
    return loaded.processor(*texts, truncation=truncation, max_length=length, return_tensors="pt", **options)


def classify_text(loaded: LoadedArtifact, text: str) -> tuple[list[tuple[str, float]], RunStats]:
    """Labels with probabilities, best first."""
    notes: list[str] = []
    encoded = _tokenize(loaded, require(text, "some text"), notes=notes)
    (output,), stats = run_both(loaded, [dict(encoded)])
    logits = output.logits[0].float().cpu()
    multi_label = getattr(loaded.model.config, "problem_type", None) == "multi_label_classification"
    probabilities = logits.sigmoid() if multi_label else logits.softmax(-1)
    stats.notes += notes
    scores = [(label_name(loaded.model.config, i), float(p)) for i, p in enumerate(probabilities)]
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
    text = require(text, "some text")
    encoded = dict(_tokenize(loaded, text, notes=notes, return_offsets_mapping=True))
    offsets = encoded.pop("offset_mapping")[0].tolist()
    (output,), stats = run_both(loaded, [encoded])
    probabilities = output.logits[0].float().cpu().softmax(-1)
    best, ids = probabilities.max(-1)
    labels = [label_name(loaded.model.config, label_id) for label_id in ids.tolist()]
    stats.notes += notes
    return _segments(text, _entity_spans(text, offsets, labels, best.tolist())), stats


def _entity_spans(text: str, offsets: list, labels: list[str], scores: list[float]) -> list[list]:
    """[start, end, entity, scores] per entity: a B- tag starts one, I- tags and subwords extend it."""
    spans: list[list] = []
    for (start, end), label, score in zip(offsets, labels, scores):
        if end <= start:
            continue  # special tokens
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
    return spans


def _segments(text: str, spans: list[list]) -> list[Segment]:
    """The whole text as segments: the entity spans, and the plain text between them."""
    segments, cursor = [], 0
    for start, end, kind, scores in spans:
        if start > cursor:
            segments.append(Segment(text[cursor:start]))
        segments.append(Segment(text[start:end], kind, sum(scores) / len(scores)))
        cursor = end
    if cursor < len(text):
        segments.append(Segment(text[cursor:]))
    return segments


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
    question, context = require(question, "a question"), require(context, "a context")
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
    (output,), stats = run_both(loaded, [dict(encoded)])
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
    text = require(text, f"a sentence with {mask}")
    if mask not in text:
        raise NeuronExportError(f"put {mask} where the missing word goes")
    notes: list[str] = []
    encoded = _tokenize(loaded, text, notes=notes)
    positions = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    if not positions:
        raise NeuronExportError(f"{mask} is beyond the compiled sequence length ({_sequence_length(loaded)} tokens): move it earlier")
    if len(positions) > 1:
        notes.append(f"Only the first {mask} is filled.")
    (output,), stats = run_both(loaded, [dict(encoded)])
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
    batch = len(sentences) if loaded.manifest.dynamic_batch else loaded.manifest.batch_size
    notes: list[str] = []
    batches = [dict(_tokenize(loaded, sentences[i: i + batch], notes=notes, padding=True))
               for i in range(0, len(sentences), batch)]
    outputs, stats = run_both(loaded, batches)
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
    prompt = require(prompt, "a prompt")
    choices = [line.strip() for line in (choices_text or "").splitlines() if line.strip()]
    limit = int(loaded.shapes.get("num_choices", len(choices)))
    if len(choices) < 2:
        raise NeuronExportError("Enter at least two choices, one per line.")
    if len(choices) > limit:
        raise NeuronExportError(f"this model was compiled for at most {limit} choices (--num_choices); you gave {len(choices)}")
    notes: list[str] = []
    encoded = _tokenize(loaded, [prompt] * len(choices), choices, notes=notes, padding=True)
    (output,), stats = run_both(loaded, [{name: tensor.unsqueeze(0) for name, tensor in encoded.items()}])
    probabilities = output.logits[0].float().cpu().softmax(-1)
    stats.notes += notes
    return [(choice, float(p)) for choice, p in zip(choices, probabilities)], stats
