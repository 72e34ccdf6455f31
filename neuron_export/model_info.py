"""What a model is before compiling it: architecture, detected task, supported tasks, shape options.

Reads config files only (no weights), so a form can show it as the user types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from .errors import NeuronExportError
from .options import SHAPE_FIELDS, ExportOptions
from .registry import (
    DIFFUSERS_PIPELINES, DIFFUSION_TASKS, SENTENCE_TRANSFORMERS, TASKS, BucketAxes, config_attr, detect_task, get_architecture,
    is_diffusion_task, supported_tasks,
)
from .sources import read_preprocessor_config, resolve_model_source

DIFFUSION_SHAPE_OPTIONS = ("batch_size", "height", "width", "num_images_per_prompt")
# Where the family has no default: values to start the form from (sequence_length: cut to the model's limit).
# config.json keys that hold a limit under another name (transformers' attribute_map: GPT-2's n_positions).
LIMIT_ALIASES = {"max_position_embeddings": ("n_positions",)}
SUGGESTED_SHAPES = {"batch_size": 1, "num_choices": 4, "sequence_length": 128, "audio_sequence_length": 16000, "text_batch_size": 4}


@dataclass
class ModelInfo:
    origin: str
    path: Path
    library: str
    model_type: str
    tasks: list[str]
    detected_task: Optional[str]
    detection_note: str  # how the task was found, or why it could not be
    default_shapes: dict[str, int] = field(default_factory=dict)
    shape_limits: dict[str, int] = field(default_factory=dict)

    def shape_options(self, task: str) -> list[str]:
        """The shape options `task` uses, in the CLI's order."""
        if self.library == "diffusers":
            return list(DIFFUSION_SHAPE_OPTIONS)
        arch = get_architecture(self.model_type)
        if arch.family.generative:  # the other axes (prompt, audio) follow from the cache length and the config
            return ["batch_size", "sequence_length"]
        axes = [a for spec in arch.task_inputs(task) for a in spec.axes[:1] + TASKS[task].extra_axes + spec.axes[1:]]
        return [axis for axis in dict.fromkeys(axes) if axis in SHAPE_FIELDS]  # not AST's mel bins: its config fixes them

    def bucketable(self, task: str) -> tuple[BucketAxes, ...]:
        """The shape options that may take several values (buckets) for `task`."""
        if self.library == "diffusers":
            return DIFFUSION_TASKS[task].bucketable
        return get_architecture(self.model_type).family.bucketable


def inspect_model(model: str, demo_root: Optional[Path] = None) -> ModelInfo:
    source = resolve_model_source(model, ExportOptions(), demo_root)
    if source.library == "diffusers":
        task = source.model_type
        if not is_diffusion_task(task):
            raise NeuronExportError(
                f"{model}: diffusers pipeline {source.config.get('_class_name')} is not supported; supported: {', '.join(sorted(DIFFUSERS_PIPELINES))}"
            )
        size = _diffusion_image_size(source.path)
        return ModelInfo(source.origin, source.path, source.library, task, [task], task, "from model_index.json",
                         {"batch_size": 1, "height": size, "width": size, "num_images_per_prompt": 1})
    tasks = supported_tasks(source.model_type)
    if source.library == "sentence_transformers":  # its pooled (or CLIP) embeddings: one task, whatever its encoder serves
        tasks = [SENTENCE_TRANSFORMERS.task]
        detected, note = SENTENCE_TRANSFORMERS.task, "sentence-transformers folder (modules.json)"
    else:
        architectures = source.config.get("architectures")
        try:
            detected = detect_task(source.model_type, architectures)
            note = f"from config.json (architectures: {', '.join(architectures)})"
        except NeuronExportError as error:
            detected, note = None, str(error)
    defaults, limits = _shape_defaults(source.model_type, SimpleNamespace(**source.config), read_preprocessor_config(source.encoder_path))
    return ModelInfo(source.origin, source.path, source.library, source.model_type, tasks, detected, note, defaults, limits)


def _shape_defaults(model_type: str, config: SimpleNamespace, preprocessor: dict) -> tuple[dict[str, int], dict[str, int]]:
    """The form's starting shapes (the family's defaults, read from the config and image processor, else
    SUGGESTED_SHAPES) and the largest values the model allows."""
    arch = get_architecture(model_type)
    defaults = dict(SUGGESTED_SHAPES)
    for axis, default in arch.family.default_shapes.items():
        defaults[axis] = default(config, preprocessor) if callable(default) else default
    limits: dict[str, int] = {}
    for axis, attribute in arch.family.shape_limits.items():
        limit = next((v for v in (config_attr(config, a) for a in (attribute, *LIMIT_ALIASES.get(attribute, ()))) if v is not None), None)
        if isinstance(limit, int):
            reserved = arch.reserved_positions(config) if arch.reserved_positions else 0
            limits[axis] = limit - reserved
            defaults[axis] = min(defaults[axis], limits[axis])
    return defaults, limits


def _diffusion_image_size(path: Path) -> int:
    """Default image size: the UNet's sample size times the VAE's downscaling factor."""
    try:
        unet = json.loads((path / "unet" / "config.json").read_text())
        vae = json.loads((path / "vae" / "config.json").read_text())
    except (OSError, ValueError):
        return 512
    return int(unet.get("sample_size", 64)) * 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
