"""neuron_export.pipeline() against transformers.pipeline() on the eager model (labels equal, scores within 1e-5).

Budget: < 1 minute on 2 cores (torchscript exports of the tiny demos).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import transformers

from fresh_inputs import waveforms

from neuron_export import NeuronModelForSequenceClassification, export, pipeline
from neuron_export.demo import resolve_demo
from neuron_export.errors import NeuronExportError
from neuron_export.options import ExportOptions

TOLERANCE = 1e-5
TEXTS = ["the cat sat on the mat", "john smith lives in paris and works for google"]

def _images():
    from PIL import Image

    return [Image.fromarray((np.random.RandomState(seed).rand(40, 48, 3) * 255).astype("uint8")) for seed in range(2)]


def _clips():
    """Two clips shorter than the compiled 1600 samples, of different lengths."""
    return [clip[:length] for clip, length in zip(waveforms(2, 1600), (1500, 900))]


TEXT_SHAPES = {"sequence_length": 32}
AUDIO_SHAPES = {"audio_sequence_length": 1600}
# pipeline task -> (demo, export task, eager Auto class, pipeline inputs, call kwargs, export shapes)
CASES = {
    "text-classification": ("demo:tiny-bert", "text-classification", "AutoModelForSequenceClassification", TEXTS, {"top_k": None},
                            TEXT_SHAPES),
    "token-classification": ("demo:tiny-bert-ner", "token-classification", "AutoModelForTokenClassification", TEXTS,
                             {"aggregation_strategy": "simple", "ignore_labels": []}, TEXT_SHAPES),
    "fill-mask": ("demo:tiny-bert-mlm", "fill-mask", "AutoModelForMaskedLM", ["the cat sat on the [MASK]."], {"top_k": 4}, TEXT_SHAPES),
    "feature-extraction": ("demo:tiny-bert", "feature-extraction", "AutoModel", TEXTS, {}, TEXT_SHAPES),
    "image-classification": ("demo:tiny-vit", "image-classification", "AutoModelForImageClassification", _images, {"top_k": 3}, {}),
    "object-detection": ("demo:tiny-yolos", "object-detection", "AutoModelForObjectDetection", _images, {"threshold": 0.0}, {}),
    "image-segmentation": ("demo:tiny-beit-seg", "semantic-segmentation", "AutoModelForSemanticSegmentation", _images, {}, {}),
    "depth-estimation": ("demo:tiny-dpt", "depth-estimation", "AutoModelForDepthEstimation", _images, {}, {}),
    "zero-shot-image-classification": ("demo:tiny-clip", "zero-shot-image-classification", "AutoModelForZeroShotImageClassification",
                                       _images, {"candidate_labels": ["cat", "dog", "a red car"]},
                                       {"text_batch_size": 3, "sequence_length": 16}),
    "audio-classification": ("demo:tiny-wav2vec2-audio", "audio-classification", "AutoModelForAudioClassification", _clips,
                             {"top_k": 3}, AUDIO_SHAPES),
    "automatic-speech-recognition": ("demo:tiny-wav2vec2-ctc", "automatic-speech-recognition", "AutoModelForCTC", _clips, {},
                                     AUDIO_SHAPES),
}


def _preprocessors(task: str) -> list[tuple[str, str]]:
    """The pipeline keywords and Auto classes of the eager pipeline's preprocessors."""
    image = [("image_processor", "AutoImageProcessor")]
    audio = [("feature_extractor", "AutoFeatureExtractor")]
    return {"zero-shot-image-classification": [("tokenizer", "AutoTokenizer"), *image],
            "automatic-speech-recognition": [*audio, ("tokenizer", "AutoTokenizer")], "audio-classification": audio,
            }.get(task, image if CASES[task][3] is _images else [("tokenizer", "AutoTokenizer")])


def _assert_same(ours, theirs, path="result"):
    """Same structure, same labels / tokens / words, numbers within TOLERANCE (images: pixels within 1 of 255)."""
    from PIL import Image

    if isinstance(theirs, torch.Tensor):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=TOLERANCE, msg=lambda m: f"{path}: {m}")
    elif isinstance(theirs, Image.Image):
        difference = np.abs(np.asarray(ours, dtype="int16") - np.asarray(theirs, dtype="int16"))
        assert ours.size == theirs.size and difference.max() <= 1, path
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), path
        for index, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same(a, b, f"{path}[{index}]")
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), path
        for key in theirs:
            _assert_same(ours[key], theirs[key], f"{path}[{key!r}]")
    elif isinstance(theirs, (float, np.floating)) and not isinstance(theirs, bool):
        assert math.isclose(float(ours), float(theirs), abs_tol=TOLERANCE), f"{path}: {ours} != {theirs}"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """One torchscript artifact per pipeline task (batch 1, sequence 32)."""
    root = tmp_path_factory.mktemp("pipelines")
    made = {}
    for task, (demo, export_task, *_rest, shapes) in CASES.items():
        made[task] = export(demo, root / task, ExportOptions(task=export_task, backend="torchscript", **shapes)).artifact
    return made


@pytest.mark.parametrize("task", list(CASES))
def test_pipeline_matches_transformers_pipeline_on_the_eager_model(task, artifacts):
    demo, _, auto_class, inputs, call_kwargs, _ = CASES[task]
    inputs = inputs() if callable(inputs) else inputs
    folder = resolve_demo(demo)
    eager = getattr(transformers, auto_class).from_pretrained(folder).eval()
    parts = {keyword: getattr(transformers, auto).from_pretrained(folder) for keyword, auto in _preprocessors(task)}
    expected = transformers.pipeline(task, model=eager, device="cpu", **parts)(inputs, **call_kwargs)

    compiled = pipeline(task, model=artifacts[task])
    assert isinstance(compiled, transformers.Pipeline)
    _assert_same(compiled(inputs, **call_kwargs), expected)


def test_pipeline_takes_a_loaded_model_and_refuses_a_mismatched_task(artifacts):
    model = NeuronModelForSequenceClassification.from_pretrained(artifacts["text-classification"])
    assert pipeline("text-classification", model=model)(TEXTS[0])[0]["label"] in model.config.id2label.values()
    with pytest.raises(NeuronExportError, match="compiled for text-classification, not for fill-mask"):
        pipeline("fill-mask", model=model)
    with pytest.raises(NeuronExportError, match="removed the question-answering pipeline"):
        pipeline("question-answering", model=artifacts["text-classification"])


def test_an_image_processor_of_another_size_is_set_to_the_compiled_one(artifacts, tmp_path):
    # A real YOLOS processor keeps the aspect ratio (shortest edge 800); the artifact was compiled at 32 x 48.
    import shutil

    artifact = shutil.copytree(artifacts["object-detection"], tmp_path / "yolos")
    transformers.YolosImageProcessorPil().save_pretrained(artifact)
    folder = resolve_demo("demo:tiny-yolos")
    eager = transformers.AutoModelForObjectDetection.from_pretrained(folder).eval()
    fixed = transformers.YolosImageProcessorPil(size={"height": 32, "width": 48})
    expected = transformers.pipeline("object-detection", model=eager, image_processor=fixed, device="cpu")(_images(), threshold=0.0)
    _assert_same(pipeline("object-detection", model=artifact)(_images(), threshold=0.0), expected)
