"""The architecture / task registry and shape resolution (no model is built or compiled here; < 5 s)."""

from __future__ import annotations

import pytest
from transformers import AutoConfig

from neuron_export import ExportOptions, supported_tasks
from neuron_export.errors import NeuronExportError
from neuron_export.inputs import resolve_shapes
from neuron_export.registry import ARCHITECTURES, GENERATIVE_ARCHITECTURES, TASKS, check_task, detect_task, get_architecture

# The seed guide's TasksManager example.
DISTILBERT_TASKS = [
    "feature-extraction",
    "fill-mask",
    "multiple-choice",
    "question-answering",
    "text-classification",
    "token-classification",
]
# transformers' own head-class mappings, by task: config.architectures names one of these classes.
HEAD_MAPPINGS = {
    "feature-extraction": "MODEL_MAPPING_NAMES",
    "fill-mask": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "text-classification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "token-classification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "question-answering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "multiple-choice": "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES",
    "image-classification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
}


def head_classes(model_type: str, task: str) -> list[str]:
    from transformers.models.auto import modeling_auto

    names = getattr(modeling_auto, HEAD_MAPPINGS[task]).get(model_type, ())
    return [names] if isinstance(names, str) else list(names)


def test_distilbert_tasks_are_the_seeds():
    assert supported_tasks("distilbert") == DISTILBERT_TASKS


@pytest.mark.parametrize("model_type", ["bert", "roberta", "deberta-v2", "mobilebert"])
def test_text_architectures_have_every_text_task(model_type):
    assert supported_tasks(model_type) == DISTILBERT_TASKS


@pytest.mark.parametrize("model_type", ["vit", "convnext", "swin"])
def test_vision_architectures(model_type):
    assert supported_tasks(model_type) == ["feature-extraction", "image-classification"]


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_detect_task_from_every_head_class(model_type):
    checked = 0
    for task in supported_tasks(model_type):
        for head in head_classes(model_type, task):  # deit: with and without teacher
            assert detect_task(model_type, [head]) == task, head
            checked += 1
    assert checked >= len(supported_tasks(model_type))


def test_detect_task_without_architectures_lists_the_tasks():
    with pytest.raises(NeuronExportError, match="no 'architectures'.*pass --task, one of: feature-extraction, fill-mask"):
        detect_task("bert", None)


def test_detect_task_with_a_head_we_do_not_export_lists_the_tasks():
    # BertForNextSentencePrediction: a real transformers head that no exported task covers.
    with pytest.raises(NeuronExportError, match="cannot infer the task.*BertForNextSentencePrediction.*text-classification"):
        detect_task("bert", ["BertForNextSentencePrediction"])


def test_unknown_architecture_lists_supported():
    with pytest.raises(NeuronExportError) as error:
        supported_tasks("bloom")
    message = str(error.value)
    assert "'bloom' is not supported" in message
    for model_type in [*ARCHITECTURES, *GENERATIVE_ARCHITECTURES]:
        assert model_type in message


def test_task_the_architecture_lacks_lists_its_tasks():
    with pytest.raises(NeuronExportError, match=r"vit does not support task 'fill-mask'; its tasks: feature-extraction, image-classification$"):
        check_task("vit", "fill-mask")
    with pytest.raises(NeuronExportError, match="bert does not support task 'image-classification'.*token-classification"):
        check_task("bert", "image-classification")


def _text_shapes(task: str, config=None, model_type="bert", **options):
    config = config or AutoConfig.for_model(model_type, max_position_embeddings=64)
    return resolve_shapes(get_architecture(model_type), TASKS[task], ExportOptions(**options), config)


def test_resolve_shapes_text():
    shapes, warnings = _text_shapes("text-classification", sequence_length=32)
    assert shapes == {"batch_size": 1, "sequence_length": 32}
    assert warnings == []
    shapes, _ = _text_shapes("multiple-choice", sequence_length=32, num_choices=4, batch_size=2)
    assert shapes == {"batch_size": 2, "num_choices": 4, "sequence_length": 32}


def test_missing_sequence_length_is_named():
    with pytest.raises(NeuronExportError, match="missing --sequence_length"):
        _text_shapes("fill-mask")


def test_missing_num_choices_is_named():
    with pytest.raises(NeuronExportError, match="missing --num_choices"):
        _text_shapes("multiple-choice", sequence_length=16)


def test_sequence_length_beyond_max_positions_is_rejected():
    assert _text_shapes("fill-mask", sequence_length=64)[0]["sequence_length"] == 64
    with pytest.raises(NeuronExportError, match="--sequence_length 65 is beyond the model's max_position_embeddings \\(64\\)"):
        _text_shapes("fill-mask", sequence_length=65)


def test_roberta_positions_start_after_the_padding_id():
    # roberta-base: 514 position embeddings, padding id 1, so 512 tokens at most.
    config = AutoConfig.for_model("roberta", max_position_embeddings=514, pad_token_id=1)
    assert _text_shapes("fill-mask", config, model_type="roberta", sequence_length=512)[0]["sequence_length"] == 512
    with pytest.raises(NeuronExportError, match=r"--sequence_length 513 is beyond the model's max_position_embeddings \(514, .*at most 512\)"):
        _text_shapes("fill-mask", config, model_type="roberta", sequence_length=513)


def longest_accepted_sequence(model_type: str, config) -> int:
    length = config.max_position_embeddings
    while True:
        try:
            _text_shapes("feature-extraction", config, model_type=model_type, sequence_length=length)
            return length
        except NeuronExportError:
            length -= 1


@pytest.mark.parametrize("model_type", [m for m, a in ARCHITECTURES.items() if a.family.modality == "text"])
def test_longest_accepted_sequence_is_what_transformers_runs(model_type, tmp_path):
    import torch
    from transformers import AutoModel

    from neuron_export.demo import build_tiny_text_model

    folder = build_tiny_text_model(model_type, "feature-extraction", tmp_path)
    config = AutoConfig.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    longest = longest_accepted_sequence(model_type, config)
    ids = torch.full((1, longest + 1), 7)
    with torch.no_grad():
        model(input_ids=ids[:, :longest])  # the longest accepted length runs
        if model_type != "deberta-v2":  # relative positions only: any length runs
            with pytest.raises(Exception):
                model(input_ids=ids)


def test_unused_shape_options_warn():
    _, warnings = _text_shapes("text-classification", sequence_length=16, height=224, num_choices=2)
    assert sorted(warnings) == [
        "--height is not used by text-classification; ignored",
        "--num_choices is not used by text-classification; ignored",
    ]


def test_vision_shapes_default_from_config():
    config = AutoConfig.for_model("vit", image_size=48, num_channels=3)
    shapes, warnings = resolve_shapes(get_architecture("vit"), TASKS["image-classification"], ExportOptions(sequence_length=8), config)
    assert shapes == {"batch_size": 1, "num_channels": 3, "height": 48, "width": 48}
    assert warnings == ["--sequence_length is not used by image-classification; ignored"]


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("sequence_length", -1), ("num_choices", 0)])
def test_non_positive_shapes_are_rejected(field, value):
    with pytest.raises(NeuronExportError, match=f"--{field} must be a positive integer"):
        ExportOptions(**{field: value})
