"""generate() on the compiled graphs: a runtime (runtime.py) driven by the token loop (decoding.py).

Inputs and outputs are transformers': a decoder LM's prompt batch may be padded on either side (its
attention mask says where the tokens are; they run right-padded here, at the same positions
transformers gives them), and the result is the prompt as given followed by the new tokens.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from transformers import GenerationConfig

from ..errors import InputMismatchError
from .decoding import Decoded, decode, decoding_plan
from .runtime import DecoderRuntime, EncoderDecoderRuntime


def new_token_budget(config: GenerationConfig, prefix_length: int) -> int:
    """How many tokens to generate: max_new_tokens, else max_length minus the prefix (transformers' rule)."""
    if config.max_new_tokens is not None:
        budget = int(config.max_new_tokens)
    else:
        budget = int(config.max_length) - prefix_length
    if budget < 1:
        raise InputMismatchError(f"max_length {config.max_length} leaves no room after the {prefix_length} tokens already "
                                 "there; pass max_new_tokens")
    return budget


def prompt_rows(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> list[list[int]]:
    """Each row's real tokens (where the attention mask is 1), whatever side the padding is on."""
    if input_ids.dim() != 2:
        raise InputMismatchError(f"input_ids must be (batch, length); got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        return input_ids.tolist()
    if attention_mask.shape != input_ids.shape:
        raise InputMismatchError(f"attention_mask {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}")
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]


def generate_decoder(runtime: DecoderRuntime, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
                     config: GenerationConfig, streamer: Any = None) -> Decoded:
    rows = prompt_rows(input_ids, attention_mask)
    budget = new_token_budget(config, input_ids.shape[1])
    runtime.check_room([len(row) for row in rows], budget)
    plan = decoding_plan(config, input_ids.shape[1], budget, attention_mask)
    return decode(plan, input_ids, lambda: runtime.start(rows), runtime.step, streamer)


def generate_encoder_decoder(runtime: EncoderDecoderRuntime, encoder_inputs: dict[str, torch.Tensor], decoder_prompt: torch.Tensor,
                             config: GenerationConfig, streamer: Any = None) -> Decoded:
    """decoder_prompt (b, k): the decoder's first tokens (the start token, Whisper's language / task tokens)."""
    budget = new_token_budget(config, decoder_prompt.shape[1])
    runtime.check_room(decoder_prompt.shape[0], decoder_prompt.shape[1] + budget)
    plan = decoding_plan(config, decoder_prompt.shape[1], budget)

    def first() -> torch.Tensor:
        runtime.start(encoder_inputs)
        for column in range(decoder_prompt.shape[1]):
            logits = runtime.step(decoder_prompt[:, column])
        return logits

    return decode(plan, decoder_prompt, first, runtime.step, streamer)
