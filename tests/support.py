"""Helpers shared by test modules of every folder (a module, not a conftest: conftest names clash)."""

import io
import os
import subprocess
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd=None, timeout: int = 600):
    """Run the real `neuron-export` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "neuron_export", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": python_path()},
    )


def python_path() -> str:
    """PYTHONPATH for a subprocess: this checkout first, then what this process was given (an installed SDK)."""
    return os.pathsep.join([str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def wav_bytes(samples, rate: int, channels: int = 1) -> bytes:
    """16-bit PCM WAV bytes of float samples in [-1, 1] (numpy), each repeated on `channels` channels."""
    import numpy as np

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.repeat(samples, channels) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


class Upload(io.BytesIO):
    """What st.audio_input / st.file_uploader return: bytes with a name."""

    name = "clip.wav"


def sentence_transformers_clip(folder: Path, seed: int = 5) -> Path:
    """A sentence-transformers CLIP folder saved by sentence-transformers itself (its CLIPModel module,
    as clip-ViT-B-32), around the tiny CLIP built offline from its config (weights re-drawn: O(1) outputs)."""
    import warnings

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import CLIPModel

    from neuron_export.demo import build_tiny_model

    clip = build_tiny_model("clip", "feature-extraction", folder.parent / f"{folder.name}-clip", seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CLIPModel module is deprecated in favour of Transformer; the hub's folders use it
        SentenceTransformer(modules=[CLIPModel(str(clip))], device="cpu").save(str(folder))
    return folder
