"""Timing one generate() call token by token: a streamer that notes when each new token comes out.

Used by the playground (time to first token, tokens/s, streamed text) and the benchmark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from transformers.generation.streamers import BaseStreamer


@dataclass
class Timing:
    """One generate() call: the whole call, and when each new token came out."""

    seconds: float
    token_times: list[float] = field(default_factory=list)  # seconds from the call's start

    @property
    def tokens(self) -> int:
        return len(self.token_times)

    @property
    def first_token_s(self) -> Optional[float]:
        return self.token_times[0] if self.token_times else None

    @property
    def per_token_s(self) -> Optional[float]:
        """Mean time per token after the first (the decode step)."""
        if len(self.token_times) < 2:
            return None
        return (self.token_times[-1] - self.token_times[0]) / (len(self.token_times) - 1)

    @property
    def tokens_per_s(self) -> Optional[float]:
        return self.tokens / self.seconds if self.seconds and self.tokens else None


class TimingStreamer(BaseStreamer):
    """Records when each new token of the first row arrives (generate() first puts the prompt, which
    is skipped) and passes the text so far, decoded by `tokenizer`, to `on_text`."""

    def __init__(self, tokenizer: Any = None, on_text: Optional[Callable[[str], None]] = None):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.start = time.perf_counter()
        self.prompt_seen = False
        self.tokens: list[int] = []
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.tokens += value.view(-1)[:1].tolist()  # the first row: the views generate one text at a time
        self.times.append(time.perf_counter() - self.start)
        if self.on_text is not None:
            self.on_text(self.tokenizer.decode(self.tokens, skip_special_tokens=True))

    def end(self) -> None:
        """Nothing to flush: every put() already passed the text on."""


def timed_generation(generate: Callable[..., Any], inputs: dict[str, Any], settings: dict[str, Any], tokenizer=None,
                     on_text: Optional[Callable[[str], None]] = None) -> tuple[list[int], Timing]:
    """Run generate(**inputs, **settings) with a TimingStreamer: the first row's new tokens and their timing."""
    streamer = TimingStreamer(tokenizer, on_text)
    with torch.inference_mode():
        generate(**inputs, **settings, streamer=streamer)
    return streamer.tokens, Timing(time.perf_counter() - streamer.start, streamer.times)
