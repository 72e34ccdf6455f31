"""Helpers shared by test modules of every folder (a module, not a conftest: conftest names clash)."""

import contextlib
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


@contextlib.contextmanager
def local_ray_cluster(num_cpus: int = 2):
    """(GCS address, temp dir) of a Ray cluster on loopback owned by this process (ray.init), stopped
    afterwards with ray.shutdown(); fails if any of its processes is left running. Never `ray stop`."""
    import tempfile
    import time

    import ray

    from neuron_export.farm.cluster import cluster_processes, start_local
    from neuron_export.farm.janitor import remove_folder

    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = python_path()  # its workers import this checkout
    temp_dir = tempfile.mkdtemp(prefix="nxray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    start_local(num_cpus=num_cpus, temp_dir=temp_dir, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address, temp_dir
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        deadline = time.time() + 30
        while cluster_processes(temp_dir) and time.time() < deadline:
            time.sleep(0.5)
        left = [p.pid for p in cluster_processes(temp_dir)]
        remove_folder(temp_dir)
        assert not left, f"Ray processes left running: {left}"


def build_o1_classifier(folder: Path) -> Path:
    """A tiny BERT classifier saved in `folder` whose logits are O(1) (default init gives ~0.01:
    any padding leak or wrong weight would hide under a 1e-4 comparison)."""
    import torch

    from neuron_export.demo import make_tiny_model

    model, tokenizer = make_tiny_model("bert", "text-classification", seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def assert_buckets_equal_transformers(artifact, source, lengths) -> None:
    """Each sequence-length bucket of a classifier artifact gives eager transformers' logits (O(1), asserted)."""
    import torch
    import transformers

    from neuron_export import load_artifact

    eager = transformers.AutoModelForSequenceClassification.from_pretrained(source).eval()
    model = load_artifact(artifact)
    for length in lengths:
        ids = torch.randint(5, 90, (1, length), generator=torch.Generator().manual_seed(length))
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        with torch.no_grad():
            expected = eager(**inputs).logits
        got = model.bucket_model(str(length))(**{n: inputs[n] for n in model.manifest.input_names})
        got = got[0] if isinstance(got, (tuple, list)) else next(iter(got.values()))
        assert expected.abs().max() > 0.1 and torch.allclose(got, expected, atol=1e-4)
