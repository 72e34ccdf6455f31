"""Every (architecture, task) pair of the registry, exported and checked against transformers eager.

Each pair is built as a tiny random-weight model (neuron_export.demo), exported in-process with the
fast torchscript backend, and then re-checked independently of the engine's own validation: the
artifact is loaded, run on fresh tokenizer / image-processor inputs made with the artifact's own
preprocessing files, and compared with the transformers Auto model loaded from the model folder.
A few inductor exports cover what is specific to it: dynamic batch and auto-cast.

Budget: about 3 minutes on 2 cores (70 torchscript exports at ~1.5 s, 2 inductor compiles).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from neuron_export import ExportOptions, export, load_artifact, read_validation
from neuron_export.demo import build_tiny_text_model, build_tiny_vision_model
from neuron_export.registry import ARCHITECTURES, supported_tasks

# Written out here rather than read from the engine's registry, so a wrong registry entry fails.
AUTO_CLASS = {
    "feature-extraction": "AutoModel",
    "fill-mask": "AutoModelForMaskedLM",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "multiple-choice": "AutoModelForMultipleChoice",
    "image-classification": "AutoModelForImageClassification",
}
MAIN_OUTPUTS = {
    "feature-extraction": {"last_hidden_state"},
    "fill-mask": {"logits"},
    "text-classification": {"logits"},
    "token-classification": {"logits"},
    "question-answering": {"start_logits", "end_logits"},
    "multiple-choice": {"logits"},
    "image-classification": {"logits"},
}
TEXT_ARCHS = ("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "albert", "electra", "mpnet", "deberta-v2", "mobilebert")
VISION_ARCHS = ("vit", "deit", "convnext", "swin", "beit")
SEQUENCE_LENGTH = 16
ATOL = 1e-4
PAIRS = [(arch, task) for arch in ARCHITECTURES for task in supported_tasks(arch)]


def test_the_matrix_is_complete():
    # The parametrization below is derived from the registry: pin it to the matrix.
    assert set(ARCHITECTURES) == set(TEXT_ARCHS + VISION_ARCHS)
    assert len(PAIRS) == len(TEXT_ARCHS) * 6 + len(VISION_ARCHS) * 2


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("matrix")


def build_model(arch: str, task: str, folder):
    if arch in VISION_ARCHS:
        return build_tiny_vision_model(arch, task, folder)
    return build_tiny_text_model(arch, task, folder)


def fresh_inputs(arch: str, task: str, artifact, batch_size: int = 1, seed: int = 3) -> dict[str, torch.Tensor]:
    """What a user would feed: the artifact's own tokenizer / image processor on new data, padded
    to the compiled shape."""
    if arch in VISION_ARCHS:
        processor = transformers.AutoImageProcessor.from_pretrained(artifact)
        rng = np.random.RandomState(seed)
        from PIL import Image

        images = [Image.fromarray((rng.rand(40, 48, 3) * 255).astype("uint8")) for _ in range(batch_size)]
        return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"]}
    tokenizer = transformers.AutoTokenizer.from_pretrained(artifact)
    sentences = ["the quick brown fox jumped over the lazy dog", "paris is the capital of france", "i loved this movie",
                 "where does mary live", "john was born in london"]
    texts = [sentences[(seed + i) % len(sentences)] for i in range(batch_size)]
    pad = dict(padding="max_length", max_length=SEQUENCE_LENGTH, truncation=True, return_tensors="pt")
    if task == "multiple-choice":
        choices = ["yes it is", "no it is not"]
        encoded = tokenizer([t for t in texts for _ in choices], choices * batch_size, **pad)
        return {k: v.view(batch_size, len(choices), -1) for k, v in encoded.items()}
    if task == "question-answering":
        return dict(tokenizer(texts, ["who is it"] * batch_size, **pad))
    return dict(tokenizer(texts, **pad))


def eager_outputs(model_dir, task: str, inputs: dict[str, torch.Tensor], **flags) -> dict[str, torch.Tensor]:
    # transformers' default attention (sdpa) returns no attention weights.
    attention = {"attn_implementation": "eager"} if flags.get("output_attentions") else {}
    model = getattr(transformers, AUTO_CLASS[task]).from_pretrained(model_dir, **attention).eval()
    with torch.no_grad():
        outputs = model(**inputs, return_dict=True, **flags)
    named = {}
    for name, value in outputs.items():
        if isinstance(value, tuple):
            named.update({f"{name}.{i}": v for i, v in enumerate(value)})
        else:
            named[name] = value
    return named


def assert_matches_eager(compiled, model_dir, task, inputs, atol=ATOL, **flags):
    expected = eager_outputs(model_dir, task, inputs, **flags)
    actual = compiled(**{name: inputs[name] for name in compiled.input_names})
    assert MAIN_OUTPUTS[task] <= set(actual)
    for name, tensor in actual.items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")
    return actual, expected


@pytest.mark.parametrize("arch,task", PAIRS)
def test_export_matches_transformers(arch, task, workdir):
    model_dir = build_model(arch, task, workdir / f"{arch}-{task}" / "model")
    options = ExportOptions(backend="torchscript", sequence_length=None if arch in VISION_ARCHS else SEQUENCE_LENGTH,
                            num_choices=2 if task == "multiple-choice" else None, use_cache=False)
    # task "auto": the local folder's config.json must be enough to find the task.
    result = export(model_dir, workdir / f"{arch}-{task}" / "artifact", options)
    assert result.manifest.task == task
    assert result.validation_passed is True
    assert read_validation(result.artifact)["passed"] is True

    compiled = load_artifact(result.artifact)
    inputs = fresh_inputs(arch, task, result.artifact)
    assert set(compiled.input_names) <= set(inputs), "the artifact wants inputs its own preprocessor does not give"
    assert_matches_eager(compiled, model_dir, task, inputs)


@pytest.fixture(scope="module")
def tiny_classifier(workdir):
    return build_tiny_text_model("bert", "text-classification", workdir / "bert-classifier")


def test_inductor_dynamic_batch(tiny_classifier, workdir):
    options = ExportOptions(backend="inductor", sequence_length=SEQUENCE_LENGTH, dynamic_batch_size=True, use_cache=False)
    result = export(tiny_classifier, workdir / "dynamic", options)
    assert result.validation_passed is True
    # Validation ran on another batch size than the compiled one, not only on the trace's example.
    assert {run["input_ids"][0] for run in read_validation(result.artifact)["runs"]} == {1, 2}
    compiled = load_artifact(result.artifact)
    assert compiled.dynamic_batch
    for batch in (1, 3, 5):
        inputs = fresh_inputs("bert", "text-classification", result.artifact, batch_size=batch)
        actual, _ = assert_matches_eager(compiled, tiny_classifier, "text-classification", inputs)
        assert actual["logits"].shape == (batch, 2)


def test_inductor_auto_cast_bf16(tiny_classifier, workdir):
    options = ExportOptions(backend="inductor", sequence_length=SEQUENCE_LENGTH, auto_cast="matmul", auto_cast_type="bf16",
                            optlevel=1, use_cache=False)
    result = export(tiny_classifier, workdir / "bf16", options)
    report = read_validation(result.artifact)
    assert result.validation_passed is True
    assert report["atol"] > ATOL, "auto-cast must validate with the cast's tolerance"
    assert result.manifest.auto_cast == "matmul" and result.manifest.auto_cast_type == "bf16"
    compiled = load_artifact(result.artifact)
    inputs = fresh_inputs("bert", "text-classification", result.artifact)
    actual, expected = assert_matches_eager(compiled, tiny_classifier, "text-classification", inputs, atol=report["atol"])
    # bf16 matmuls cannot reproduce fp32 exactly: a zero difference means the cast did not happen.
    assert (actual["logits"] - expected["logits"]).abs().max() > 1e-5


def test_output_hidden_states(workdir):
    model_dir = build_tiny_text_model("roberta", "token-classification", workdir / "roberta-hidden")
    options = ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH, output_hidden_states=True, use_cache=False)
    result = export(model_dir, workdir / "hidden", options)
    assert result.validation_passed is True
    layers = transformers.AutoConfig.from_pretrained(model_dir).num_hidden_layers
    hidden = [f"hidden_states.{i}" for i in range(layers + 1)]
    compiled = load_artifact(result.artifact)
    assert compiled.output_names == ["logits"] + hidden
    inputs = fresh_inputs("roberta", "token-classification", result.artifact)
    assert_matches_eager(compiled, model_dir, "token-classification", inputs, output_hidden_states=True)


def test_output_attentions(tiny_classifier, workdir):
    options = ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH, output_attentions=True, use_cache=False)
    result = export(tiny_classifier, workdir / "attentions", options)
    assert result.validation_passed is True
    layers = transformers.AutoConfig.from_pretrained(tiny_classifier).num_hidden_layers
    compiled = load_artifact(result.artifact)
    assert compiled.output_names == ["logits"] + [f"attentions.{i}" for i in range(layers)]
    inputs = fresh_inputs("bert", "text-classification", result.artifact)
    actual, _ = assert_matches_eager(compiled, tiny_classifier, "text-classification", inputs, output_attentions=True)
    assert actual["attentions.0"].shape == (1, 4, SEQUENCE_LENGTH, SEQUENCE_LENGTH)


def test_vision_shape_options_are_honoured(workdir):
    model_dir = build_tiny_vision_model("convnext", "image-classification", workdir / "convnext-shapes")
    options = ExportOptions(backend="torchscript", height=48, width=40, use_cache=False)
    result = export(model_dir, workdir / "convnext-48x40", options)
    assert result.validation_passed is True
    compiled = load_artifact(result.artifact)
    pixel_values = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(5))
    assert_matches_eager(compiled, model_dir, "image-classification", {"pixel_values": pixel_values})


@pytest.mark.parametrize("optlevel", [1, 2, 3])
def test_torchscript_optlevels_load_back(optlevel, workdir):
    # ConvNeXt: convolutions are what torch.jit.optimize_for_inference prepacks into unsaveable graphs.
    model_dir = build_tiny_vision_model("convnext", "image-classification", workdir / f"convnext-O{optlevel}" / "model")
    options = ExportOptions(backend="torchscript", optlevel=optlevel, use_cache=False)
    result = export(model_dir, workdir / f"convnext-O{optlevel}" / "artifact", options)
    assert result.validation_passed is True
    assert any(w.startswith("-O3") for w in result.warnings) == (optlevel == 3)
    inputs = fresh_inputs("convnext", "image-classification", result.artifact)
    assert_matches_eager(load_artifact(result.artifact), model_dir, "image-classification", inputs)
