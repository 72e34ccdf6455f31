"""Generation views: a chat with a decoder LLM, a text-to-text box (T5), an audio transcript (Whisper).

Every run streams or returns the compiled model's text with its time to first token, tokens/s and
time per token, and (unless turned off) runs transformers' own generate on the eager source model
with the same prompt and settings, the same seed when sampling, and says whether the tokens match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from neuron_export.errors import NeuronExportError
from neuron_export.generation.timing import Timing, timed_generation

from .audio import Clip, read_audio
from .core import LoadedArtifact, require

SEED = 0  # of sampling, on both sides
# T5's task prefixes (its pre-training tasks), shown as choices.
T5_TASKS = {"summarize": "summarize: ", "translate English to German": "translate English to German: ",
            "translate English to French": "translate English to French: ", "none (raw text)": ""}


@dataclass
class Generated:
    text: str
    tokens: list[int]
    compiled: Timing
    eager: Optional[Timing] = None
    eager_tokens: Optional[list[int]] = None
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_match(self) -> Optional[bool]:
        return None if self.eager_tokens is None else self.tokens == self.eager_tokens

    @property
    def first_difference(self) -> Optional[int]:
        """The first new token where compiled and eager differ (None when they agree)."""
        if not self.eager_tokens or self.tokens_match:
            return None
        return next((i for i, (a, b) in enumerate(zip(self.tokens, self.eager_tokens)) if a != b), min(len(self.tokens), len(self.eager_tokens)))


def _timed(generate: Callable[..., Any], inputs: dict[str, Any], settings: dict[str, Any], tokenizer,
           on_text: Optional[Callable[[str], None]] = None) -> tuple[list[int], Timing]:
    torch.manual_seed(SEED)  # the same draws on both sides when sampling
    return timed_generation(generate, inputs, settings, tokenizer, on_text)


def _run(loaded: LoadedArtifact, inputs: dict[str, Any], settings: dict[str, Any], compare: bool,
         on_text: Optional[Callable[[str], None]] = None) -> Generated:
    """The compiled model's generation (streamed to on_text), then the eager model's on the same inputs."""
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    tokens, timing = _timed(loaded.model.generate, inputs, settings, tokenizer, on_text)
    result = Generated(tokenizer.decode(tokens, skip_special_tokens=True), tokens, timing)
    if compare and loaded.eager is not None:
        result.eager_tokens, result.eager = _timed(loaded.eager.generate, inputs, settings, tokenizer)
    return result


def prompt_inputs(tokenizer, messages: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    """The conversation as the model's chat template writes it, or the last message's text when the
    tokenizer has no template."""
    if not messages or not messages[-1].get("content", "").strip():
        raise NeuronExportError("Enter a message first.")
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    return dict(tokenizer(messages[-1]["content"], return_tensors="pt"))


def chat(loaded: LoadedArtifact, messages: list[dict[str, str]], settings: dict[str, Any], compare: bool = True,
         on_text: Optional[Callable[[str], None]] = None) -> Generated:
    """The assistant's reply to the conversation, streamed to on_text as it is generated."""
    inputs = prompt_inputs(loaded.processor, messages)
    result = _run(loaded, inputs, settings, compare, on_text)
    if not getattr(loaded.processor, "chat_template", None):
        result.notes.append("The tokenizer has no chat template: the model continued the last message's text.")
    return result


def text_to_text(loaded: LoadedArtifact, text: str, task: str, settings: dict[str, Any], compare: bool = True) -> Generated:
    """T5 on `text` with one of its task prefixes (T5_TASKS)."""
    prompt = T5_TASKS.get(task, "") + require(text, "some text")
    encoded = loaded.processor(prompt, return_tensors="pt")
    length = int(loaded.shapes["sequence_length"])
    if encoded.input_ids.shape[1] > length:
        raise NeuronExportError(f"The input has {encoded.input_ids.shape[1]} tokens; the model was compiled for {length}.")
    return _run(loaded, dict(encoded), settings, compare)


def transcribe_speech(loaded: LoadedArtifact, recording: Any, upload: Any, settings: dict[str, Any],
                      compare: bool = True) -> tuple[Clip, Generated]:
    """The clip (audio.read_audio: recording, else WAV upload, else the generated sample) and Whisper's
    transcript of it (the feature extractor pads or cuts it to its window)."""
    features = loaded.processor.feature_extractor
    clip = read_audio(recording, upload, features.sampling_rate)
    encoded = loaded.processor(clip.samples, sampling_rate=clip.sampling_rate, return_tensors="pt")
    result = _run(loaded, {"input_features": encoded.input_features}, settings, compare)
    if len(clip.samples) > features.n_samples:
        window = features.n_samples / features.sampling_rate
        result.notes.append(f"The audio lasts {clip.seconds:.1f} s: only its first {window:g} s were transcribed.")
    return clip, result
