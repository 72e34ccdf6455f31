"""Input specs: what a compiled model takes, declared once and read by every layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    name: str
    axes: tuple[str, ...]  # names of shape values, e.g. ("batch_size", "sequence_length")
    kind: str  # picks the dummy input generator (neuron_export/inputs.py GENERATORS)
    dtype: str = "int64"


TEXT_INPUTS = (
    InputSpec("input_ids", ("batch_size", "sequence_length"), "token_ids"),
    InputSpec("attention_mask", ("batch_size", "sequence_length"), "attention_mask"),
    InputSpec("token_type_ids", ("batch_size", "sequence_length"), "token_type_ids"),
)
VISION_INPUTS = (InputSpec("pixel_values", ("batch_size", "num_channels", "height", "width"), "pixel_values", "float32"),)
# Raw 16 kHz samples (wav2vec2 family); the attention mask only for checkpoints that take one
# (Family.optional_inputs): padding is inert for them, and they were trained with it.
AUDIO_INPUTS = (
    InputSpec("input_values", ("batch_size", "audio_sequence_length"), "waveform", "float32"),
    InputSpec("attention_mask", ("batch_size", "audio_sequence_length"), "attention_mask"),
)
# A log-mel spectrogram that the feature extractor always pads or cuts to the config's length (AST).
SPECTROGRAM_INPUTS = (InputSpec("input_values", ("batch_size", "num_frames", "num_mel_bins"), "gaussian", "float32"),)
# CLIP: texts and images in one call, each with its own batch (optimum-neuron's text/image_batch_size).
TEXT_IMAGE_INPUTS = (
    InputSpec("input_ids", ("text_batch_size", "sequence_length"), "clip_token_ids"),
    InputSpec("pixel_values", ("image_batch_size", "num_channels", "height", "width"), "pixel_values", "float32"),
    InputSpec("attention_mask", ("text_batch_size", "sequence_length"), "attention_mask"),
)


# How a call meets a bucket (BucketAxes.fit).
PAD = "pad"  # the smallest bucket at least as large; the padding is masked (attention mask), then cut from the outputs
EXACT = "exact"  # a bucket of exactly the call's size: padding would change the result (pixels, latents)


@dataclass(frozen=True)
class BucketAxes:
    """Shape options that may take several values, one compiled model per value (a bucket).
    Several axes pair by position: --height 512,768 --width 512,768 is 512x512 and 768x768."""

    axes: tuple[str, ...]
    fit: str  # PAD | EXACT
