"""Model families and architectures.

A family declares its inputs (with their shape axes), the tasks it can serve, default shapes and
atol; an architecture names its family, the inputs it lacks, and the tiny config its demo and test
models are built from. Which of the family's tasks an architecture supports is derived from
transformers' Auto mappings (tasks.py), so adding an architecture is one entry in ARCHITECTURES.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .inputs import PAD, TEXT_INPUTS, VISION_INPUTS, BucketAxes, InputSpec

TINY_IMAGE_SIZE = 32  # pixels of the tiny vision models' images


@dataclass(frozen=True)
class Family:
    name: str
    modality: str  # "text" | "vision"; picks the playground view of a task (TaskSpec.views)
    inputs: tuple[InputSpec, ...]
    tasks: tuple[str, ...]
    atol: float
    processor: str  # the transformers Auto class of its preprocessor
    # shape defaults; a callable takes the model config (e.g. image size)
    default_shapes: dict[str, object] = field(default_factory=dict)
    # shape option -> config attribute that bounds it (e.g. sequence_length <= max_position_embeddings)
    shape_limits: dict[str, str] = field(default_factory=dict)
    neuron_model_type: str = "generic"  # neuronx-cc --model-type
    # shape options that may hold several values, one compiled model each (buckets; neuron_export/bucketing.py)
    bucketable: tuple[BucketAxes, ...] = ()


@dataclass(frozen=True)
class Architecture:
    model_type: str
    family: Family
    without_inputs: tuple[str, ...] = ()
    # Position ids that no token can use, from the config: RoBERTa-style models number positions
    # from pad_token_id + 1, so max_position_embeddings overstates the longest sequence.
    reserved_positions: Optional[Callable[[Any], int]] = None
    tiny: dict[str, Any] = field(default_factory=dict)  # config of its tiny demo / test model
    # (class name, keyword arguments) of the tiny model's image processor (vision)
    tiny_processor: Optional[tuple[str, dict[str, Any]]] = None

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        return tuple(i for i in self.family.inputs if i.name not in self.without_inputs)


def config_value(*names: str, default: int) -> Callable[[Any], int]:
    """A shape default read from the model config (the first of `names` it has)."""

    def read(config: Any) -> int:
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, (list, tuple)):
                value = value[0]
            if isinstance(value, int):
                return value
        return default

    return read


TEXT_ENCODER = Family(
    name="text-encoder",
    modality="text",
    inputs=TEXT_INPUTS,
    tasks=("feature-extraction", "fill-mask", "text-classification", "token-classification", "question-answering", "multiple-choice"),
    atol=1e-4,
    processor="AutoTokenizer",
    default_shapes={"batch_size": 1},
    shape_limits={"sequence_length": "max_position_embeddings"},
    neuron_model_type="transformer",
    bucketable=(BucketAxes(("sequence_length",), PAD),),
)

VISION_ENCODER = Family(
    name="vision-encoder",
    modality="vision",
    inputs=VISION_INPUTS,
    tasks=("feature-extraction", "image-classification"),
    atol=1e-4,
    processor="AutoImageProcessor",
    default_shapes={
        "batch_size": 1,
        "num_channels": config_value("num_channels", default=3),
        "height": config_value("image_size", default=224),
        "width": config_value("image_size", default=224),
    },
)


def _positions_after_padding(config: Any) -> int:
    return int(getattr(config, "pad_token_id", None) or 0) + 1


NO_TOKEN_TYPES = ("token_type_ids",)
_BERT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
_VIT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, patch_size=8)
_SQUARE = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
_ROBERTA_STYLE = dict(without_inputs=NO_TOKEN_TYPES, reserved_positions=_positions_after_padding)

ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        Architecture("bert", TEXT_ENCODER, tiny=dict(_BERT_LIKE, type_vocab_size=2)),
        Architecture("distilbert", TEXT_ENCODER, NO_TOKEN_TYPES,
                     tiny=dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, sinusoidal_pos_embds=False)),
        Architecture("roberta", TEXT_ENCODER, **_ROBERTA_STYLE, tiny=dict(_BERT_LIKE, type_vocab_size=1)),
        Architecture("xlm-roberta", TEXT_ENCODER, **_ROBERTA_STYLE, tiny=dict(_BERT_LIKE, type_vocab_size=1)),
        Architecture("camembert", TEXT_ENCODER, **_ROBERTA_STYLE, tiny=dict(_BERT_LIKE, type_vocab_size=1)),
        Architecture("albert", TEXT_ENCODER, tiny=dict(_BERT_LIKE, embedding_size=16, num_hidden_groups=1, inner_group_num=1)),
        Architecture("electra", TEXT_ENCODER, tiny=dict(_BERT_LIKE, embedding_size=16)),
        Architecture("mpnet", TEXT_ENCODER, **_ROBERTA_STYLE, tiny=dict(_BERT_LIKE, relative_attention_num_buckets=32)),
        Architecture("deberta-v2", TEXT_ENCODER, tiny=dict(
            _BERT_LIKE, type_vocab_size=0, relative_attention=True, position_buckets=32, max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True,
            pooler_hidden_size=32,
        )),
        Architecture("mobilebert", TEXT_ENCODER, tiny=dict(
            hidden_size=32, embedding_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            use_bottleneck=True, intra_bottleneck_size=16, true_hidden_size=16, key_query_shared_bottleneck=True,
            num_feedforward_networks=2, normalization_type="no_norm",
        )),
        Architecture("vit", VISION_ENCODER, tiny=_VIT_LIKE, tiny_processor=("ViTImageProcessorPil", {"size": _SQUARE})),
        Architecture("deit", VISION_ENCODER, tiny=_VIT_LIKE,
                     tiny_processor=("DeiTImageProcessorPil", {"size": _SQUARE, "crop_size": _SQUARE, "do_center_crop": False})),
        Architecture("convnext", VISION_ENCODER,
                     tiny=dict(num_stages=4, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], patch_size=4),
                     tiny_processor=("ConvNextImageProcessorPil", {"size": {"shortest_edge": TINY_IMAGE_SIZE}, "crop_pct": 0.875})),
        Architecture("swin", VISION_ENCODER,
                     tiny=dict(patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=4, mlp_ratio=2.0),
                     tiny_processor=("ViTImageProcessorPil", {"size": _SQUARE})),
        Architecture("beit", VISION_ENCODER,
                     tiny=dict(_VIT_LIKE, use_mean_pooling=True, use_relative_position_bias=False, use_absolute_position_embeddings=True),
                     tiny_processor=("BeitImageProcessorPil", {"size": _SQUARE, "crop_size": _SQUARE, "do_center_crop": False})),
    )
}
