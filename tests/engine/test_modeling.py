"""NeuronModelForXXX against transformers' eager models on the tiny demos (fixed seed) and the real MiniLM.

Budget: < 4 minutes on 2 cores (torchscript for most; two inductor compiles).
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
import transformers

from neuron_export import (
    NeuronModelForFeatureExtraction,
    NeuronModelForImageClassification,
    NeuronModelForMaskedLM,
    NeuronModelForMultipleChoice,
    NeuronModelForQuestionAnswering,
    NeuronModelForSentenceTransformers,
    NeuronModelForSequenceClassification,
    NeuronModelForTokenClassification,
)
from neuron_export.demo import build_tiny_text_model, minilm_path, resolve_demo
from neuron_export.errors import ArtifactError, InputMismatchError, NeuronExportError, ValidationFailedError

SENTENCES = ["the cat sat on the mat", "hello world, what a wonderful day it was in paris with john and mary"]
QUESTION = "where did the cat sit?"
ATOL = 1e-5  # the tiny random models have logits of ~0.01: padding leaks show at 1e-4


def _image(seed: int):
    from PIL import Image

    return Image.fromarray((np.random.RandomState(seed).rand(40, 48, 3) * 255).astype("uint8"))


def _text(tokenizer, batch: int):
    return dict(tokenizer(SENTENCES[:batch], padding=True, return_tensors="pt"))


def _question_answering(tokenizer, batch: int):
    return dict(tokenizer([QUESTION] * batch, SENTENCES[:batch], padding=True, return_tensors="pt"))


def _multiple_choice(tokenizer, batch: int):
    # `batch` questions with 2 choices each (the model is compiled for 3 choices)
    encoded = tokenizer([QUESTION] * 2 * batch, ["on the mat", "in paris"] * batch, padding=True, return_tensors="pt")
    return {k: v.view(batch, 2, -1) for k, v in encoded.items()}


def _images(processor, batch: int):
    return dict(processor(images=[_image(i) for i in range(batch)], return_tensors="pt"))


def _preprocessor(folder, make_inputs):
    if make_inputs is _images:
        return transformers.AutoImageProcessor.from_pretrained(folder)
    return transformers.AutoTokenizer.from_pretrained(folder)


# (NeuronModel class, demo, task given to export, eager Auto class, inputs, export options)
CASES = {
    "sequence-classification": (NeuronModelForSequenceClassification, "demo:tiny-bert", "AutoModelForSequenceClassification", _text, {}),
    "token-classification": (NeuronModelForTokenClassification, "demo:tiny-bert-ner", "AutoModelForTokenClassification", _text, {}),
    "masked-lm": (NeuronModelForMaskedLM, "demo:tiny-bert-mlm", "AutoModelForMaskedLM", _text, {}),
    "question-answering": (NeuronModelForQuestionAnswering, "demo:tiny-bert-qa", "AutoModelForQuestionAnswering", _question_answering, {}),
    "multiple-choice": (NeuronModelForMultipleChoice, "demo:tiny-roberta-mc", "AutoModelForMultipleChoice", _multiple_choice, {"num_choices": 3}),
    "image-classification": (NeuronModelForImageClassification, "demo:tiny-vit", "AutoModelForImageClassification", _images, {}),
    # a classifier checkpoint exported as its base model, with every layer's hidden states
    "feature-extraction": (NeuronModelForFeatureExtraction, "demo:tiny-bert", "AutoModel", _text, {"output_hidden_states": True}),
}
TEXT_SHAPES = {"batch_size": 2, "sequence_length": 32}


@pytest.fixture(scope="module")
def compiled():
    """Each (class, demo, options) is exported once per module."""
    made = {}

    def get(cls, demo, **options):
        key = (cls, demo, tuple(sorted(options.items())))
        if key not in made:
            made[key] = cls.from_pretrained(demo, export=True, **options)
        return made[key]

    return get


def _export_options(name: str, **extra):
    cls, demo, _, make_inputs, options = CASES[name]
    shapes = {"batch_size": 2} if make_inputs is _images else TEXT_SHAPES
    return {"backend": "torchscript", **shapes, **options, **extra}


def _eager(name: str):
    _, demo, auto_class, _, _ = CASES[name]
    folder = resolve_demo(demo)
    return getattr(transformers, auto_class).from_pretrained(folder).eval(), folder


def _assert_matches_eager(ours, eager_output):
    """Every output we return equals transformers' on the unpadded input (shape and values)."""
    for name, value in ours.items():
        expected = eager_output[name]
        if isinstance(value, tuple):
            assert len(value) == len(expected), name
            for got, want in zip(value, expected):
                torch.testing.assert_close(got, want, atol=ATOL, rtol=ATOL)
        else:
            torch.testing.assert_close(value, expected, atol=ATOL, rtol=ATOL, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("name", list(CASES))
def test_smaller_inputs_are_padded_and_match_transformers(name, compiled):
    cls, demo, _, make_inputs, _ = CASES[name]
    model = compiled(cls, demo, **_export_options(name))
    eager, folder = _eager(name)
    preprocessor = _preprocessor(folder, make_inputs)
    for batch in (1, 2):  # batch 1 < compiled 2; sequences always shorter than the compiled 32
        inputs = make_inputs(preprocessor, batch)
        with torch.no_grad():
            expected = eager(**inputs, output_hidden_states=name == "feature-extraction")
        ours = model(**inputs)
        if name != "feature-extraction":  # eager BertModel returns a ...AndCrossAttentions subclass
            assert type(ours).__name__ == type(expected).__name__
        _assert_matches_eager(ours, expected)
    if name in ("sequence-classification", "token-classification", "image-classification"):
        assert model.config.id2label == eager.config.id2label


@pytest.mark.parametrize("backend", ["torchscript", "inductor"])
def test_dynamic_batch_runs_a_batch_that_is_no_multiple_of_the_compiled_one(backend, compiled):
    model = compiled(NeuronModelForTokenClassification, "demo:tiny-bert-ner",
                     **_export_options("token-classification", backend=backend, dynamic_batch_size=True))
    eager, folder = _eager("token-classification")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = dict(tokenizer((SENTENCES * 3)[:5], padding=True, return_tensors="pt"))  # batch 5, compiled 2
    with torch.no_grad():
        expected = eager(**inputs)
    _assert_matches_eager(model(**inputs), expected)


def test_inductor_image_classification_pads_the_batch(compiled):
    model = compiled(NeuronModelForImageClassification, "demo:tiny-vit", **_export_options("image-classification", backend="inductor"))
    eager, folder = _eager("image-classification")
    inputs = _images(transformers.AutoImageProcessor.from_pretrained(folder), 1)
    with torch.no_grad():
        expected = eager(**inputs)
    _assert_matches_eager(model(**inputs), expected)


def test_inputs_beyond_the_compiled_shape_are_refused_with_the_compiled_shape(compiled):
    model = compiled(NeuronModelForSequenceClassification, "demo:tiny-bert", **_export_options("sequence-classification"))
    long = torch.ones(1, 40, dtype=torch.long)
    with pytest.raises(InputMismatchError, match=r"\(2, 32\).*sequence_length 40 > 32"):
        model(input_ids=long)
    with pytest.raises(InputMismatchError, match=r"batch_size 3 > 2.*dynamic_batch_size"):
        model(input_ids=torch.ones(3, 8, dtype=torch.long))
    with pytest.raises(InputMismatchError, match="unexpected input 'labels'"):
        model(input_ids=torch.ones(1, 8, dtype=torch.long), labels=torch.tensor([0]))

    vit = compiled(NeuronModelForImageClassification, "demo:tiny-vit", **_export_options("image-classification"))
    with pytest.raises(InputMismatchError, match=r"compiled for \(2, 3, 32, 32\) and height must be 32"):
        vit(pixel_values=torch.zeros(1, 3, 24, 32))


def test_missing_masks_default_like_transformers(compiled):
    model = compiled(NeuronModelForSequenceClassification, "demo:tiny-bert", **_export_options("sequence-classification"))
    eager, folder = _eager("sequence-classification")
    input_ids = transformers.AutoTokenizer.from_pretrained(folder)(SENTENCES[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = eager(input_ids=input_ids)
    _assert_matches_eager(model(input_ids=input_ids), expected)
    assert isinstance(model(input_ids=input_ids, return_dict=False), tuple)


def test_tokenizer_extras_the_model_does_not_take_are_dropped(tmp_path):
    folder = build_tiny_text_model("distilbert", "text-classification", tmp_path / "distilbert")
    model = NeuronModelForSequenceClassification.from_pretrained(folder, export=True, backend="torchscript", sequence_length=16)
    assert "token_type_ids" not in model.compiled.input_names
    inputs = dict(transformers.AutoTokenizer.from_pretrained(folder)(SENTENCES[0], return_tensors="pt", return_token_type_ids=True))
    assert "token_type_ids" in inputs
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = eager(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    _assert_matches_eager(model(**inputs), expected)


def test_save_and_load_round_trip_and_wrong_class_is_refused(compiled, tmp_path):
    model = compiled(NeuronModelForSequenceClassification, "demo:tiny-bert", **_export_options("sequence-classification"))
    saved = model.save_pretrained(tmp_path / "sst2_compiled")
    loaded = NeuronModelForSequenceClassification.from_pretrained(saved)
    eager, folder = _eager("sequence-classification")
    inputs = _text(transformers.AutoTokenizer.from_pretrained(saved), 1)  # the tokenizer travels with the artifact
    with torch.no_grad():
        expected = eager(**inputs)
    _assert_matches_eager(loaded(**inputs), expected)
    assert loaded.config.id2label == eager.config.id2label

    with pytest.raises(ArtifactError, match="text-classification.*NeuronModelForSequenceClassification"):
        NeuronModelForTokenClassification.from_pretrained(saved)
    with pytest.raises(NeuronExportError, match="export=True"):
        NeuronModelForSequenceClassification.from_pretrained(saved, batch_size=4)
    with pytest.raises(ArtifactError, match="pass export=True"):
        NeuronModelForSequenceClassification.from_pretrained(folder)  # a model folder, not an artifact
    with pytest.raises(NeuronExportError, match="unknown option.*sequence_lenght"):
        NeuronModelForSequenceClassification.from_pretrained("demo:tiny-bert", export=True, sequence_lenght=16)


def test_failed_validation_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the failed artifact is kept for inspection
    # bf16 everywhere cannot meet an fp32 tolerance of 1e-7
    with pytest.raises(ValidationFailedError, match="beyond atol"):
        NeuronModelForSequenceClassification.from_pretrained(
            "demo:tiny-bert", export=True, backend="torchscript", sequence_length=16, auto_cast="all", atol=1e-7
        )


def _mean_pooled_normalized(model, inputs):
    """sentence-transformers' all-MiniLM-L6-v2 recipe on eager transformers: masked mean, then L2 norm."""
    with torch.no_grad():
        tokens = model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)


def test_minilm_embeddings_match_eager_mean_pooling_and_rank_similar_sentences(compiled):
    model = compiled(NeuronModelForSentenceTransformers, "demo:minilm", backend="torchscript", batch_size=2,
                     sequence_length=32, dynamic_batch_size=True)
    sentences = ["A man is playing a guitar.", "Someone plays the guitar on stage.", "The stock market fell sharply today."]
    tokenizer = transformers.AutoTokenizer.from_pretrained(model.config_path)
    inputs = dict(tokenizer(sentences, padding=True, return_tensors="pt"))
    expected = _mean_pooled_normalized(transformers.AutoModel.from_pretrained(minilm_path()).eval(), inputs)
    output = model(**inputs)
    torch.testing.assert_close(output.sentence_embedding, expected, atol=1e-4, rtol=0)
    assert output.token_embeddings.shape[:2] == inputs["input_ids"].shape
    scores = output.sentence_embedding @ output.sentence_embedding.T
    assert scores[0, 1] > scores[0, 2] + 0.3 and scores[0, 1] > scores[1, 2] + 0.3

    with pytest.raises(ArtifactError, match="sentence-transformers.*NeuronModelForSentenceTransformers"):
        NeuronModelForFeatureExtraction.from_pretrained(model.path)
