"""Folders written by optimum-neuron (`optimum-cli export neuron`), read as this tool's artifacts.

Layouts, from optimum-neuron's source (optimum/exporters/neuron/__main__.py and convert.py,
optimum/neuron/modeling_traced.py and modeling_diffusion.py, utils/argument_utils.py):
- an encoder: `model.neuron` (torch_neuronx.trace + torch.jit.save) and `config.json`, the
  transformers config with a `neuron` section: compiler_type / compiler_version, static_<axis>
  shapes (static_batch_size, static_sequence_length, static_num_choices), dynamic_batch_size,
  auto_cast / auto_cast_type, optlevel, instance_type (newer versions), float_dtype, task; the traced
  module takes the inputs of the exporter config in order (BERT: input_ids, attention_mask,
  token_type_ids; RoBERTa-style models have no token_type_ids: the registry's inputs of the
  architecture are the same) and returns the task's outputs in order.
- a pipeline: `model_index.json` (diffusers' own, still listing `vae`) with scheduler/ and
  tokenizer(_2)/ folders and one folder per compiled component (text_encoder, text_encoder_2, unet,
  vae_encoder, vae_decoder: the registry's component names), each a `model.neuron` and a config.json
  with its own `neuron` section. The UNet is compiled for batch_size x num_images_per_prompt (no
  CFG doubling) with latent-sized static_height / static_width, and runs data-parallel on two
  NeuronCores; text encoders are "clip-text-model" (last_hidden_state, pooler_output) or
  "clip-text-with-projection" (text_embeds, last_hidden_state), plus every hidden state for SDXL.

The manifest built here is never written into the folder: the folder stays as optimum-neuron made it.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from .artifact.manifest import Manifest, TensorSpec, Validation
from .errors import ArtifactError, NeuronExportError, first_line
from .options import ExportOptions

NEURON_FILE = "model.neuron"
# Architectures whose feature-extraction export has no pooler_output (optimum-neuron model_configs).
NO_POOLER = frozenset({"convbert", "electra", "flaubert", "roformer", "xlm", "deberta", "deberta-v2", "distilbert", "phi"})
# A traced optimum-neuron encoder returns the hidden states (and pooler) of a text or image encoder; the
# registry's feature-extraction task also lists the outputs of audio and CLIP models, which such a folder never holds.
ENCODER_OUTPUTS = frozenset({"last_hidden_state", "pooler_output"})
FLOAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
TOOL = "optimum-neuron"
UNVALIDATED = "compiled by optimum-neuron, which keeps no validation result in the folder"


def is_optimum_folder(folder: Path) -> bool:
    """A pipeline folder with compiled components, or a folder whose config.json has a `neuron` section."""
    if (folder / "model_index.json").is_file():
        return any((child / NEURON_FILE).is_file() for child in folder.iterdir() if child.is_dir())
    try:
        return (folder / "config.json").is_file() and isinstance(_read_json(folder / "config.json").get("neuron"), dict)
    except ArtifactError:
        return False


def read_optimum_manifest(folder: Path) -> Optional[Manifest]:
    """The manifest of an optimum-neuron folder (a pipeline, one of its components, or an encoder), else None."""
    if not is_optimum_folder(folder):
        return None
    if (folder / "model_index.json").is_file():
        return _pipeline_manifest(folder)
    if (folder.parent / "model_index.json").is_file():
        return _component_manifest(folder.parent, folder.name)
    return _encoder_manifest(folder)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path} is corrupt: {first_line(error)}") from None
    return data if isinstance(data, dict) else {}


def _neuron_section(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    config = _read_json(folder / "config.json")
    neuron = config.get("neuron")
    if not isinstance(neuron, dict):
        raise ArtifactError(f"{folder} has no model.neuron with a `neuron` section in config.json (optimum-neuron's layout)")
    compiler = neuron.get("compiler_type", "neuronx-cc")
    if compiler != "neuronx-cc":
        raise ArtifactError(f"{folder} was compiled by {compiler} (inf1); this tool runs neuronx-cc artifacts (inf2 / trn1)")
    return config, neuron


def _model_file(folder: Path) -> str:
    found = sorted(p.name for p in folder.glob("*.neuron"))
    if len(found) != 1:
        raise ArtifactError(f"{folder} holds {len(found) or 'no'} *.neuron files; optimum-neuron writes exactly one ({NEURON_FILE})")
    return found[0]


def _common(folder: Path, neuron: dict[str, Any], source: str, task: str, model_type: str, library: str) -> dict[str, Any]:
    """The manifest fields every optimum-neuron folder shares."""
    target = neuron.get("instance_type")  # None in versions before optimum-neuron 0.4 (#974)
    auto_cast = neuron.get("auto_cast") or "none"
    options = ExportOptions(backend="neuron", auto_cast=auto_cast, auto_cast_type=neuron.get("auto_cast_type") if auto_cast != "none" else None,
                            optlevel=int(neuron.get("optlevel") or 2), dynamic_batch_size=bool(neuron.get("dynamic_batch_size")))
    created = datetime.datetime.fromtimestamp(folder.stat().st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")
    return dict(
        source=source, library=library, model_type=model_type, task=task, backend="neuron",
        backend_reason="compiled by optimum-neuron (optimum-cli export neuron)", is_neuron=True, device="cpu", target=target,
        runs_on=f"AWS {target or 'inf2 / trn1'} NeuronCores only (torch-neuronx); compiled by optimum-neuron",
        torch_version="unknown (optimum-neuron does not record it)", compiler=f"neuronx-cc {neuron.get('compiler_version', 'unknown')}",
        options=options, dynamic_batch=options.dynamic_batch_size, auto_cast=options.auto_cast, auto_cast_type=options.auto_cast_type,
        optlevel=options.optlevel, validation=Validation(skipped=UNVALIDATED), tool=TOOL, created=created,
    )


def _encoder_manifest(folder: Path) -> Manifest:
    from .inputs import value_ranges  # imports torch: not when the studio only lists folders
    from .registry import TASKS, get_architecture

    config, neuron = _neuron_section(folder)
    task = neuron.get("task")
    if task not in TASKS:
        raise ArtifactError(f"{folder} is an optimum-neuron export for task {task!r}, which this tool does not run "
                            f"(it runs: {', '.join(TASKS)})")
    model_type = config.get("model_type", "")
    try:
        architecture = get_architecture(model_type)
    except NeuronExportError as error:
        raise ArtifactError(f"{folder}: {error}") from None
    spec = TASKS[task]
    static = {key.removeprefix("static_"): value for key, value in neuron.items() if key.startswith("static_")}
    shapes = {**static, **_image_shapes(config, architecture.family.modality)}
    inputs, ranges = [], value_ranges(architecture.inputs, SimpleNamespace(**config))  # ids are checked on every call
    for item in architecture.inputs:
        axes = (item.axes[0], *spec.extra_axes, *item.axes[1:])
        missing = [axis for axis in axes if axis not in shapes]
        if missing:
            raise ArtifactError(f"{folder}: the `neuron` section of config.json has no static_{missing[0]}")
        dtype = FLOAT_DTYPES.get(neuron.get("float_dtype", "fp32"), "float32") if item.dtype.startswith("float") else item.dtype
        inputs.append(TensorSpec(item.name, [int(shapes[a]) for a in axes], dtype, list(axes), value_range=ranges.get(item.name)))
    outputs = [o for o in spec.outputs if not (o == "pooler_output" and model_type in NO_POOLER)]
    if outputs[0] in ENCODER_OUTPUTS:  # the encoder's own outputs (feature-extraction)
        outputs = [o for o in outputs if o in ENCODER_OUTPUTS]
    common = _common(folder, neuron, config.get("_name_or_path") or folder.name, task, model_type, "transformers")
    return Manifest(**common, shapes={k: int(v) for k, v in shapes.items() if isinstance(v, int)}, component=None,
                    model_file=_model_file(folder), inputs=inputs, outputs=outputs, neuron_cores=[0])


def _image_shapes(config: dict[str, Any], modality: str) -> dict[str, int]:
    """Vision exports fix only the batch; the image size and channels come from the model config."""
    if modality != "vision":
        return {}
    size = config.get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    return {"num_channels": int(config.get("num_channels", 3)), "height": int(size), "width": int(size)}


def _pipeline_parts(folder: Path) -> tuple[str, list, dict[str, Any]]:
    """(task, its components present in the folder, pipeline shapes) of an optimum-neuron pipeline."""
    from .export.diffusion import pipeline_shapes
    from .registry import DIFFUSERS_PIPELINES, DIFFUSION_TASKS

    index = _read_json(folder / "model_index.json")
    task = DIFFUSERS_PIPELINES.get(index.get("_class_name", ""))
    loadable = [name for name, found in DIFFUSERS_PIPELINES.items() if DIFFUSION_TASKS[found].optimum_folders]
    if task is None or not DIFFUSION_TASKS[task].optimum_folders:
        raise ArtifactError(f"{folder} is an optimum-neuron {index.get('_class_name')}; this tool loads optimum-neuron "
                            f"{', '.join(loadable)} folders (export the diffusers model with neuron-export instead)")
    specs = []
    for spec in DIFFUSION_TASKS[task].components:
        if (folder / spec.name / NEURON_FILE).is_file():
            specs.append(spec)
        elif not spec.optional:
            raise ArtifactError(f"{folder} is missing {spec.name}/{NEURON_FILE}; {task} needs it")
    text = {s.name: _neuron_section(folder / s.name) for s in specs if s.kind == "text_encoder"}
    unet_config, unet = _neuron_section(folder / "unet")
    if unet_config.get("time_cond_proj_dim") is not None or unet_config.get("in_channels", 4) != DIFFUSION_TASKS[task].unet_in_channels:
        raise ArtifactError(f"{folder}: an optimum-neuron pipeline with a latent consistency, inpainting or other variant "
                            "UNet does not load here; export the diffusers model with neuron-export instead")
    vae_config, _ = _neuron_section(folder / "vae_decoder")
    first_text = next(iter(text.values()))[1]
    batch = int(first_text["static_batch_size"])
    scale = int(unet.get("static_vae_scale_factor") or 2 ** (len(vae_config["block_out_channels"]) - 1))
    options = ExportOptions(batch_size=batch, num_images_per_prompt=max(int(unet["static_batch_size"]) // batch, 1),
                            height=int(unet["static_height"]) * scale, width=int(unet["static_width"]) * scale)
    pooled = text["text_encoder_2"][0].get("projection_dim") if "text_encoder_2" in text else None
    shapes = pipeline_shapes(unet_config, vae_config, int(first_text["static_sequence_length"]), pooled, options, replicas=2)
    return task, specs, shapes


def _pipeline_manifest(folder: Path) -> Manifest:
    from .export.diffusion import PUBLIC_SHAPES

    task, specs, shapes = _pipeline_parts(folder)
    _, unet = _neuron_section(folder / "unet")
    index = _read_json(folder / "model_index.json")
    common = _common(folder, unet, index.get("_name_or_path") or folder.name, task, task, "diffusers")
    return Manifest(**common, shapes={k: shapes[k] for k in PUBLIC_SHAPES}, pipeline_class=index.get("_class_name"),
                    components=[s.name for s in specs], neuron_cores=[0, 1])


def _component_manifest(pipeline: Path, name: str) -> Manifest:
    from .inputs import value_ranges  # imports torch: not when the studio only lists folders

    task, specs, shapes = _pipeline_parts(pipeline)
    spec = next((s for s in specs if s.name == name), None)
    if spec is None:
        raise ArtifactError(f"{pipeline / name} is not a component this tool runs ({', '.join(s.name for s in specs)})")
    folder = pipeline / name
    config, neuron = _neuron_section(folder)
    float_dtype = FLOAT_DTYPES.get(neuron.get("float_dtype", "fp32"), "float32")
    inputs, ranges = [], value_ranges(spec.inputs, SimpleNamespace(**config))  # a text encoder's ids: < its vocab_size
    for item in spec.inputs:
        shape = [int(shapes[axis]) for axis in item.axes]
        shape[0] = int(neuron.get("static_batch_size", shape[0]))  # optimum's own batch of each component
        inputs.append(TensorSpec(item.name, shape, float_dtype if item.dtype.startswith("float") else item.dtype, list(item.axes),
                                 value_range=ranges.get(item.name)))
    outputs = list(spec.outputs)
    if spec.kind == "text_encoder":
        with_projection = neuron.get("model_type") == "clip-text-with-projection"
        outputs = ["text_embeds", "last_hidden_state"] if with_projection else ["last_hidden_state", "pooler_output"]
        if neuron.get("output_hidden_states") or config.get("output_hidden_states"):
            outputs += [f"hidden_states.{i}" for i in range(int(config["num_hidden_layers"]) + 1)]
    index = _read_json(pipeline / "model_index.json")
    common = _common(folder, neuron, index.get("_name_or_path") or pipeline.name, task, task, "diffusers")
    return Manifest(**common, shapes={k: int(v) for k, v in shapes.items()}, component=name, model_file=_model_file(folder),
                    inputs=inputs, outputs=outputs, neuron_cores=[0, 1] if spec.data_parallel else [0])
