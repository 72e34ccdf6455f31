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

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            "feature-extraction", "AutoModel", ("last_hidden_state", "pooler_output"), ("Model",),
            "NeuronModelForFeatureExtraction", "BaseModelOutputWithPooling",
            output_axes={"last_hidden_state": SEQUENCE}, pipeline="feature-extraction", views={"text": "similarity"},
        ),
        TaskSpec(
            "fill-mask", "AutoModelForMaskedLM", ("logits",), ("ForMaskedLM",),
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
            "question-answering", "AutoModelForQuestionAnswering", ("start_logits", "end_logits"), ("ForQuestionAnswering",),
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
    )
}


@dataclass(frozen=True)
class SentenceTransformersSpec:
    """A sentence-transformers folder (modules.json): the encoder plus its pooling and normalization,
    exported for feature-extraction and run by its own model class."""

    task: str = "feature-extraction"
    outputs: tuple[str, ...] = ("token_embeddings", "sentence_embedding")
    output_axes: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"token_embeddings": SEQUENCE})
    model_class: str = "NeuronModelForSentenceTransformers"
    output_type: str = "SentenceEmbeddingOutput"  # neuron_export.modeling's
    views: dict[str, str] = field(default_factory=lambda: {"text": "similarity"})


SENTENCE_TRANSFORMERS = SentenceTransformersSpec()
