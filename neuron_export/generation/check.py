"""Validation of a generative artifact: whole greedy generations against transformers' generate.

Held-out prompts of several lengths (random tokens of the vocabulary, a fixed seed) are generated
by the eager model with transformers' own generate and by the compiled graphs with the same
settings. The report holds three checks: the prompt graph's logits (the first token) and the
decode graph's logits (every later token) within atol, and the greedy tokens equal. Logits are
compared while both sides have produced the same tokens; where the tokens part, the reference's
two best logits must be within 2 x atol of each other (a tie the tolerance allows, noted) or the
check fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import transformers

from ..validation import OutputCheck, ValidationReport, error_histogram
from .decoding import Decoded, generation_settings
from .generate import generate_decoder, generate_encoder_decoder
from .runtime import DecoderRuntime, EncoderDecoderRuntime

NEW_TOKENS = 8  # per held-out generation (fewer when the cache is short)
SEED = 1


class _Comparison:
    """Differences of one kind of output, summed over generations."""

    def __init__(self, name: str):
        self.name = name
        self.diffs: list[torch.Tensor] = []

    def add(self, got: torch.Tensor, want: torch.Tensor) -> None:
        self.diffs.append((got.float() - want.float()).abs().flatten())

    def check(self, atol: float, shape: list[int]) -> OutputCheck:
        diff = torch.cat(self.diffs) if self.diffs else torch.zeros(0)
        compared = diff.numel() > 0
        return OutputCheck(self.name, shape, shape, True, float(diff.max()) if compared else None,
                           float(diff.mean()) if compared else None, atol, error_histogram(diff))


def _compare_generation(ours: Decoded, theirs: Any, prefix: int, atol: float, logits: dict[str, _Comparison],
                        notes: list[str]) -> tuple[int, int]:
    """Add one generation's logits to the comparisons; (tokens compared, tokens that differ beyond a tie)."""
    want, got = theirs.sequences[:, prefix:], ours.sequences[:, prefix:]
    steps = min(want.shape[1], got.shape[1])
    differ = (want[:, :steps] != got[:, :steps]).any(0).nonzero()
    last = int(differ[0]) if len(differ) else steps - 1  # logits agree in context up to here
    for step in range(last + 1):
        logits["prefill" if step == 0 else "decode"].add(ours.logits[step], theirs.logits[step])
    if not len(differ) and want.shape[1] == got.shape[1]:
        return steps, 0
    if len(differ):
        reference = theirs.logits[last].float()
        top = reference.topk(2, dim=-1).values
        gap = float((top[:, 0] - top[:, 1]).min())
        if gap <= 2 * atol:
            notes.append(f"tokens part at new token {last + 1}, where the reference's two best logits are {gap:.2g} apart "
                         f"(a tie within 2 x atol {atol:g}): not counted")
            return steps, 0
    return steps, steps - last


def _report(component: str, logits: dict[str, _Comparison], vocab: int, compared: int, wrong: int, atol: float,
            atol_source: str, runs: list, notes: list[str]) -> ValidationReport:
    names = ["prefill logits", "decode logits", "greedy tokens"]
    outputs = [logits["prefill"].check(atol, [vocab]), logits["decode"].check(atol, [vocab])]
    fraction = wrong / compared if compared else 0.0
    outputs.append(OutputCheck("greedy tokens", [compared], [compared], True, float(wrong > 0), fraction, 0.0,
                               error_histogram(torch.tensor([float(wrong > 0)]))))
    return ValidationReport(component, atol, atol_source, names, names, outputs, runs, notes)


def _held_out(compare: Callable[[torch.Tensor, torch.Tensor], tuple], rows: int, lengths: list[int], vocab: int,
              specials: set[int]) -> None:
    """Run `compare(ids, mask)` on batches of random prompts (left-padded, as transformers pads for generation)."""
    generator = torch.Generator().manual_seed(SEED)
    allowed = torch.tensor([i for i in range(vocab) if i not in specials])
    for length in lengths:
        row_lengths = [max(1, length - index * (length // rows + 1)) for index in range(rows)]
        ids = torch.zeros(rows, length, dtype=torch.long)
        mask = torch.zeros(rows, length, dtype=torch.long)
        for row, size in enumerate(row_lengths):
            ids[row, length - size:] = allowed[torch.randint(len(allowed), (size,), generator=generator)]
            mask[row, length - size:] = 1
        compare(ids, mask)


def _settings(new_tokens: int) -> dict[str, Any]:
    return dict(max_new_tokens=new_tokens, do_sample=False, output_logits=True, return_dict_in_generate=True)


def _specials(config) -> set[int]:
    return {int(t) for name in ("pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id")
            for t in (getattr(config, name, None) if isinstance(getattr(config, name, None), list) else [getattr(config, name, None)])
            if t is not None}


def check_decoder(folder: Path, *, eager, config, atol: float, atol_source: str) -> ValidationReport:
    """Generations of the decode graph in `folder` (its prompt graphs beside it) against eager generate."""
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    runtime = DecoderRuntime.load(folder.parent, sorted(p.name for p in folder.parent.iterdir() if p.is_dir()), pad)
    new = max(1, min(NEW_TOKENS, runtime.cache_length // 4))
    longest = min(runtime.prompt_lengths[-1], runtime.cache_length - new)
    lengths = sorted({1, max(1, longest // 2), longest})
    logits, notes, runs, counts = {"prefill": _Comparison("prefill logits"), "decode": _Comparison("decode logits")}, [], [], [0, 0]
    settings = _settings(new)

    def compare(ids: torch.Tensor, mask: torch.Tensor) -> None:
        with torch.no_grad():
            theirs = eager.generate(input_ids=ids, attention_mask=mask, pad_token_id=pad, **settings)
        ours = generate_decoder(runtime, ids, mask, generation_settings(eager.generation_config, None, {"pad_token_id": pad, **settings}))
        compared, wrong = _compare_generation(ours, theirs, ids.shape[1], atol, logits, notes)
        counts[0] += compared
        counts[1] += wrong
        runs.append({"input_ids": list(ids.shape), "new_tokens": [compared]})

    _held_out(compare, runtime.batch_size, lengths, int(config.vocab_size), _specials(config))
    return _report(folder.name, logits, int(config.vocab_size), counts[0], counts[1], atol, atol_source, runs, notes)


def check_encoder_decoder(folder: Path, *, eager, config, atol: float, atol_source: str) -> ValidationReport:
    """Generations of the decoder graph in `folder` (the encoder graph beside it) against transformers'
    generic generate (GenerationMixin's: no model-specific prompt such as Whisper's language tokens)."""
    runtime = EncoderDecoderRuntime.load(folder.parent, {"input_ids": config.pad_token_id or 0})
    new = max(1, min(NEW_TOKENS, runtime.cache_length - 1))
    logits, notes, runs, counts = {"prefill": _Comparison("encoder + first token"), "decode": _Comparison("decode logits")}, [], [], [0, 0]
    settings = _settings(new)
    start = int(config.decoder_start_token_id)

    def compare(inputs: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            theirs = transformers.GenerationMixin.generate(eager, **inputs, **settings)
        prompt = torch.full((theirs.sequences.shape[0], 1), start, dtype=torch.long)
        ours = generate_encoder_decoder(runtime, inputs, prompt, generation_settings(eager.generation_config, None, settings))
        compared, wrong = _compare_generation(ours, theirs, 1, atol, logits, notes)
        counts[0] += compared
        counts[1] += wrong
        runs.append({name: list(t.shape) for name, t in inputs.items()})

    specs = runtime.encoder.inputs
    if "input_features" in specs:
        generator = torch.Generator().manual_seed(SEED)
        for _ in range(2):
            compare({"input_features": torch.randn(specs["input_features"].shape, generator=generator)})
    else:
        length = int(specs["input_ids"].shape[1])
        _held_out(lambda ids, mask: compare({"input_ids": ids.flip(1), "attention_mask": mask.flip(1)}),
                  runtime.batch_size, sorted({1, max(1, length // 2), length}), int(config.vocab_size), _specials(config))
    return _report(folder.name, logits, int(config.vocab_size), counts[0], counts[1], atol, atol_source, runs, notes)
