"""Every (architecture, task) pair of the registry, exported and checked against transformers eager.

Each pair is built as a tiny random-weight model (neuron_export.demo, weights re-drawn so outputs are
of order 1), exported in-process with the fast torchscript backend, and then re-checked independently
of the engine's own validation: the artifact is loaded, run on fresh tokenizer / image-processor /
feature-extractor inputs made with the artifact's own preprocessing files, and compared with the
transformers Auto model loaded from the model folder. Inductor exports cover one pair per modality,
dynamic batch and auto-cast; every task on inductor runs under `-m matrix_inductor` (.ci/run).

Budget: about 5 minutes on 2 cores (162 torchscript exports at ~1.5 s, 5 inductor compiles).
"""

from __future__ import annotations

import pytest
import torch
import transformers

from fresh_inputs import (SEQUENCE_LENGTH, SPECTROGRAM_ARCHS, TEXT_ARCHS, TEXT_IMAGE_ARCHS, VISION_ARCHS, WAVEFORM_ARCHS,
                          export_shapes, fresh_inputs)
from neuron_export import ExportOptions, export, load_artifact, read_validation
from neuron_export.demo import build_tiny_model, build_tiny_text_model, build_tiny_vision_model
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
    "semantic-segmentation": "AutoModelForSemanticSegmentation",
    "image-segmentation": "AutoModelForSemanticSegmentation",
    "object-detection": "AutoModelForObjectDetection",
    "depth-estimation": "AutoModelForDepthEstimation",
    "zero-shot-image-classification": "AutoModelForZeroShotImageClassification",
    "automatic-speech-recognition": "AutoModelForCTC",
    "audio-classification": "AutoModelForAudioClassification",
    "audio-frame-classification": "AutoModelForAudioFrameClassification",
    "audio-xvector": "AutoModelForAudioXVector",
}
MAIN_OUTPUTS = {
    "feature-extraction": {"last_hidden_state"},
    "fill-mask": {"logits"},
    "text-classification": {"logits"},
    "token-classification": {"logits"},
    "question-answering": {"start_logits", "end_logits"},
    "multiple-choice": {"logits"},
    "image-classification": {"logits"},
    "semantic-segmentation": {"logits"},
    "image-segmentation": {"logits"},
    "object-detection": {"logits", "pred_boxes"},
    "depth-estimation": {"predicted_depth"},
    "zero-shot-image-classification": {"logits_per_image", "logits_per_text"},
    "automatic-speech-recognition": {"logits"},
    "audio-classification": {"logits"},
    "audio-frame-classification": {"logits"},
    "audio-xvector": {"logits", "embeddings"},
}
# CLIP's feature extraction is both towers' embeddings and logits, not a last hidden state.
MAIN_OUTPUTS_OF = {("clip", "feature-extraction"): {"text_embeds", "image_embeds", "logits_per_image"}}
ATOL = 1e-4
# Compiling folds mobilenet_v2's BatchNorms into its wide 1x1 convolutions: ~1e-4 apart at its ReLU6 scale.
ATOL_OF = {"mobilenet_v2": 1e-3}
# Outputs are compared at ATOL: they must be far larger, and not constant, for that to mean anything
# (transformers' init gives tiny models outputs of 1e-3 down to exactly 0; see neuron_export/demo/tiny.py).
MIN_OUTPUT_SCALE = 100 * ATOL
PAIRS = [(arch, task) for arch in ARCHITECTURES for task in supported_tasks(arch)]
ALL_ARCHS = TEXT_ARCHS + VISION_ARCHS + WAVEFORM_ARCHS + SPECTROGRAM_ARCHS + TEXT_IMAGE_ARCHS


def test_the_matrix_is_complete():
    # The parametrization below is derived from the registry: pin it to the matrix.
    assert set(ARCHITECTURES) == set(ALL_ARCHS)
    assert len(PAIRS) == 102 + 34 + 23 + 3  # text, vision, audio, CLIP


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("matrix")


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


def assert_order_one(name: str, tensor: torch.Tensor) -> None:
    scale = float(tensor.abs().max())
    assert scale >= MIN_OUTPUT_SCALE, f"{name}: eager output is ~0 (max |x| = {scale:.2g}): the comparison would prove nothing"
    if tensor.numel() > 1:
        assert float(tensor.float().std()) > ATOL, f"{name}: eager output is constant"


def assert_matches_eager(compiled, model_dir, task, inputs, atol=ATOL, main_outputs=None, **flags):
    expected = eager_outputs(model_dir, task, inputs, **flags)
    actual = compiled(**{name: inputs[name] for name in compiled.input_names})
    assert (main_outputs or MAIN_OUTPUTS[task]) <= set(actual)
    for name, tensor in actual.items():
        assert_order_one(name, expected[name])
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")
    return actual, expected


def export_and_check(arch: str, task: str, workdir, backend: str = "torchscript"):
    model_dir = build_tiny_model(arch, task, workdir / f"{arch}-{task}-{backend}" / "model")
    options = ExportOptions(backend=backend, use_cache=False, **export_shapes(arch, task))
    # task "auto": the local folder's config.json must be enough to find the task (image-segmentation
    # and CLIP's features share their head class with another task: they are named).
    if task == "image-segmentation" or (arch, task) == ("clip", "feature-extraction"):
        options = options.replace(task=task)
    result = export(model_dir, workdir / f"{arch}-{task}-{backend}" / "artifact", options)
    assert result.manifest.task == task
    assert result.validation_passed is True
    report = read_validation(result.artifact)
    assert report["passed"] is True and report["atol"] <= ATOL_OF.get(arch, ATOL)

    compiled = load_artifact(result.artifact)
    inputs = fresh_inputs(arch, task, result.artifact)
    assert set(compiled.input_names) <= set(inputs), "the artifact wants inputs its own preprocessor does not give"
    assert_matches_eager(compiled, model_dir, task, inputs, atol=ATOL_OF.get(arch, ATOL), main_outputs=MAIN_OUTPUTS_OF.get((arch, task)))


@pytest.mark.parametrize("arch,task", PAIRS)
def test_export_matches_transformers(arch, task, workdir):
    export_and_check(arch, task, workdir)


# One pair per modality (dense vision, audio with its attention mask, CLIP's two batches) on inductor.
INDUCTOR_PAIRS = [("dpt", "depth-estimation"), ("wav2vec2", "automatic-speech-recognition"), ("clip", "zero-shot-image-classification")]


@pytest.mark.parametrize("arch,task", INDUCTOR_PAIRS)
def test_inductor_export_matches_transformers(arch, task, workdir):
    export_and_check(arch, task, workdir, backend="inductor")


# Every task of every modality on inductor, each on one architecture: `-m matrix_inductor` (run by .ci/run).
MODALITIES = (TEXT_ARCHS, VISION_ARCHS, WAVEFORM_ARCHS, SPECTROGRAM_ARCHS, TEXT_IMAGE_ARCHS)


def _one_pair_per_modality_and_task() -> list[tuple[str, str]]:
    chosen: dict[tuple[int, str], tuple[str, str]] = {}
    for arch, task in PAIRS:  # the first architecture of each modality that has the task
        modality = next(i for i, archs in enumerate(MODALITIES) if arch in archs)
        chosen.setdefault((modality, task), (arch, task))
    return list(chosen.values())


INDUCTOR_TASK_PAIRS = _one_pair_per_modality_and_task()
# transformers' x-vector pooling with an attention mask slices each clip by a length read from the mask:
# torch.export gives data-dependent shapes, which Inductor cannot lower; the group-norm wavlm takes no mask.
INDUCTOR_REFUSES = ("wav2vec2", "audio-xvector")
MARKER_PAIRS = [p for p in INDUCTOR_TASK_PAIRS if p not in INDUCTOR_PAIRS and p != INDUCTOR_REFUSES] + [("wavlm", "audio-xvector")]


@pytest.mark.matrix_inductor
@pytest.mark.parametrize("arch,task", MARKER_PAIRS)
def test_every_task_on_inductor(arch, task, workdir):
    export_and_check(arch, task, workdir, backend="inductor")


def test_inductor_refuses_shapes_that_depend_on_input_values(workdir):
    from neuron_export.errors import NeuronExportError

    arch, task = INDUCTOR_REFUSES
    model_dir = build_tiny_model(arch, task, workdir / "xvector-inductor")
    with pytest.raises(NeuronExportError, match="shapes depend on the input values .*use --backend torchscript"):
        export(model_dir, workdir / "xvector-inductor-artifact", ExportOptions(backend="inductor", use_cache=False,
                                                                              **export_shapes(arch, task)))
    assert not (workdir / "xvector-inductor-artifact").exists()


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
