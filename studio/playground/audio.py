"""Audio views: a recording or a WAV file (or a generated sample) classified or transcribed by the artifact.

Audio is decoded with the standard library (PCM WAV, which st.audio_input records), mixed to mono,
resampled to the feature extractor's rate and cut to the compiled length (with a note); the model
classes pad shorter clips.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np

from neuron_export.errors import NeuronExportError, first_line

from .core import TOP_K, LoadedArtifact, RunStats, label_name, run_both

SAMPLE_SECONDS = 1.0


@dataclass
class Clip:
    """Mono samples in [-1, 1] at `sampling_rate`, and where they came from."""

    samples: np.ndarray
    sampling_rate: int
    source: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sampling_rate


def sample_audio(sampling_rate: int = 16000, seconds: float = SAMPLE_SECONDS) -> Clip:
    """A generated clip (a rising two-tone chirp with a little noise) to try a model without a recording."""
    t = np.arange(int(sampling_rate * seconds)) / sampling_rate
    rng = np.random.RandomState(0)
    chirp = np.sin(2 * np.pi * (220 + 330 * t) * t) + 0.5 * np.sin(2 * np.pi * (440 + 660 * t) * t)
    envelope = np.minimum(1.0, 8 * t) * np.minimum(1.0, 8 * (seconds - t))
    return Clip((0.4 * envelope * chirp + 0.02 * rng.randn(len(t))).astype("float32"), sampling_rate, "the generated sample")


def read_wav(data: bytes, name: str = "the recording") -> Clip:
    """PCM WAV bytes (8, 16, 24 or 32 bit; any rate; mono or not) as a mono clip."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, OSError) as error:
        raise NeuronExportError(f"cannot read {name} as a PCM WAV file: {first_line(error)}") from None
    if width == 3:  # 24-bit: widen to 32-bit little-endian
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3)
        frames = np.concatenate([np.zeros((len(raw), 1), np.uint8), raw], axis=1).tobytes()
        width = 4
    kinds = {1: (np.uint8, 128, 128), 2: (np.int16, 0, 2**15), 4: (np.int32, 0, 2**31)}
    dtype, offset, scale = kinds[width]
    samples = (np.frombuffer(frames, dtype=dtype).astype("float32") - offset) / scale
    if not len(samples):
        raise NeuronExportError(f"{name} holds no audio")
    return Clip(samples.reshape(-1, channels).mean(axis=1), rate, name)


def resample(clip: Clip, rate: int) -> Clip:
    """Linear-interpolation resampling (enough for a playground; real pipelines use a proper filter)."""
    if clip.sampling_rate == rate:
        return clip
    count = max(1, round(len(clip.samples) * rate / clip.sampling_rate))
    positions = np.arange(count) * (clip.sampling_rate / rate)  # output sample k is at time k / rate
    samples = np.interp(positions, np.arange(len(clip.samples)), clip.samples).astype("float32")
    return Clip(samples, rate, clip.source)


def read_audio(recording, upload, sampling_rate: int = 16000) -> Clip:
    """The recording (st.audio_input), else the uploaded WAV, else the generated sample; at `sampling_rate`."""
    for given, name in ((recording, "the recording"), (upload, getattr(upload, "name", "the file"))):
        if given is not None:
            return resample(read_wav(given.getvalue(), name), sampling_rate)
    return sample_audio(sampling_rate)


def _extractor(loaded: LoadedArtifact):
    return getattr(loaded.processor, "feature_extractor", loaded.processor)


def _encode(loaded: LoadedArtifact, clip: Clip, notes: list[str]):
    """The feature extractor's input for the clip, cut to the compiled length (with a note)."""
    samples = clip.samples
    limit = loaded.shapes.get("audio_sequence_length")
    if limit and len(samples) > limit:
        notes.append(f"The clip has {len(samples)} samples ({clip.seconds:.2f} s): it was cut to the compiled "
                     f"{limit} ({limit / clip.sampling_rate:.2f} s).")
        samples = samples[:limit]
    return dict(_extractor(loaded)(samples, sampling_rate=clip.sampling_rate, return_tensors="pt"))


def _clip(loaded: LoadedArtifact, recording, upload) -> Clip:
    return read_audio(recording, upload, int(getattr(_extractor(loaded), "sampling_rate", 16000)))


def classify_audio(loaded: LoadedArtifact, recording, upload, top_k: int = TOP_K) -> tuple[Clip, list[tuple[str, float]], RunStats]:
    """The audio-labels view: the clip and its top labels with probabilities."""
    clip = _clip(loaded, recording, upload)
    notes: list[str] = []
    (output,), stats = run_both(loaded, [_encode(loaded, clip, notes)])
    stats.notes += notes
    probabilities = output.logits[0].float().cpu().softmax(-1)
    values, ids = probabilities.topk(min(top_k, probabilities.numel()))
    return clip, [(label_name(loaded.model.config, i), float(v)) for v, i in zip(values.tolist(), ids.tolist())], stats


def transcribe(loaded: LoadedArtifact, recording, upload) -> tuple[Clip, str, RunStats]:
    """The transcript view: greedy CTC decoding (best token per frame, repeats and blanks removed)."""
    tokenizer = getattr(loaded.processor, "tokenizer", None)
    if tokenizer is None:
        raise NeuronExportError("this artifact has no CTC tokenizer (vocab.json) to turn its output into text")
    clip = _clip(loaded, recording, upload)
    notes: list[str] = []
    (output,), stats = run_both(loaded, [_encode(loaded, clip, notes)])
    stats.notes += notes
    return clip, tokenizer.decode(output.logits[0].argmax(-1).tolist()), stats
