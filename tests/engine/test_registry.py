"""The architecture / task registry and shape resolution (no model is built or compiled here; < 5 s)."""

from __future__ import annotations

import pytest
from transformers import AutoConfig

from neuron_export import ExportOptions, supported_tasks
from neuron_export.errors import NeuronExportError
from neuron_export.inputs import resolve_shapes
from neuron_export.registry import ARCHITECTURES, TASKS, check_task, detect_task, get_architecture
from support import run_cli

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
    "semantic-segmentation": "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
    "image-segmentation": "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
    "object-detection": "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",
    "depth-estimation": "MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES",
    "zero-shot-image-classification": "MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "automatic-speech-recognition": "MODEL_FOR_CTC_MAPPING_NAMES",
    "audio-classification": "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
    "audio-frame-classification": "MODEL_FOR_AUDIO_FRAME_CLASSIFICATION_MAPPING_NAMES",
    "audio-xvector": "MODEL_FOR_AUDIO_XVECTOR_MAPPING_NAMES",
}
# Tasks whose head class is another task's: a checkpoint of it is detected as that task (pass --task).
DETECTED_AS = {"image-segmentation": "semantic-segmentation", "clip feature-extraction": "zero-shot-image-classification"}
COMMON_TEXT = set(DISTILBERT_TASKS)
FEATURES_AND_IMAGES = {"feature-extraction", "image-classification"}
WAV2VEC2_TASKS = {"feature-extraction", "automatic-speech-recognition", "audio-classification", "audio-frame-classification", "audio-xvector"}
# optimum-neuron 0.4.5's encoder registry (optimum/exporters/neuron/model_configs.py), row by row: issue 12's table.
OPTIMUM_NEURON_TASKS = {
    **{t: COMMON_TEXT for t in ("bert", "albert", "distilbert", "camembert", "roberta", "xlm-roberta", "mpnet", "mobilebert",
                                "electra", "flaubert", "roformer", "xlm", "convbert")},
    "deberta": COMMON_TEXT - {"multiple-choice"},
    "deberta-v2": COMMON_TEXT,  # optimum-neuron leaves out multiple-choice; we keep it
    **{t: {"feature-extraction", "fill-mask", "text-classification", "token-classification"} for t in ("esm", "modernbert")},
    "phi": {"feature-extraction", "text-classification", "token-classification"},
    **{t: FEATURES_AND_IMAGES for t in ("vit", "beit", "deit", "convnext", "convnextv2", "cvt", "levit", "swin")},
    "donut-swin": {"feature-extraction"},
    "dpt": {"feature-extraction", "depth-estimation"},  # depth-estimation: the seed's task, beyond optimum-neuron
    "mobilenet_v2": FEATURES_AND_IMAGES | {"semantic-segmentation"},
    "mobilevit": FEATURES_AND_IMAGES | {"semantic-segmentation", "image-segmentation"},
    "yolos": {"feature-extraction", "object-detection"},
    "clip": {"feature-extraction", "zero-shot-image-classification", "image-classification"},
    **{t: WAV2VEC2_TASKS for t in ("wav2vec2", "wavlm", "unispeech-sat")},
    **{t: {"feature-extraction", "automatic-speech-recognition", "audio-classification"} for t in ("hubert", "unispeech")},
    "audio-spectrogram-transformer": {"feature-extraction", "audio-classification"},
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
            expected = DETECTED_AS.get(f"{model_type} {task}", DETECTED_AS.get(task, task))
            assert detect_task(model_type, [head]) == expected, head
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
        supported_tasks("gpt2")
    message = str(error.value)
    assert "'gpt2' is not supported" in message
    for model_type in ARCHITECTURES:
        assert model_type in message


def test_task_the_architecture_lacks_lists_its_tasks():
    with pytest.raises(NeuronExportError, match=r"vit does not support task 'fill-mask'; its tasks: feature-extraction, image-classification; "
                                               r"fill-mask is exported for e\.g\. bert, distilbert, roberta$"):
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
        if model_type not in ("deberta-v2", "modernbert", "phi"):  # relative or rotary positions only: any length runs
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


@pytest.mark.parametrize("model_type", sorted(OPTIMUM_NEURON_TASKS))
def test_every_optimum_neuron_encoder_has_at_least_its_tasks(model_type):
    assert OPTIMUM_NEURON_TASKS[model_type] <= set(supported_tasks(model_type))


def test_the_cli_lists_the_tasks_of_an_audio_architecture():
    result = run_cli("tasks", "wav2vec2")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == WAV2VEC2_TASKS


def test_a_task_another_architecture_serves_names_it():
    with pytest.raises(NeuronExportError, match=r"vit does not support task 'depth-estimation'.*depth-estimation is exported for dpt$"):
        check_task("vit", "depth-estimation")


@pytest.mark.parametrize("task,model_type", [("mask-generation", "sam"), ("image-to-image", "swin2sr"), ("text-generation", "gpt2")])
def test_a_task_this_tool_does_not_serve_says_why_and_names_a_model_type(task, model_type):
    with pytest.raises(NeuronExportError, match=rf"task '{task}' is not exported by this tool \(.+\); transformers runs it with e.g. {model_type}"):
        check_task("bert", task)


def _shapes(model_type: str, task: str, config, preprocessor=None, **options):
    return resolve_shapes(get_architecture(model_type), TASKS[task], ExportOptions(**options), config, preprocessor)


def test_audio_needs_its_length_and_takes_a_mask_only_where_the_checkpoint_does():
    group_norm = AutoConfig.for_model("wav2vec2")  # wav2vec2-base: trained without an attention mask
    layer_norm = AutoConfig.for_model("wav2vec2", feat_extract_norm="layer", do_stable_layer_norm=True)
    with pytest.raises(NeuronExportError, match="missing --audio_sequence_length: .*--audio_sequence_length 16000"):
        _shapes("wav2vec2", "automatic-speech-recognition", group_norm)
    shapes, warnings = _shapes("wav2vec2", "automatic-speech-recognition", group_norm, audio_sequence_length=16000, sequence_length=8)
    assert shapes == {"batch_size": 1, "audio_sequence_length": 16000}
    assert warnings == ["--sequence_length is not used by automatic-speech-recognition; ignored"]
    arch = get_architecture("wav2vec2")
    assert [i.name for i in arch.task_inputs("audio-classification", group_norm)] == ["input_values"]
    assert [i.name for i in arch.task_inputs("audio-classification", layer_norm)] == ["input_values", "attention_mask"]


def test_spectrograms_take_their_size_from_the_config_and_ignore_the_audio_length():
    config = AutoConfig.for_model("audio-spectrogram-transformer", max_length=100, num_mel_bins=64)
    shapes, warnings = _shapes("audio-spectrogram-transformer", "audio-classification", config, audio_sequence_length=16000)
    assert shapes == {"batch_size": 1, "num_frames": 100, "num_mel_bins": 64}
    assert warnings == ["--audio_sequence_length is not used by audio-classification; ignored"]


def test_clip_takes_a_text_and_an_image_batch():
    config = AutoConfig.for_model("clip", vision_config={"image_size": 96})
    with pytest.raises(NeuronExportError, match="missing --text_batch_size"):
        _shapes("clip", "zero-shot-image-classification", config)
    shapes, warnings = _shapes("clip", "zero-shot-image-classification", config, text_batch_size=4, batch_size=2)
    assert shapes == {"text_batch_size": 4, "sequence_length": 77, "image_batch_size": 1, "num_channels": 3, "height": 96, "width": 96}
    assert warnings == ["--batch_size is not used by zero-shot-image-classification; ignored"]
    with pytest.raises(NeuronExportError, match=r"--sequence_length 78 is beyond the model's text_config.max_position_embeddings \(77\)"):
        _shapes("clip", "zero-shot-image-classification", config, text_batch_size=4, sequence_length=78)
    # CLIP's image classifier takes images only, with the plain batch size.
    shapes, _ = _shapes("clip", "image-classification", config, batch_size=2)
    assert shapes == {"batch_size": 2, "num_channels": 3, "height": 96, "width": 96}


def test_image_size_defaults_come_from_the_image_processor():
    config = AutoConfig.for_model("convnext", image_size=224)
    # ConvNeXt's processor makes 384 x 384 images (shortest edge 384) whatever the config says.
    assert _shapes("convnext", "image-classification", config, {"size": {"shortest_edge": 384}})[0]["height"] == 384
    # CLIP-style: resized, then center-cropped.
    crop = {"size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": {"height": 240, "width": 200}}
    shapes, _ = _shapes("mobilevit", "image-classification", config, crop)
    assert (shapes["height"], shapes["width"]) == (240, 200)
    # YOLOS keeps the aspect ratio (no one size): the config's (height, width) pair.
    yolos = AutoConfig.for_model("yolos", image_size=[512, 864])
    shapes, _ = _shapes("yolos", "object-detection", yolos, {"size": {"shortest_edge": 800, "longest_edge": 1333}})
    assert (shapes["height"], shapes["width"]) == (512, 864)
    assert _shapes("yolos", "object-detection", yolos, height=320, width=480)[0]["width"] == 480
