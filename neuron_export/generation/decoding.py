"""generate()'s token loop for the compiled models, step for step as transformers' greedy search and
sampling do it: the same logits processors in the same order, argmax or torch.multinomial on their
output, finished rows padded, the same streamer calls. Beam search and the rarer processors are
refused by name rather than silently ignored.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from transformers import GenerationConfig
from transformers.generation import (
    LogitsProcessorList,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..errors import NeuronExportError

log = logging.getLogger("neuron_export")

# GenerationConfig fields whose non-default values ask for something this loop does not do.
UNSUPPORTED = {
    "num_beams": 1, "num_beam_groups": 1, "num_return_sequences": 1, "penalty_alpha": None, "no_repeat_ngram_size": None,
    "encoder_no_repeat_ngram_size": None, "bad_words_ids": None, "sequence_bias": None, "guidance_scale": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "min_p": None, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "top_h": None, "exponential_decay_length_penalty": None, "watermarking_config": None,
    "encoder_repetition_penalty": 1.0, "renormalize_logits": False, "output_attentions": False,
    "output_hidden_states": False, "assistant_model": None, "prompt_lookup_num_tokens": None, "stop_strings": None,
}
SUPPORTED = ("max_new_tokens", "max_length", "min_new_tokens", "min_length", "do_sample", "temperature", "top_k", "top_p",
             "repetition_penalty", "eos_token_id", "pad_token_id", "suppress_tokens", "begin_suppress_tokens",
             "return_dict_in_generate", "output_scores", "output_logits", "streamer")


def generation_settings(defaults: GenerationConfig, generation_config: Optional[GenerationConfig], kwargs: dict[str, Any]) -> GenerationConfig:
    """The call's GenerationConfig: the model's, replaced by `generation_config` when given, updated
    with the keyword arguments; anything this loop cannot honour is an error naming what it can."""
    config = copy.deepcopy(generation_config if generation_config is not None else defaults)
    unused = config.update(**kwargs)
    if unused:
        raise NeuronExportError(f"generate() got unexpected arguments {sorted(unused)}; it takes the inputs and {', '.join(SUPPORTED)}")
    asked = [name for name, default in UNSUPPORTED.items() if getattr(config, name, default) not in (default, None)]
    if asked:
        raise NeuronExportError(
            f"generate(): {', '.join(asked)} is not supported by the compiled model (greedy search and sampling only); "
            f"it takes {', '.join(SUPPORTED)}"
        )
    return config


def token_ids(value: Any) -> list[int]:
    """eos_token_id and friends: None, an int or a list of ints -> a list."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


@dataclass
class Plan:
    """How one generate() call decodes."""

    max_new_tokens: int
    processors: LogitsProcessorList
    do_sample: bool
    eos: list[int]
    pad: Optional[int]
    output_logits: bool = False
    output_scores: bool = False


def decoding_plan(config: GenerationConfig, prefix_length: int, max_new_tokens: int,
                  prefix_mask: Optional[torch.Tensor] = None) -> Plan:
    """The processors of transformers' _get_logits_processor that this loop supports, in its order.
    prefix_length: tokens in the sequence before the first generated one (prompt, or decoder prompt);
    prefix_mask: its attention mask, whose left padding the repetition penalty skips, as in transformers."""
    eos = token_ids(config.eos_token_id)
    pad = config.pad_token_id
    if pad is None and eos:
        pad = eos[0]  # transformers does the same (with a warning) when the model has no pad token
    eos_tensor = torch.tensor(eos) if eos else None
    processors = LogitsProcessorList()
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        padding = (prefix_mask != 0).int().argmax(dim=1) if prefix_mask is not None else None
        processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty, prompt_ignore_length=padding))
    if eos_tensor is not None and config.min_length:
        processors.append(MinLengthLogitsProcessor(config.min_length, eos_tensor))
    if eos_tensor is not None and config.min_new_tokens:
        processors.append(MinNewTokensLengthLogitsProcessor(prefix_length, config.min_new_tokens, eos_tensor))
    if config.suppress_tokens is not None:
        processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens))
    if config.begin_suppress_tokens is not None:
        processors.append(SuppressTokensAtBeginLogitsProcessor(config.begin_suppress_tokens, prefix_length))
    if config.do_sample:
        if config.temperature is not None and config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k is not None and config.top_k != 0:
            processors.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=1))
        if config.top_p is not None and config.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=1))
    return Plan(max_new_tokens, processors, bool(config.do_sample), eos, pad,
                bool(config.return_dict_in_generate and config.output_logits),
                bool(config.return_dict_in_generate and config.output_scores))


@dataclass
class Decoded:
    sequences: torch.Tensor  # the prefix then the generated tokens (finished rows padded)
    scores: list[torch.Tensor] = field(default_factory=list)  # processed, per step (output_scores)
    logits: list[torch.Tensor] = field(default_factory=list)  # raw, per step (output_logits)


def decode(plan: Plan, sequences: torch.Tensor, first: Callable[[], torch.Tensor], step: Callable[[torch.Tensor], torch.Tensor],
           streamer: Any = None) -> Decoded:
    """Generate up to plan.max_new_tokens tokens after `sequences` (b, T). first() gives the logits
    of the next token after the prefix (b, V); step(tokens) feeds the chosen tokens and gives the next logits."""
    if streamer is not None:
        streamer.put(sequences.cpu())
    unfinished = torch.ones(sequences.shape[0], dtype=torch.long)
    result = Decoded(sequences)
    logits = first()
    for generated in range(plan.max_new_tokens):
        logits = logits.float().cpu()
        scores = plan.processors(result.sequences, logits)
        if plan.output_logits:
            result.logits.append(logits)
        if plan.output_scores:
            result.scores.append(scores)
        if plan.do_sample:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            tokens = torch.argmax(scores, dim=-1)
        if plan.eos:
            tokens = tokens * unfinished + plan.pad * (1 - unfinished)
        result.sequences = torch.cat([result.sequences, tokens[:, None]], dim=-1)
        if streamer is not None:
            streamer.put(tokens.cpu())
        if plan.eos:
            unfinished = unfinished & ~torch.isin(tokens, torch.tensor(plan.eos))
        if not unfinished.any() or generated + 1 == plan.max_new_tokens:
            break
        logits = step(tokens)
    if streamer is not None:
        streamer.end()
    return result
