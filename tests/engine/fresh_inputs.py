"""What a user feeds a compiled model: the artifact's own preprocessor (tokenizer, image processor,
feature extractor, CLIP processor) run on new data, at the compiled shapes. Shared by the export
matrix and the model-class tests; the architecture lists here are written out, not read from the
registry, so a wrong registry entry fails."""

from __future__ import annotations

import numpy as np
import torch
import transformers
from PIL import Image

TEXT_ARCHS = ("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "albert", "electra", "mpnet", "deberta-v2", "mobilebert",
              "deberta", "flaubert", "xlm", "roformer", "convbert", "esm", "modernbert", "phi")
VISION_ARCHS = ("vit", "deit", "convnext", "swin", "beit", "convnextv2", "cvt", "levit", "donut-swin", "dpt", "mobilenet_v2",
                "mobilevit", "yolos")
WAVEFORM_ARCHS = ("wav2vec2", "wavlm", "unispeech-sat", "hubert", "unispeech")
SPECTROGRAM_ARCHS = ("audio-spectrogram-transformer",)
TEXT_IMAGE_ARCHS = ("clip",)
SEQUENCE_LENGTH = 16
AUDIO_SAMPLES = 1600  # 0.1 s at 16 kHz
CLIP_LABELS = ("a photo of a cat", "a dog", "a red car")  # the compiled text batch
SAMPLING_RATE = 16000
SENTENCES = ["the quick brown fox jumped over the lazy dog", "paris is the capital of france", "i loved this movie",
             "where does mary live", "john was born in london"]


def export_shapes(arch: str, task: str) -> dict[str, int]:
    """The shape options of the matrix's exports (tiny: each export takes about a second)."""
    if arch in TEXT_ARCHS:
        return {"sequence_length": SEQUENCE_LENGTH, **({"num_choices": 2} if task == "multiple-choice" else {})}
    if arch in WAVEFORM_ARCHS:
        return {"audio_sequence_length": AUDIO_SAMPLES}
    if arch in TEXT_IMAGE_ARCHS and task != "image-classification":
        return {"text_batch_size": len(CLIP_LABELS), "sequence_length": SEQUENCE_LENGTH}
    return {}


def images(count: int, seed: int = 3) -> list:
    rng = np.random.RandomState(seed)
    return [Image.fromarray((rng.rand(40, 48, 3) * 255).astype("uint8")) for _ in range(count)]


def waveforms(count: int, samples: int, seed: int = 3) -> list[np.ndarray]:
    """Speech-like test signals: a few tones with noise, each clip different."""
    rng = np.random.RandomState(seed)
    t = np.arange(samples) / SAMPLING_RATE
    return [(0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.randn(samples)).astype("float32") for _ in range(count)]


def fresh_inputs(arch: str, task: str, artifact, batch_size: int = 1, seed: int = 3) -> dict[str, torch.Tensor]:
    """The artifact's own preprocessor on new data, at the compiled shapes."""
    if arch in VISION_ARCHS or (arch in TEXT_IMAGE_ARCHS and task == "image-classification"):
        processor = transformers.AutoImageProcessor.from_pretrained(artifact)
        return dict(processor(images(batch_size, seed), return_tensors="pt"))
    if arch in WAVEFORM_ARCHS + SPECTROGRAM_ARCHS:
        extractor = transformers.AutoFeatureExtractor.from_pretrained(artifact)
        return dict(extractor(waveforms(batch_size, AUDIO_SAMPLES, seed), sampling_rate=SAMPLING_RATE, return_tensors="pt"))
    if arch in TEXT_IMAGE_ARCHS:
        processor = transformers.AutoProcessor.from_pretrained(artifact)
        return dict(processor(text=list(CLIP_LABELS), images=images(batch_size, seed), padding="max_length",
                              max_length=SEQUENCE_LENGTH, return_tensors="pt"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(artifact)
    texts = [SENTENCES[(seed + i) % len(SENTENCES)] for i in range(batch_size)]
    pad = dict(padding="max_length", max_length=SEQUENCE_LENGTH, truncation=True, return_tensors="pt")
    if task == "multiple-choice":
        choices = ["yes it is", "no it is not"]
        encoded = tokenizer([t for t in texts for _ in choices], choices * batch_size, **pad)
        return {k: v.view(batch_size, len(choices), -1) for k, v in encoded.items()}
    if task == "question-answering":
        return dict(tokenizer(texts, ["who is it"] * batch_size, **pad))
    return dict(tokenizer(texts, **pad))
