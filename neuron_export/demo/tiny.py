"""Tiny random-weight models built from the registry's tiny configs, offline and deterministic.

Every builder seeds torch before constructing a model, so rebuilding with the same seed writes
identical weights. torch / transformers / diffusers are imported inside the functions so that
importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..errors import NeuronExportError
from ..registry import ARCHITECTURES, TASKS, TINY_IMAGE_SIZE, head_class_name
from .vocab import TEXT_MAX_LENGTH, make_clip_tokenizer, make_ctc_tokenizer, make_wordpiece_tokenizer, roberta_style, special_tokens


def make_tiny_model(model_type: str, task: str, seed: int = 0, modality: Optional[str] = None) -> tuple[Any, Any]:
    """The tiny (model, preprocessor) pair in memory (same seed -> same weights): a tokenizer, image
    processor, feature extractor or processor, as the architecture's family takes.
    modality: refuse an architecture of another one ("text", "vision", "audio", "text-image")."""
    head = _check_model_task(model_type, task, modality)
    import torch
    import transformers

    arch = ARCHITECTURES[model_type]
    processor, values = _TINY_PREPROCESSORS[arch.family.modality](arch, task)
    config = _config(model_type, task, **values)
    if arch.family.modality == "audio":
        # The feature extractor returns a mask exactly when the model takes one (layer-norm wav2vec2s).
        extractor = getattr(processor, "feature_extractor", processor)
        extractor.return_attention_mask = any(spec.name == "attention_mask" for spec in arch.task_inputs(task, config))
    torch.manual_seed(seed)
    # The concrete class, not Auto*.from_config: deit's image-classification mapping is a tuple
    # (with and without teacher) and Auto*.from_config trips over it in transformers 5.
    model = getattr(transformers, head)(config).eval()
    _redraw_weights(model, arch, task, config, processor, seed)
    return model, processor


def _text_preprocessor(arch, task: str):
    tokenizer = make_wordpiece_tokenizer(arch.model_type)
    return tokenizer, _text_config_values(arch.model_type, tokenizer)


def _image_processor(arch):
    import transformers

    class_name, keywords = arch.tiny_processor
    return getattr(transformers, class_name)(**keywords)


def _vision_preprocessor(arch, task: str):
    return _image_processor(arch), dict(image_size=TINY_IMAGE_SIZE, num_channels=3)


def _audio_preprocessor(arch, task: str):
    """The feature extractor; for speech recognition a Wav2Vec2Processor with a letter CTC tokenizer."""
    import transformers

    extractor = _image_processor(arch)  # the tiny_processor entry: a feature extractor here
    if task != "automatic-speech-recognition":
        return extractor, {}
    tokenizer = make_ctc_tokenizer()
    processor = transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)
    return processor, dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)


def _text_image_preprocessor(arch, task: str):
    """CLIPProcessor: the tiny CLIP BPE tokenizer and the image processor; the text config takes the tokenizer's ids."""
    import transformers

    tokenizer = make_clip_tokenizer()
    processor = transformers.CLIPProcessor(image_processor=_image_processor(arch), tokenizer=tokenizer)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    return processor, dict(text_config=ids)


# Family modality -> (architecture, task) -> (preprocessor, config values it implies).
_TINY_PREPROCESSORS = {
    "text": _text_preprocessor,
    "vision": _vision_preprocessor,
    "audio": _audio_preprocessor,
    "text-image": _text_image_preprocessor,
}


def _redraw_weights(model, arch, task: str, config, processor, seed: int) -> None:
    """transformers' init (normal, std 0.02) leaves tiny models' outputs near 0 (classification heads
    ~1e-3; conv + BatchNorm stacks 1e-25 to exactly 0), and a 1e-4 comparison then passes whatever
    the compiled model does. Re-draw every Linear and convolution with PyTorch's default init and
    calibrate BatchNorm statistics on random inputs, so that outputs are of order 1."""
    import torch

    torch.manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.reset_parameters()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for batch in range(2):
            model(**_calibration_inputs(arch, task, config, processor, seed + batch))
    model.eval()


def _calibration_inputs(arch, task: str, config, processor, seed: int):
    """A batch of 4 random inputs of the tiny model's own shapes."""
    from ..inputs import input_axes, input_shapes, make_inputs

    image_processor = getattr(processor, "image_processor", processor)
    preprocessor = image_processor.to_dict() if hasattr(image_processor, "to_dict") else {}
    shapes = {axis: default(config, preprocessor) if callable(default) else default for axis, default in arch.family.default_shapes.items()}
    shapes.update(batch_size=4, text_batch_size=4, image_batch_size=4, sequence_length=16, num_choices=2, audio_sequence_length=1600)
    specs = arch.task_inputs(task, config)
    return make_inputs(specs, input_shapes(input_axes(specs, TASKS[task]), shapes), config, seed=seed)


def build_tiny_model(model_type: str, task: str, out_dir, seed: int = 0, modality: Optional[str] = None) -> Path:
    """Save a tiny random-weight model and its preprocessor (a real English WordPiece tokenizer,
    or an image processor for TINY_IMAGE_SIZE images) into out_dir."""
    model, processor = make_tiny_model(model_type, task, seed, modality)
    out = prepare_dir(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def build_tiny_text_model(model_type: str, task: str, out_dir, seed: int = 0) -> Path:
    return build_tiny_model(model_type, task, out_dir, seed, modality="text")


def build_tiny_vision_model(model_type: str, task: str, out_dir, seed: int = 0) -> Path:
    return build_tiny_model(model_type, task, out_dir, seed, modality="vision")


def prepare_dir(out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_model_task(model_type: str, task: str, modality: Optional[str]) -> str:
    """transformers' head class for (architecture, task), or an error naming what is valid."""
    kind = modality or "model"
    archs = [name for name, arch in ARCHITECTURES.items() if modality in (None, arch.family.modality)]
    if model_type not in archs:
        raise NeuronExportError(f"unknown tiny {kind} architecture {model_type!r}; choose one of: {', '.join(archs)}")
    tasks = ARCHITECTURES[model_type].family.tasks
    if task not in tasks:
        raise NeuronExportError(f"unknown {kind} task {task!r}; choose one of: {', '.join(tasks)}")
    head = head_class_name(model_type, task)
    if head is None:
        valid = [t for t in tasks if head_class_name(model_type, t)]
        raise NeuronExportError(f"transformers has no {task} head for {model_type}; valid tasks for {model_type}: {', '.join(valid)}")
    return head


def _text_config_values(model_type: str, tokenizer) -> dict[str, Any]:
    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in special_tokens(model_type).items()}
    return dict(
        vocab_size=len(tokenizer),
        pad_token_id=ids["pad"],
        bos_token_id=ids["cls"],
        eos_token_id=ids["sep"],
        cls_token_id=ids["cls"],  # modernbert's defaults are outside a tiny vocabulary
        sep_token_id=ids["sep"],
        mask_token_id=ids["mask"],  # esm's token dropout scales by the share of masked tokens
        # RoBERTa-style position ids start at padding_idx + 1.
        max_position_embeddings=TEXT_MAX_LENGTH + (ids["pad"] + 1 if roberta_style(model_type) else 0),
    )


def _config(model_type: str, task: str, **values: Any):
    """The tiny config: the registry's, over `values` (sub-configs such as CLIP's text_config merged)."""
    from transformers import AutoConfig

    labels = TASKS[task].labels
    if labels:
        values.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    for key, value in ARCHITECTURES[model_type].tiny.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) and isinstance(values.get(key), dict) else value
    return AutoConfig.for_model(model_type, **values)


def _clip_text_config(tokenizer):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, hidden_act="gelu", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def _tiny_unet(xl: bool, text_hidden: int, seed: int, **overrides: Any):
    """The tiny (SDXL) UNet; overrides: config values of a variant (an LCM's time_cond_proj_dim, ...)."""
    from diffusers import UNet2DConditionModel
    import torch

    unet_kwargs = dict(
        block_out_channels=(32, 64), layers_per_block=2, in_channels=4, out_channels=4, attention_head_dim=(2, 4),
        sample_size=8,  # 8 latent pixels = 64 image pixels (VAE scale factor 8)
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=32, cross_attention_dim=text_hidden,
    )
    if xl:
        addition_time_embed_dim, projection_dim = 8, 32
        unet_kwargs.update(
            cross_attention_dim=2 * text_hidden,  # both encoders' hidden states are concatenated
            addition_embed_type="text_time",
            addition_time_embed_dim=addition_time_embed_dim,
            # 6 time ids (orig size, crop coords, target size) + pooled text_encoder_2 embedding
            projection_class_embeddings_input_dim=6 * addition_time_embed_dim + projection_dim,
            transformer_layers_per_block=(1, 1),
            use_linear_projection=True,
        )
    unet_kwargs.update(overrides)
    torch.manual_seed(seed)
    return UNet2DConditionModel(**unet_kwargs)


def _tiny_vae(seed: int):
    from diffusers import AutoencoderKL
    import torch

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=64,
    )


SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def make_tiny_sd_pipeline(xl: bool = False, seed: int = 0):
    """A tiny random-weight StableDiffusion(XL)Pipeline for 64x64 images."""
    import torch
    from diffusers import EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = make_clip_tokenizer()
    text_hidden = 32
    unet, vae = _tiny_unet(xl, text_hidden, seed), _tiny_vae(seed + 1)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer)).eval()
    if not xl:
        scheduler = PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=False, **SCHEDULER_CONFIG)
        return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(tokenizer)).eval()
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer, tokenizer_2=make_clip_tokenizer(),
        unet=unet, scheduler=EulerDiscreteScheduler(timestep_spacing="leading", **SCHEDULER_CONFIG), force_zeros_for_empty_prompt=True,
    )


def build_tiny_stable_diffusion(out_dir, xl: bool = False, seed: int = 0, variant: Optional[str] = None,
                                controlnets: int = 0) -> Path:
    """Save a tiny random-weight StableDiffusion(XL)Pipeline (64x64 images) into out_dir; variant: one of
    tiny_variants.VARIANTS instead (lcm, sdxl-turbo, sdxl-refiner, sd-inpaint, ...); controlnets: a
    StableDiffusion(XL)ControlNetPipeline with that many ControlNets (tiny_controlnet.py)."""
    if controlnets:
        from .tiny_controlnet import build_tiny_controlnet_pipeline

        return build_tiny_controlnet_pipeline(out_dir, controlnets, seed, xl)
    if variant is not None:
        from .tiny_variants import make_tiny_variant

        pipe = make_tiny_variant(variant, seed)
    else:
        pipe = make_tiny_sd_pipeline(xl=xl, seed=seed)
    out = prepare_dir(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    return out
