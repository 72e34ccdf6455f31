"""Model families and architectures.

A family declares its inputs (with their shape axes), the tasks it can serve, default shapes and
atol; an architecture names its family, the inputs it lacks, and the tiny config its demo and test
models are built from. Which of the family's tasks an architecture supports is derived from
transformers' Auto mappings (tasks.py), so adding an architecture is one entry in ARCHITECTURES.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .inputs import AUDIO_INPUTS, PAD, SPECTROGRAM_INPUTS, TEXT_IMAGE_INPUTS, TEXT_INPUTS, VISION_INPUTS, BucketAxes, InputSpec

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
    # inputs only some checkpoints take: input name -> whether a model config takes it
    optional_inputs: dict[str, Callable[[Any], bool]] = field(default_factory=dict)
    # tasks whose inputs are not the family's (CLIP's image classifier takes images only)
    task_inputs: dict[str, tuple[InputSpec, ...]] = field(default_factory=dict)
    # output axes computed from the input sizes and the config (audio frames from samples)
    derived_axes: dict[str, Callable[[Any, dict[str, int]], int]] = field(default_factory=dict)
    # the axis that TaskSpec output axes call "positions" (tokens, audio frames); None: not paddable
    positions_axis: Optional[str] = None
    # task -> NeuronModel class name / output type where the family's differ from the task's
    model_classes: dict[str, str] = field(default_factory=dict)
    output_types: dict[str, str] = field(default_factory=dict)
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
    call_options: dict[str, Any] = field(default_factory=dict)  # keywords of every forward call (phi: no cache)
    output_types: dict[str, str] = field(default_factory=dict)  # task -> its own output type (cvt's CLS token)
    atol: Optional[float] = None  # its own validation tolerance, where the family's is too tight for it
    # top-level modules that are a task head in a model whose body has no base-model prefix (CLIP's
    # image classifier is vision_model + classifier): missing weights there are a head's, not the body's
    unprefixed_heads: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        return tuple(i for i in self.family.inputs if i.name not in self.without_inputs)

    def task_inputs(self, task: str, config: Any = None) -> tuple[InputSpec, ...]:
        """The inputs of a model of this architecture for `task`; `config` (the checkpoint's) decides
        the optional ones, which are left out without it."""
        specs = self.family.task_inputs.get(task, self.family.inputs)
        optional = self.family.optional_inputs
        return tuple(
            i for i in specs
            if i.name not in self.without_inputs and (i.name not in optional or (config is not None and optional[i.name](config)))
        )


def config_attr(config: Any, dotted: str) -> Any:
    """config.a.b for "a.b", through sub-configs that are objects or (in config.json) dicts."""
    value = config
    for name in dotted.split("."):
        value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
        if value is None:
            return None
    return value


def config_value(*names: str, default: int, index: int = 0) -> Callable[..., int]:
    """A shape default read from the model config (the first of `names` it has; `index` picks from a
    pair such as YOLOS' image_size [height, width]). Shape defaults take (config, preprocessor config)."""

    def read(config: Any, preprocessor: Optional[dict] = None) -> int:
        for name in names:
            value = config_attr(config, name)
            if isinstance(value, (list, tuple)):
                value = value[min(index, len(value) - 1)]
            if isinstance(value, int):
                return value
        return default

    return read


def processor_image_size(preprocessor: dict) -> Optional[tuple[int, int]]:
    """(height, width) of the images an image processor config makes, when it makes one fixed size:
    its center crop, a fixed height x width, or a square of its shortest edge (resized, then cropped
    or warped); None when the size follows the image (YOLOS keeps the aspect ratio)."""
    crop = preprocessor.get("crop_size") if preprocessor.get("do_center_crop") else None
    for size in (crop, preprocessor.get("size")):
        if isinstance(size, int):
            return size, size
        if isinstance(size, dict):
            fixed = {k: v for k, v in size.items() if v is not None}
            if isinstance(fixed.get("height"), int) and isinstance(fixed.get("width"), int):
                return fixed["height"], fixed["width"]
            if set(fixed) == {"shortest_edge"}:
                return fixed["shortest_edge"], fixed["shortest_edge"]
    return None


def image_side(side: str, *config_names: str) -> Callable[..., int]:
    """Default --height / --width: what the model's image processor makes, else the config's image size."""
    from_config = config_value(*config_names, default=224, index=0 if side == "height" else 1)

    def read(config: Any, preprocessor: Optional[dict] = None) -> int:
        size = processor_image_size(preprocessor or {})
        return size[0 if side == "height" else 1] if size else from_config(config)

    return read


def audio_frames(config: Any, sizes: dict[str, int]) -> int:
    """Frames of a wav2vec2-style feature encoder for sizes["audio_sequence_length"] samples
    (transformers' _get_feat_extract_output_lengths)."""
    length = sizes["audio_sequence_length"]
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        length = (length - kernel) // stride + 1
    if getattr(config, "add_adapter", False):
        for _ in range(config.num_adapter_layers):
            length = (length - 1) // config.adapter_stride + 1
    return length


def takes_attention_mask(config: Any) -> bool:
    """Layer-norm feature encoders are trained with an attention mask (padding is then inert);
    group-norm ones without (transformers' Wav2Vec2FeatureExtractor documentation)."""
    return config_attr(config, "feat_extract_norm") == "layer"


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
    positions_axis="sequence_length",
    bucketable=(BucketAxes(("sequence_length",), PAD),),
)

VISION_ENCODER = Family(
    name="vision-encoder",
    modality="vision",
    inputs=VISION_INPUTS,
    tasks=("feature-extraction", "image-classification", "semantic-segmentation", "image-segmentation", "object-detection",
           "depth-estimation"),
    atol=1e-4,
    processor="AutoImageProcessor",
    default_shapes={
        "batch_size": 1,
        "num_channels": config_value("num_channels", default=3),
        "height": image_side("height", "image_size"),
        "width": image_side("width", "image_size"),
    },
)


AUDIO_ENCODER = Family(
    name="audio-encoder",
    modality="audio",
    inputs=AUDIO_INPUTS,
    tasks=("feature-extraction", "automatic-speech-recognition", "audio-classification", "audio-frame-classification", "audio-xvector"),
    atol=1e-4,
    processor="AutoProcessor",  # feature extractor, with the CTC tokenizer when there is one
    default_shapes={"batch_size": 1},
    optional_inputs={"attention_mask": takes_attention_mask},
    derived_axes={"audio_frames": audio_frames},
    positions_axis="audio_frames",
    output_types={"feature-extraction": "Wav2Vec2BaseModelOutput"},
)

SPECTROGRAM_ENCODER = Family(
    name="spectrogram-encoder",
    modality="audio",
    inputs=SPECTROGRAM_INPUTS,
    tasks=("feature-extraction", "audio-classification"),
    atol=1e-4,
    processor="AutoProcessor",
    # The feature extractor always makes max_length frames of num_mel_bins: the config fixes both.
    default_shapes={"batch_size": 1, "num_frames": config_value("max_length", default=1024),
                    "num_mel_bins": config_value("num_mel_bins", default=128)},
)

TEXT_IMAGE_ENCODER = Family(
    name="text-image-encoder",
    modality="text-image",
    inputs=TEXT_IMAGE_INPUTS,
    tasks=("feature-extraction", "zero-shot-image-classification", "image-classification"),
    atol=1e-4,
    processor="AutoProcessor",  # tokenizer and image processor
    default_shapes={
        "batch_size": 1,
        "image_batch_size": 1,
        "sequence_length": config_value("text_config.max_position_embeddings", default=77),
        "num_channels": config_value("vision_config.num_channels", default=3),
        "height": image_side("height", "vision_config.image_size"),
        "width": image_side("width", "vision_config.image_size"),
    },
    shape_limits={"sequence_length": "text_config.max_position_embeddings"},
    task_inputs={"image-classification": VISION_INPUTS},
    model_classes={"feature-extraction": "NeuronCLIPModel"},
    output_types={"feature-extraction": "transformers.models.clip.modeling_clip.CLIPOutput"},
)

FAMILIES = (TEXT_ENCODER, VISION_ENCODER, AUDIO_ENCODER, SPECTROGRAM_ENCODER, TEXT_IMAGE_ENCODER)


def _positions_after_padding(config: Any) -> int:
    return int(getattr(config, "pad_token_id", None) or 0) + 1


NO_TOKEN_TYPES = ("token_type_ids",)
_BERT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
_VIT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, patch_size=8)
_SQUARE = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
_ROBERTA_STYLE = dict(without_inputs=NO_TOKEN_TYPES, reserved_positions=_positions_after_padding)
_XLM_LIKE = dict(emb_dim=32, n_layers=2, n_heads=4)
# A 3-layer feature encoder (x20 downsampling), and the x-vector head's small TDNN (dilated: see the README)
_AUDIO_LIKE = dict(_BERT_LIKE, conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
                   num_conv_pos_embedding_groups=4, tdnn_dim=(16, 16, 32), tdnn_kernel=(3, 3, 1), tdnn_dilation=(1, 2, 1),
                   xvector_output_dim=16, classifier_proj_size=16)
_LAYER_NORM = dict(feat_extract_norm="layer", do_stable_layer_norm=True)  # takes an attention mask (takes_attention_mask)
_WAVEFORM_PROCESSOR = ("Wav2Vec2FeatureExtractor", {"feature_size": 1, "sampling_rate": 16000, "padding_value": 0.0, "do_normalize": True})

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
                     tiny=dict(_VIT_LIKE, use_mean_pooling=True, use_relative_position_bias=False, use_absolute_position_embeddings=True,
                               # semantic segmentation: 4 feature maps for its decode head
                               num_hidden_layers=4, out_indices=[0, 1, 2, 3], pool_scales=[1, 2], auxiliary_channels=8,
                               auxiliary_num_convs=1),
                     tiny_processor=("BeitImageProcessorPil", {"size": _SQUARE, "crop_size": _SQUARE, "do_center_crop": False})),
        # ---- optimum-neuron's other encoders (text, vision, audio, CLIP) ----
        Architecture("deberta", TEXT_ENCODER, tiny=dict(_BERT_LIKE, type_vocab_size=0)),
        Architecture("flaubert", TEXT_ENCODER, tiny=_XLM_LIKE),
        Architecture("xlm", TEXT_ENCODER, tiny=_XLM_LIKE),
        Architecture("roformer", TEXT_ENCODER, tiny=dict(_BERT_LIKE, embedding_size=16)),
        Architecture("convbert", TEXT_ENCODER, tiny=dict(_BERT_LIKE, embedding_size=16)),
        Architecture("esm", TEXT_ENCODER, **_ROBERTA_STYLE, tiny=_BERT_LIKE),
        Architecture("modernbert", TEXT_ENCODER, NO_TOKEN_TYPES, tiny=dict(_BERT_LIKE, global_attn_every_n_layers=2, local_attention=8)),
        # A decoder used as an encoder: without use_cache=False it also returns a cache, which cannot be traced.
        Architecture("phi", TEXT_ENCODER, NO_TOKEN_TYPES, call_options={"use_cache": False}, tiny=_BERT_LIKE),
        Architecture("convnextv2", VISION_ENCODER,
                     tiny=dict(num_stages=4, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], patch_size=4),
                     tiny_processor=("ConvNextImageProcessorPil", {"size": {"shortest_edge": TINY_IMAGE_SIZE}, "crop_pct": 0.875})),
        # CvT: depth[i] must exceed i (transformers indexes its drop-path list by stage); no image_size in its config.
        Architecture("cvt", VISION_ENCODER, tiny=dict(embed_dim=[8, 16, 24], num_heads=[1, 2, 3], depth=[1, 2, 3]),
                     output_types={"feature-extraction": "transformers.models.cvt.modeling_cvt.BaseModelOutputWithCLSToken"},
                     tiny_processor=("ConvNextImageProcessorPil", {"size": {"shortest_edge": TINY_IMAGE_SIZE}, "crop_pct": 0.875})),
        Architecture("levit", VISION_ENCODER,
                     tiny=dict(hidden_sizes=[16, 24, 32], num_attention_heads=[1, 2, 2], depths=[1, 1, 1], key_dim=[8, 8, 8],
                               patch_size=16, down_ops=[["Subsample", 8, 2, 4, 2, 2], ["Subsample", 8, 3, 4, 2, 2]]),
                     tiny_processor=("LevitImageProcessorPil", {"size": {"shortest_edge": TINY_IMAGE_SIZE}, "crop_size": _SQUARE})),
        Architecture("donut-swin", VISION_ENCODER,
                     tiny=dict(patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=4, mlp_ratio=2.0),
                     tiny_processor=("DonutImageProcessorPil", {"size": _SQUARE})),  # keeps the aspect ratio, then pads
        Architecture("dpt", VISION_ENCODER,
                     tiny=dict(_VIT_LIKE, num_hidden_layers=4, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8],
                               fusion_hidden_size=8, reassemble_factors=[4, 2, 1, 0.5], head_in_index=-1),
                     tiny_processor=("DPTImageProcessorPil", {"size": _SQUARE})),
        # Compiling folds BatchNorm into its 1280-channel 1x1 convolution: sums reordered, ~1e-4 apart at ReLU6 scale.
        Architecture("mobilenet_v2", VISION_ENCODER, atol=1e-3, tiny=dict(depth_multiplier=0.25, min_depth=4),
                     tiny_processor=("MobileNetV2ImageProcessorPil", {"size": {"shortest_edge": TINY_IMAGE_SIZE}, "crop_size": _SQUARE})),
        Architecture("mobilevit", VISION_ENCODER,
                     tiny=dict(hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32], num_attention_heads=2, patch_size=2),
                     tiny_processor=("MobileViTImageProcessorPil", {"size": {"shortest_edge": TINY_IMAGE_SIZE}, "crop_size": _SQUARE})),
        # YOLOS: a fixed height x width (its processor otherwise keeps the aspect ratio: 800 px shortest edge).
        Architecture("yolos", VISION_ENCODER, tiny=dict(_VIT_LIKE, image_size=[TINY_IMAGE_SIZE, 48], num_detection_tokens=5),
                     tiny_processor=("YolosImageProcessorPil", {"size": {"height": TINY_IMAGE_SIZE, "width": 48}})),
        Architecture("wav2vec2", AUDIO_ENCODER, tiny=dict(_AUDIO_LIKE, **_LAYER_NORM), tiny_processor=_WAVEFORM_PROCESSOR),
        Architecture("wavlm", AUDIO_ENCODER, tiny=dict(_AUDIO_LIKE, num_buckets=32, max_bucket_distance=80), tiny_processor=_WAVEFORM_PROCESSOR),
        Architecture("unispeech-sat", AUDIO_ENCODER, tiny=dict(_AUDIO_LIKE, **_LAYER_NORM), tiny_processor=_WAVEFORM_PROCESSOR),
        Architecture("hubert", AUDIO_ENCODER, tiny=_AUDIO_LIKE, tiny_processor=_WAVEFORM_PROCESSOR),
        Architecture("unispeech", AUDIO_ENCODER, tiny=_AUDIO_LIKE, tiny_processor=_WAVEFORM_PROCESSOR),
        Architecture("audio-spectrogram-transformer", SPECTROGRAM_ENCODER, tiny=dict(_BERT_LIKE, max_length=64, num_mel_bins=32),
                     tiny_processor=("ASTFeatureExtractor", {"num_mel_bins": 32, "max_length": 64})),
        Architecture("clip", TEXT_IMAGE_ENCODER,
                     tiny=dict(projection_dim=16, text_config=dict(_BERT_LIKE, intermediate_size=37, max_position_embeddings=77),
                               vision_config=dict(_VIT_LIKE, intermediate_size=37, image_size=TINY_IMAGE_SIZE)),
                     tiny_processor=("CLIPImageProcessorPil", {"size": {"shortest_edge": TINY_IMAGE_SIZE}, "crop_size": _SQUARE}),
                     unprefixed_heads=("classifier",)),
    )
}
