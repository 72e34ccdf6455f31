"""neuron_export.pipeline() against transformers.pipeline() on the eager model (labels equal, scores within 1e-5).

Budget: < 1 minute on 2 cores (torchscript exports of the tiny demos).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import transformers

from neuron_export import NeuronModelForSequenceClassification, export, pipeline
from neuron_export.demo import resolve_demo
from neuron_export.errors import NeuronExportError
from neuron_export.options import ExportOptions

TOLERANCE = 1e-5
TEXTS = ["the cat sat on the mat", "john smith lives in paris and works for google"]

# pipeline task -> (demo, export task, eager Auto class, pipeline inputs, call kwargs)
CASES = {
    "text-classification": ("demo:tiny-bert", "text-classification", "AutoModelForSequenceClassification", TEXTS, {"top_k": None}),
    "token-classification": ("demo:tiny-bert-ner", "token-classification", "AutoModelForTokenClassification", TEXTS,
                             {"aggregation_strategy": "simple", "ignore_labels": []}),
    "fill-mask": ("demo:tiny-bert-mlm", "fill-mask", "AutoModelForMaskedLM", ["the cat sat on the [MASK]."], {"top_k": 4}),
    "feature-extraction": ("demo:tiny-bert", "feature-extraction", "AutoModel", TEXTS, {}),
    "image-classification": ("demo:tiny-vit", "image-classification", "AutoModelForImageClassification", None, {"top_k": 3}),
}


def _images():
    from PIL import Image

    return [Image.fromarray((np.random.RandomState(seed).rand(40, 48, 3) * 255).astype("uint8")) for seed in range(2)]


def _assert_same(ours, theirs, path="result"):
    """Same structure, same labels / tokens / words, numbers within TOLERANCE."""
    if isinstance(theirs, (list, tuple)):
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
    for task, (demo, export_task, *_rest) in CASES.items():
        options = ExportOptions(task=export_task, backend="torchscript",
                                sequence_length=None if task == "image-classification" else 32)
        made[task] = export(demo, root / task, options).artifact
    return made


@pytest.mark.parametrize("task", list(CASES))
def test_pipeline_matches_transformers_pipeline_on_the_eager_model(task, artifacts):
    demo, _, auto_class, inputs, call_kwargs = CASES[task]
    inputs = inputs or _images()
    folder = resolve_demo(demo)
    eager = getattr(transformers, auto_class).from_pretrained(folder).eval()
    if task == "image-classification":
        preprocessor = {"image_processor": transformers.AutoImageProcessor.from_pretrained(folder)}
    else:
        preprocessor = {"tokenizer": transformers.AutoTokenizer.from_pretrained(folder)}
    expected = transformers.pipeline(task, model=eager, device="cpu", **preprocessor)(inputs, **call_kwargs)

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
