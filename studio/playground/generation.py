"""Generation views: a chat with a decoder LLM, a text-to-text box (T5), an audio transcript (Whisper).

Every run streams or returns the compiled model's text with its time to first token, tokens/s and
time per token, and (unless turned off) runs transformers' own generate on the eager source model
with the same prompt and settings, the same seed when sampling, and says whether the tokens match.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from neuron_export.errors import NeuronExportError, first_line
from neuron_export.generation.timing import Timing, timed_generation

from .core import LoadedArtifact, require

SAMPLE_RATE = 16000  # what Whisper's feature extractor takes
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


def read_audio(upload: Any) -> np.ndarray:
    """A WAV upload (PCM, any rate, mono or stereo) as 16 kHz mono floats; without one, a sample clip."""
    if upload is None:
        return sample_audio()
    data = upload.getvalue() if hasattr(upload, "getvalue") else upload.read_bytes()
    try:
        with wave.open(io.BytesIO(data)) as clip:
            rate, channels, width, frames = clip.getframerate(), clip.getnchannels(), clip.getsampwidth(), clip.readframes(clip.getnframes())
    except (wave.Error, EOFError) as error:
        raise NeuronExportError(f"cannot read this audio: {first_line(error)} (upload a PCM WAV file)") from None
    kinds = {1: (np.uint8, 128.0, 128.0), 2: (np.int16, 0.0, 32768.0), 4: (np.int32, 0.0, 2.0**31)}
    if width not in kinds:
        raise NeuronExportError(f"cannot read this audio: {8 * width}-bit samples (upload 8, 16 or 32-bit PCM WAV)")
    dtype, offset, scale = kinds[width]
    samples = (np.frombuffer(frames, dtype=dtype).astype(np.float32) - offset) / scale
    samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE and len(samples):
        samples = np.interp(np.arange(0, len(samples), rate / SAMPLE_RATE), np.arange(len(samples)), samples).astype(np.float32)
    return samples


def sample_audio(seconds: float = 1.0) -> np.ndarray:
    """A generated clip to try a transcriber without an upload: a rising whistle with a little noise."""
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    rng = np.random.RandomState(SEED)
    return (0.5 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.05 * rng.randn(len(t))).astype(np.float32)


def transcribe(loaded: LoadedArtifact, upload: Any, settings: dict[str, Any], compare: bool = True) -> tuple[np.ndarray, Generated]:
    """The audio and Whisper's transcript of it (the feature extractor pads or cuts it to its window)."""
    audio = read_audio(upload)
    features = loaded.processor.feature_extractor
    window = features.n_samples / features.sampling_rate
    encoded = loaded.processor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    result = _run(loaded, {"input_features": encoded.input_features}, settings, compare)
    if len(audio) > features.n_samples:
        result.notes.append(f"The audio lasts {len(audio) / SAMPLE_RATE:.1f} s: only its first {window:g} s were transcribed.")
    return audio, result
