"""The one registry of supported architectures and tasks.

Each model family is declared once (inputs with their shape axes, default shapes, default atol);
each architecture names its family and the inputs it lacks; tasks name their transformers Auto
class and outputs. Which tasks an architecture supports is derived from transformers' own Auto
mappings, so adding an architecture is one line in ARCHITECTURES.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from .errors import NeuronExportError


@dataclass(frozen=True)
class InputSpec:
    name: str
    axes: tuple[str, ...]  # names of shape options, e.g. ("batch_size", "sequence_length")
    kind: str  # picks the dummy input generator (see inputs.py)
    dtype: str = "int64"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    auto_class: str  # transformers Auto class that loads a model for the task
    outputs: tuple[str, ...]  # output names, in order; absent ones (e.g. no pooler) are skipped
    head_suffixes: tuple[str, ...]  # config.architectures suffixes that identify the task
    extra_axes: tuple[str, ...] = ()  # axes inserted after batch_size in every input (multiple-choice)
    required_shapes: tuple[str, ...] = ()  # shape options the user must give (no sane default)


@dataclass(frozen=True)
class Family:
    name: str
    modality: str  # "text" | "vision"
    inputs: tuple[InputSpec, ...]
    tasks: tuple[str, ...]
    atol: float
    # shape defaults; a callable takes the model config (e.g. image size)
    default_shapes: dict[str, object] = field(default_factory=dict)
    # shape option -> config attribute that bounds it (e.g. sequence_length <= max_position_embeddings)
    shape_limits: dict[str, str] = field(default_factory=dict)
    required_shapes: tuple[str, ...] = ()
    neuron_model_type: str = "generic"  # neuronx-cc --model-type


@dataclass(frozen=True)
class Architecture:
    model_type: str
    family: Family
    without_inputs: tuple[str, ...] = ()
    # Position ids that no token can use, from the config: RoBERTa-style models number positions
    # from pad_token_id + 1, so max_position_embeddings overstates the longest sequence.
    reserved_positions: Optional[Callable[[object], int]] = None

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        return tuple(i for i in self.family.inputs if i.name not in self.without_inputs)


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("feature-extraction", "AutoModel", ("last_hidden_state", "pooler_output"), ("Model",)),
        TaskSpec("fill-mask", "AutoModelForMaskedLM", ("logits",), ("ForMaskedLM",)),
        TaskSpec("text-classification", "AutoModelForSequenceClassification", ("logits",), ("ForSequenceClassification",)),
        TaskSpec("token-classification", "AutoModelForTokenClassification", ("logits",), ("ForTokenClassification",)),
        TaskSpec("question-answering", "AutoModelForQuestionAnswering", ("start_logits", "end_logits"), ("ForQuestionAnswering",)),
        TaskSpec(
            "multiple-choice",
            "AutoModelForMultipleChoice",
            ("logits",),
            ("ForMultipleChoice",),
            extra_axes=("num_choices",),
            required_shapes=("num_choices",),
        ),
        TaskSpec(
            "image-classification",
            "AutoModelForImageClassification",
            ("logits",),
            ("ForImageClassification", "ForImageClassificationWithTeacher"),
        ),
    )
}

# Sentence-transformers folders (modules.json): the encoder plus its pooling and normalization.
SENTENCE_TRANSFORMERS_OUTPUTS = ("token_embeddings", "sentence_embedding")

# Diffusers pipelines, detected from model_index.json's _class_name; exported component by component.
DIFFUSION_TASKS = {
    "StableDiffusionPipeline": "stable-diffusion",
    "StableDiffusionImg2ImgPipeline": "stable-diffusion",
    "StableDiffusionXLPipeline": "stable-diffusion-xl",
    "StableDiffusionXLImg2ImgPipeline": "stable-diffusion-xl",
}


@dataclass(frozen=True)
class DiffusionComponent:
    """One compiled component of a diffusion pipeline. Input axes name shape values that the
    exporter resolves from the pipeline's configs and the shape options (see diffusion/export.py)."""

    name: str  # its folder in the artifact, e.g. "vae_decoder"
    source: str  # the pipeline folder it is built from ("vae" for both VAE halves)
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]  # absent ones (CLIPTextModel has no text_embeds) are skipped
    atol: float
    neuron_model_type: str = "generic"  # neuronx-cc --model-type
    hidden_states: bool = False  # text encoders: also every layer's output (SDXL reads the penultimate)


_UNET_INPUTS = (
    InputSpec("sample", ("unet_batch_size", "latent_channels", "latent_height", "latent_width"), "gaussian", "float32"),
    InputSpec("timestep", ("unet_batch_size",), "timestep", "float32"),
    InputSpec("encoder_hidden_states", ("unet_batch_size", "sequence_length", "cross_attention_dim"), "gaussian", "float32"),
)
# SDXL's added conditions (added_cond_kwargs): the pooled text_encoder_2 embedding and the size / crop ids.
_SDXL_UNET_INPUTS = _UNET_INPUTS + (
    InputSpec("text_embeds", ("unet_batch_size", "text_embeds_dim"), "gaussian", "float32"),
    InputSpec("time_ids", ("unet_batch_size", "time_ids_dim"), "time_ids", "float32"),
)
_CLIP_INPUTS = (InputSpec("input_ids", ("batch_size", "sequence_length"), "clip_token_ids"),)
# The UNet runs on batch_size x num_images_per_prompt x 2 rows: classifier-free guidance.
_UNET = DiffusionComponent("unet", "unet", _UNET_INPUTS, ("sample",), 1e-3, "unet-inference")
_SDXL_UNET = DiffusionComponent("unet", "unet", _SDXL_UNET_INPUTS, ("sample",), 1e-3, "unet-inference")
_VAE_ENCODER = DiffusionComponent(
    "vae_encoder",
    "vae",
    (InputSpec("sample", ("batch_size", "image_channels", "height", "width"), "gaussian", "float32"),),
    ("latent_parameters",),  # mean and log-variance of the latent distribution, concatenated
    1e-3,
)
_VAE_DECODER = DiffusionComponent(
    "vae_decoder",
    "vae",
    (InputSpec("latent_sample", ("images_batch_size", "latent_channels", "latent_height", "latent_width"), "gaussian", "float32"),),
    ("sample",),
    1e-3,
)

DIFFUSION_COMPONENTS: dict[str, tuple[DiffusionComponent, ...]] = {
    "stable-diffusion": (
        DiffusionComponent("text_encoder", "text_encoder", _CLIP_INPUTS, ("last_hidden_state",), 1e-3, "transformer"),
        _UNET,
        _VAE_ENCODER,
        _VAE_DECODER,
    ),
    "stable-diffusion-xl": (
        DiffusionComponent("text_encoder", "text_encoder", _CLIP_INPUTS, ("text_embeds", "last_hidden_state"), 1e-3, "transformer", True),
        DiffusionComponent("text_encoder_2", "text_encoder_2", _CLIP_INPUTS, ("text_embeds", "last_hidden_state"), 1e-3, "transformer", True),
        _SDXL_UNET,
        _VAE_ENCODER,
        _VAE_DECODER,
    ),
}

TEXT_ENCODER = Family(
    name="text-encoder",
    modality="text",
    inputs=(
        InputSpec("input_ids", ("batch_size", "sequence_length"), "token_ids"),
        InputSpec("attention_mask", ("batch_size", "sequence_length"), "attention_mask"),
        InputSpec("token_type_ids", ("batch_size", "sequence_length"), "token_type_ids"),
    ),
    tasks=(
        "feature-extraction",
        "fill-mask",
        "text-classification",
        "token-classification",
        "question-answering",
        "multiple-choice",
    ),
    atol=1e-4,
    default_shapes={"batch_size": 1},
    shape_limits={"sequence_length": "max_position_embeddings"},
    required_shapes=("sequence_length",),
    neuron_model_type="transformer",
)


def _config_value(*names: str, default: int) -> Callable[[object], int]:
    def read(config: object) -> int:
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, (list, tuple)):
                value = value[0]
            if isinstance(value, int):
                return value
        return default

    return read


VISION_ENCODER = Family(
    name="vision-encoder",
    modality="vision",
    inputs=(InputSpec("pixel_values", ("batch_size", "num_channels", "height", "width"), "pixel_values", "float32"),),
    tasks=("feature-extraction", "image-classification"),
    atol=1e-4,
    default_shapes={
        "batch_size": 1,
        "num_channels": _config_value("num_channels", default=3),
        "height": _config_value("image_size", default=224),
        "width": _config_value("image_size", default=224),
    },
)

_NO_TOKEN_TYPES = ("token_type_ids",)


def _positions_up_to_padding(config: object) -> int:
    return int(getattr(config, "pad_token_id", None) or 0) + 1

ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        Architecture("bert", TEXT_ENCODER),
        Architecture("distilbert", TEXT_ENCODER, _NO_TOKEN_TYPES),
        Architecture("roberta", TEXT_ENCODER, _NO_TOKEN_TYPES, _positions_up_to_padding),
        Architecture("xlm-roberta", TEXT_ENCODER, _NO_TOKEN_TYPES, _positions_up_to_padding),
        Architecture("camembert", TEXT_ENCODER, _NO_TOKEN_TYPES, _positions_up_to_padding),
        Architecture("albert", TEXT_ENCODER),
        Architecture("electra", TEXT_ENCODER),
        Architecture("mpnet", TEXT_ENCODER, _NO_TOKEN_TYPES, _positions_up_to_padding),
        Architecture("deberta-v2", TEXT_ENCODER),
        Architecture("mobilebert", TEXT_ENCODER),
        Architecture("vit", VISION_ENCODER),
        Architecture("deit", VISION_ENCODER),
        Architecture("convnext", VISION_ENCODER),
        Architecture("swin", VISION_ENCODER),
        Architecture("beit", VISION_ENCODER),
    )
}


def get_architecture(model_type: str) -> Architecture:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise NeuronExportError(
            f"architecture {model_type!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}"
        ) from None


def supported_tasks(model_type: str) -> list[str]:
    """Tasks an architecture can be exported for, e.g. supported_tasks("distilbert")."""
    if model_type in ("stable-diffusion", "stable-diffusion-xl"):
        return [model_type]
    arch = get_architecture(model_type)
    return sorted(t for t in arch.family.tasks if head_class_name(model_type, t))


def auto_class(task: str):
    """The transformers Auto class of a task, imported from its module directly: the package's lazy
    attribute lookup is not safe while another thread (a dashboard rerun) is importing it."""
    from transformers.models.auto import modeling_auto

    return getattr(modeling_auto, TASKS[task].auto_class)


def head_class_name(model_type: str, task: str) -> Optional[str]:
    """Name of transformers' head class for (architecture, task), or None when it has none."""
    # The Auto class's lazy mapping is keyed by model_type; reading keys imports nothing.
    name = auto_class(task)._model_mapping._model_mapping.get(model_type)
    return name[0] if isinstance(name, (tuple, list)) else name


def check_task(model_type: str, task: str) -> TaskSpec:
    tasks = supported_tasks(model_type)
    if task not in tasks:
        raise NeuronExportError(f"{model_type} does not support task {task!r}; its tasks: {', '.join(tasks)}")
    return TASKS[task]


def detect_task(model_type: str, architectures: Optional[list[str]]) -> str:
    """The task a checkpoint was saved for, from its config's `architectures` (head class name)."""
    tasks = supported_tasks(model_type)
    if architectures:
        head = architectures[0]
        # Longest suffix first: "ForImageClassificationWithTeacher" before "Model".
        candidates = sorted(
            ((s, t) for t in tasks for s in TASKS[t].head_suffixes), key=lambda pair: -len(pair[0])
        )
        for suffix, task in candidates:
            if head.endswith(suffix):
                return task
    found = f"architectures {architectures}" if architectures else "no 'architectures' in config.json"
    raise NeuronExportError(f"cannot infer the task ({found}); pass --task, one of: {', '.join(tasks)}")
