"""Tasks of the transformers encoders: everything each layer needs to know about one task.

From a TaskSpec the engine derives the eager model (auto_class), the traced outputs and how to unpad
them, the NeuronModelFor* class (model_class, output_type), pipeline(), the playground's view, and
the built-in demo model of the task. Adding a task for an existing modality is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class DemoSpec:
    """A built-in tiny random-weight demo of a task (see neuron_export/demo)."""

    name: str  # "demo:tiny-bert"
    model_type: str
    description: str  # what it is; the catalog adds that its weights are random


@dataclass(frozen=True)
class TaskSpec:
    name: str
    auto_class: str  # the transformers Auto class that loads a model for the task
    outputs: tuple[str, ...]  # output names, in order; absent ones (e.g. no pooler) are skipped
    head_suffixes: tuple[str, ...]  # config.architectures suffixes that identify the task
    model_class: str  # the NeuronModelFor* class that runs an artifact of the task
    output_type: str  # its transformers.modeling_outputs class
    # Axes of each output (for unpadding); outputs not listed have the batch axis only.
    output_axes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    extra_axes: tuple[str, ...] = ()  # axes inserted after batch_size in every input (multiple-choice)
    required_shapes: tuple[str, ...] = ()  # shape options the user must give (no sane default)
    pipeline: Optional[str] = None  # the transformers pipeline that runs it, when transformers has one
    no_pipeline: str = "transformers has no pipeline for it"  # said when pipeline is None
    views: dict[str, str] = field(default_factory=dict)  # modality -> playground view
    labels: tuple[str, ...] = ()  # id2label of its demo models
    demo: Optional[DemoSpec] = None

    @property
    def hidden_batch_axes(self) -> tuple[str, ...]:
        """Leading axes of hidden states and attentions: batch x choices rows for multiple-choice."""
        return ("batch_size", *self.extra_axes)


SEQUENCE = ("batch_size", "sequence_length")
POSITIONS = ("batch_size", "positions")  # tokens or audio frames: the family's positions_axis
# CLIP: texts x images; padding rows of either batch are cut from both sides of the logits.
CLIP_OUTPUTS = ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds")
CLIP_AXES = {
    "logits_per_image": ("image_batch_size", "text_batch_size"),
    "logits_per_text": ("text_batch_size", "image_batch_size"),
    "text_embeds": ("text_batch_size",),
    "image_embeds": ("image_batch_size",),
}
SCENE_LABELS = ("sky", "grass", "house", "sun")  # the demo segmenter's classes: the sample picture's

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            # Each architecture returns some of these: audio its CNN features, CvT its CLS token, CLIP both towers.
            "feature-extraction", "AutoModel",
            ("last_hidden_state", "pooler_output", "extract_features", "cls_token_value", *CLIP_OUTPUTS), ("Model",),
            "NeuronModelForFeatureExtraction", "BaseModelOutputWithPooling",
            output_axes={"last_hidden_state": POSITIONS, "extract_features": POSITIONS, **CLIP_AXES}, pipeline="feature-extraction",
            views={"text": "similarity", "text-image": "zero-shot"},
        ),
        TaskSpec(
            "fill-mask", "AutoModelForMaskedLM", ("logits",), ("ForMaskedLM", "WithLMHeadModel"),  # xlm, flaubert
            "NeuronModelForMaskedLM", "MaskedLMOutput",
            output_axes={"logits": SEQUENCE}, pipeline="fill-mask", views={"text": "masked-word"},
            demo=DemoSpec("demo:tiny-bert-mlm", "bert", "Tiny BERT masked language model (fill-mask)"),
        ),
        TaskSpec(
            "text-classification", "AutoModelForSequenceClassification", ("logits",), ("ForSequenceClassification",),
            "NeuronModelForSequenceClassification", "SequenceClassifierOutput",
            pipeline="text-classification", views={"text": "text-labels"}, labels=("NEGATIVE", "POSITIVE"),
            demo=DemoSpec("demo:tiny-bert", "bert", "Tiny BERT text classifier (NEGATIVE/POSITIVE)"),
        ),
        TaskSpec(
            "token-classification", "AutoModelForTokenClassification", ("logits",), ("ForTokenClassification",),
            "NeuronModelForTokenClassification", "TokenClassifierOutput",
            output_axes={"logits": SEQUENCE}, pipeline="token-classification", views={"text": "entities"},
            labels=("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"),
            demo=DemoSpec("demo:tiny-bert-ner", "bert", "Tiny BERT named-entity tagger (O, B-PER, I-PER, ...)"),
        ),
        TaskSpec(
            "question-answering", "AutoModelForQuestionAnswering", ("start_logits", "end_logits"),
            ("ForQuestionAnswering", "ForQuestionAnsweringSimple"),  # xlm, flaubert
            "NeuronModelForQuestionAnswering", "QuestionAnsweringModelOutput",
            output_axes={"start_logits": SEQUENCE, "end_logits": SEQUENCE}, views={"text": "answer-span"},
            no_pipeline="transformers 5 removed the question-answering pipeline",
            demo=DemoSpec("demo:tiny-bert-qa", "bert", "Tiny BERT extractive question answering"),
        ),
        TaskSpec(
            "multiple-choice", "AutoModelForMultipleChoice", ("logits",), ("ForMultipleChoice",),
            "NeuronModelForMultipleChoice", "MultipleChoiceModelOutput",
            output_axes={"logits": ("batch_size", "num_choices")}, extra_axes=("num_choices",),
            required_shapes=("num_choices",), views={"text": "choices"},
            demo=DemoSpec("demo:tiny-roberta-mc", "roberta", "Tiny RoBERTa multiple choice"),
        ),
        TaskSpec(
            "image-classification", "AutoModelForImageClassification", ("logits",),
            ("ForImageClassification", "ForImageClassificationWithTeacher"),
            "NeuronModelForImageClassification", "ImageClassifierOutput",
            pipeline="image-classification", views={"vision": "image-labels"}, labels=("cat", "dog", "bird"),
            demo=DemoSpec("demo:tiny-vit", "vit", "Tiny ViT image classifier (cat/dog/bird, 32x32 input)"),
        ),
        TaskSpec(
            "semantic-segmentation", "AutoModelForSemanticSegmentation", ("logits",), ("ForSemanticSegmentation",),
            "NeuronModelForSemanticSegmentation", "SemanticSegmenterOutput",
            pipeline="image-segmentation", views={"vision": "segmentation"}, labels=SCENE_LABELS,
            demo=DemoSpec("demo:tiny-beit-seg", "beit", "Tiny BEiT semantic segmenter (sky/grass/house/sun, 32x32 input)"),
        ),
        TaskSpec(
            # optimum-neuron's name for semantic segmentation models run by the image-segmentation pipeline
            "image-segmentation", "AutoModelForSemanticSegmentation", ("logits",), (),
            "NeuronModelForSemanticSegmentation", "SemanticSegmenterOutput",
            pipeline="image-segmentation", views={"vision": "segmentation"}, labels=SCENE_LABELS,
        ),
        TaskSpec(
            "object-detection", "AutoModelForObjectDetection", ("logits", "pred_boxes", "last_hidden_state"), ("ForObjectDetection",),
            "NeuronModelForObjectDetection", "transformers.models.yolos.modeling_yolos.YolosObjectDetectionOutput",
            pipeline="object-detection", views={"vision": "detection"}, labels=("cat", "dog", "bird"),
            demo=DemoSpec("demo:tiny-yolos", "yolos", "Tiny YOLOS object detector (cat/dog/bird, 32x48 input)"),
        ),
        TaskSpec(
            "depth-estimation", "AutoModelForDepthEstimation", ("predicted_depth",), ("ForDepthEstimation",),
            "NeuronModelForDepthEstimation", "DepthEstimatorOutput",
            pipeline="depth-estimation", views={"vision": "depth"},
            demo=DemoSpec("demo:tiny-dpt", "dpt", "Tiny DPT depth estimator (32x32 input, 64x64 depth map)"),
        ),
        TaskSpec(
            # A CLIPModel checkpoint is detected as this (the hub's pipeline tag); --task feature-extraction for its embeddings.
            "zero-shot-image-classification", "AutoModelForZeroShotImageClassification", CLIP_OUTPUTS, ("CLIPModel",),
            "NeuronCLIPModel", "transformers.models.clip.modeling_clip.CLIPOutput",
            output_axes=CLIP_AXES, pipeline="zero-shot-image-classification", views={"text-image": "zero-shot"},
            demo=DemoSpec("demo:tiny-clip", "clip", "Tiny CLIP zero-shot image classifier (the labels you type, 32x32 input)"),
        ),
        TaskSpec(
            "automatic-speech-recognition", "AutoModelForCTC", ("logits",), ("ForCTC",),
            "NeuronModelForCTC", "CausalLMOutput",
            output_axes={"logits": POSITIONS}, pipeline="automatic-speech-recognition", views={"audio": "transcript"},
            demo=DemoSpec("demo:tiny-wav2vec2-ctc", "wav2vec2", "Tiny wav2vec2 CTC speech recognizer (letters, 16 kHz)"),
        ),
        TaskSpec(
            "audio-classification", "AutoModelForAudioClassification", ("logits",), ("ForSequenceClassification", "ForAudioClassification"),
            "NeuronModelForAudioClassification", "SequenceClassifierOutput",
            pipeline="audio-classification", views={"audio": "audio-labels"}, labels=("speech", "music", "silence"),
            demo=DemoSpec("demo:tiny-wav2vec2-audio", "wav2vec2", "Tiny wav2vec2 audio classifier (speech/music/silence, 16 kHz)"),
        ),
        TaskSpec(
            "audio-frame-classification", "AutoModelForAudioFrameClassification", ("logits",), ("ForAudioFrameClassification",),
            "NeuronModelForAudioFrameClassification", "TokenClassifierOutput", output_axes={"logits": POSITIONS},
            labels=("speech", "music", "silence"),
        ),
        TaskSpec(
            "audio-xvector", "AutoModelForAudioXVector", ("logits", "embeddings"), ("ForXVector",),
            "NeuronModelForXVector", "XVectorOutput",
        ),
    )
}

# The seed guide's tasks that no static-shape encoder here serves: why, and a transformers model type that does them.
UNSERVED_TASKS: dict[str, tuple[str, str]] = {
    "masked-im": ("its masked-patch input is for pre-training; transformers has no pipeline for it", "vit"),
    "image-to-image": ("its output size follows the input image, and transformers 5 removed its pipeline", "swin2sr"),
    "mask-generation": ("it is an image encoder plus a prompt decoder run per prompt, two compiled models", "sam"),
    "zero-shot-object-detection": ("its text queries and image patches make per-query outputs this tool does not pad", "owlvit"),
    "conversational": ("transformers 5 removed its pipeline: a chat is text-generation with the tokenizer's chat template", "llama"),
    "image-to-text": ("it decodes token by token with a cache, not one static-shape call", "vision-encoder-decoder"),
    "text-to-audio": ("its output length depends on the text (predicted durations) or is decoded step by step", "vits"),
}


@dataclass(frozen=True)
class SentenceTransformersSpec:
    """A sentence-transformers folder (modules.json): the encoder plus its pooling and normalization,
    exported for feature-extraction and run by its own model class."""

    task: str = "feature-extraction"
    outputs: tuple[str, ...] = ("token_embeddings", "sentence_embedding")
    output_axes: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "token_embeddings": SEQUENCE, "text_embeds": CLIP_AXES["text_embeds"], "image_embeds": CLIP_AXES["image_embeds"]})
    model_class: str = "NeuronModelForSentenceTransformers"
    output_type: str = "SentenceEmbeddingOutput"  # neuron_export.modeling's
    views: dict[str, str] = field(default_factory=lambda: {"text": "similarity", "text-image": "zero-shot"})
    # A CLIP folder (clip-ViT-B-32: a CLIPModel module): each tower's projected embedding, optimum-neuron's names.
    clip_outputs: tuple[str, ...] = ("text_embeds", "image_embeds")
    task_aliases: tuple[str, ...] = ("sentence-similarity",)  # optimum-neuron's other name for this export


SENTENCE_TRANSFORMERS = SentenceTransformersSpec()
