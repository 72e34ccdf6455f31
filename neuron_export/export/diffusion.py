"""Plan the export of a diffusers Stable Diffusion (XL) pipeline folder, component by component.

Each component (text encoder(s), UNet, ControlNet(s), VAE encoder, VAE decoder; registry/diffusion.py) becomes a
folder of its own; the artifact mirrors diffusers (model_index.json, scheduler/, tokenizer(_2)/)
and its root manifest lists the components.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import torch

from ..backends import Backend
from ..diffusion.attention import neuron_attention
from ..diffusion.controlnet import assembled_model_index, controlnet_module, controlnet_shapes, pipeline_class_of, plan_controlnets
from ..diffusion.lora import fuse_into_component, loras_of, plan_loras
from ..diffusion.modules import UNetModule, VaeDecoderModule, VaeEncoderModule
from ..errors import NeuronExportError, first_line
from ..inputs import check_input_memory, input_shapes, make_inputs, validation_input_sets, value_ranges
from ..model_files import check_links, read_json
from ..options import ExportOptions
from ..registry import DIFFUSERS_PIPELINES, DIFFUSION_TASKS, EXACT, DiffusionComponent, diffusers_task
from ..sources import ModelSource, load_weights, unet_in_channels
from ..traceable import TraceableModel, discover_output_names
from .buckets import bucket_plan, component_bucket_axes, plan_shapes
from .plan import Component, ComponentPlan, ExportPlan, default_atol, plan_backend, settle_plan

log = logging.getLogger("neuron_export")

# Pipeline folders copied as they are: what the pipeline needs besides the compiled components.
PIPELINE_FILES = ("scheduler", "tokenizer", "tokenizer_2", "feature_extractor")
# Shapes that describe the artifact to its user (the rest are derived from the configs).
PUBLIC_SHAPES = ("batch_size", "num_images_per_prompt", "height", "width", "sequence_length", "unet_batch_size")
# A tokenizer_config's model_max_length this large means "no limit" (transformers' sentinel).
NO_LENGTH_LIMIT = 10**12


def plan_diffusion(source: ModelSource, options: ExportOptions) -> ExportPlan:
    task = pipeline_task(source, options)
    components = pipeline_components(source, task, options)  # refuses missing folders before any is read
    unet_config = read_json(unet_folder(source, options) / "config.json")
    options, specs = plan_controlnets(source, options, task, components, unet_config)
    options, loras = plan_loras(options, source.config.get("_class_name"), [s.source for s in specs], unet_config)
    backend, reason, warnings = plan_backend(options, task, has_unet=True)
    # A data-parallel UNet is compiled for its share of the CFG batch on each of its cores.
    replicas = len(backend.cores(data_parallel=True)) or 1
    planned = plan_shapes(DIFFUSION_TASKS[task].bucketable, options, ["height", "width"], task,
                          lambda o: resolve_shapes(source, specs, o, replicas, DIFFUSION_TASKS[task].unet_rows_per_image))
    shapes = planned.largest  # the largest resolution: what the pipeline makes when asked for no size
    if "time_cond_proj_dim" in shapes:  # an LCM UNet runs one row per image whatever the flag (warned)
        options = options.replace(classifier_free_guidance=True)
    warnings += planned.warnings
    if source.config.get("safety_checker", [None])[0] is not None:
        warnings.append("the safety checker is not exported; the compiled pipeline runs without it")
    options, skip_reason = settle_plan(planned.settle(options), backend, warnings)
    timesteps = train_timesteps(source)
    components = [
        ComponentPlan(spec.name, spec.name,
                      partial(_load_component, source, spec, planned.per_bucket, timesteps, options, skip_reason is None, backend),
                      component_folder(source, spec, options) / "config.json",
                      bucketed=bool(component_bucket_axes({i.name: i.axes for i in spec.inputs}, planned.per_bucket)))
        for spec in specs
    ]
    files = [(source.path / name, name) for name in PIPELINE_FILES if (source.path / name).is_dir()]
    unet = unet_folder(source, options)
    model_index = assembled_model_index(source, options)  # a base pipeline with --controlnet_ids added
    return ExportPlan(
        source=source,
        task=task,
        backend=backend,
        backend_reason=reason,
        options=options,
        shapes=shapes,
        public_shapes={key: shapes[key] for key in PUBLIC_SHAPES},
        components=components,
        warnings=warnings,
        skip_reason=skip_reason,
        files=files + ([] if model_index else [(source.path / "model_index.json", "model_index.json")]),
        model_index=model_index,
        cache_folders=[source.path] + ([unet] if unet != source.path / "unet" else [])
        + [Path(f) for f in options.lora_model_ids + options.controlnet_ids],
        pipeline_class=pipeline_class_of(source, options),
        buckets=planned.buckets,
        bucket_fit=planned.fit,
        end_to_end=partial(check_images, source, task, options) if skip_reason is None else None,
        loras=loras,
    )


def check_images(source: ModelSource, task: str, options: ExportOptions, folder: Path):
    """The end-to-end image check of the pipeline built in `folder` (diffusion/image_check.py): the pipeline
    its source was saved as (an SDXL refiner: img2img; else the task's primary) against diffusers' on the
    source folder (with the --unet UNet when one replaced it)."""
    from diffusers.utils import logging as diffusers_logging

    from ..artifact import read_manifest
    from ..diffusion import pipelines
    from ..diffusion.image_check import check_pipeline_images, precision_of
    from ..diffusion.requests import artifact_pipeline_spec
    from ..reference import reference_pipeline

    spec = artifact_pipeline_spec(read_manifest(folder))
    compiled = getattr(pipelines, spec.class_name).from_pretrained(folder)
    bars = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # "Loading pipeline components" would interleave with the export's log
    try:
        eager = reference_pipeline(compiled.manifest, source.path, options.trust_remote_code, spec.diffusers_class,
                                   unet_folder(source, options) if options.unet else None)
    finally:
        if bars:
            diffusers_logging.enable_progress_bar()
    for pipe in (compiled, eager):
        pipe.set_progress_bar_config(disable=True)
    return check_pipeline_images(compiled, eager, spec, precision_of(options.cast_type), folder)


def pipeline_task(source: ModelSource, options: ExportOptions) -> str:
    """The task, from model_index.json's _class_name and the UNet to compile (its in_channels tell an
    inpainting or instruct-pix2pix model saved under StableDiffusionPipeline from a text-to-image one)."""
    class_name = pipeline_class_of(source, options)
    saved_as = source.config.get("_class_name", "") + (" with --controlnet_ids" if options.controlnet_ids else "")
    in_channels = unet_in_channels(unet_folder(source, options))
    detected = diffusers_task(class_name, in_channels)
    if detected is None:
        supported = ", ".join(sorted(DIFFUSERS_PIPELINES))
        raise NeuronExportError(f"{source.origin} is a diffusers {class_name or 'pipeline'}; supported pipelines: {supported}")
    expected = DIFFUSION_TASKS[detected].unet_in_channels
    if in_channels is not None and in_channels != expected:
        raise NeuronExportError(f"{source.origin} is a {saved_as} whose UNet takes {in_channels} input channels; "
                                f"{detected} needs a UNet with {expected}")
    if options.task not in ("auto", detected):
        raise NeuronExportError(f"{source.origin} is a {saved_as} ({detected}); --task {options.task} does not apply to it")
    if options.task == "auto":
        pipeline = DIFFUSION_TASKS[detected].primary
        how = "" if class_name in (p.diffusers_class for p in DIFFUSION_TASKS[detected].pipelines) else (
            f" (a {class_name} folder whose UNet takes {in_channels} input channels: run it with {pipeline.class_name})")
        log.info("Task auto-detected: %s%s", detected, how)
    return detected


def pipeline_components(source: ModelSource, task: str, options: ExportOptions) -> list[DiffusionComponent]:
    """The task's components this pipeline has (an SDXL refiner has no first text encoder), with the
    inputs their configs ask for (an LCM UNet's timestep_cond); refuse a folder that lists a component
    without its folder, or lacks a required one."""
    present = []
    for spec in DIFFUSION_TASKS[task].components:
        if spec.repeated:
            continue  # the ControlNets: plan_controlnets finds their folders
        entry = model_index_entry(source, spec.source)
        if entry is None:
            if not spec.optional:
                raise NeuronExportError(f"{source.origin}: model_index.json has no {spec.source}; {task} needs it")
            continue
        if not (source.path / spec.source / "config.json").is_file():
            raise NeuronExportError(f"{source.origin} is missing its {spec.source}/ folder (listed in model_index.json)")
        present.append(spec.inputs_for(read_json(component_folder(source, spec, options) / "config.json")))
    for folder in ("scheduler", "tokenizer", "tokenizer_2"):
        if model_index_entry(source, folder) is not None and not (source.path / folder).is_dir():
            raise NeuronExportError(f"{source.origin} is missing its {folder}/ folder (listed in model_index.json)")
    check_tokenizers(source)
    return present


def check_tokenizers(source: ModelSource) -> None:
    """Load the pipeline's tokenizers: a corrupt one is refused here, not copied into the artifact."""
    import transformers

    for folder in ("tokenizer", "tokenizer_2"):
        entry = model_index_entry(source, folder)
        if entry is None or entry[0] != "transformers":
            continue
        tokenizer_class = getattr(transformers, entry[1], None)
        try:
            if tokenizer_class is None:
                raise ValueError(f"transformers has no {entry[1]}")
            tokenizer_class.from_pretrained(source.path / folder, local_files_only=True)
        except Exception as error:  # tokenizers / json raise many types for broken files
            raise NeuronExportError(f"the {folder} of {source.origin} cannot be loaded: {first_line(error)}") from None


def model_index_entry(source: ModelSource, name: str) -> Optional[tuple[str, str]]:
    """(library, class name) of a model_index.json entry; None when it is absent or null."""
    entry = source.config.get(name)
    if entry is None or (isinstance(entry, list) and entry and entry[0] is None):
        return None
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)):
        raise NeuronExportError(f"{source.origin}: model_index.json's {name} must be [library, class name], got {entry!r}")
    return entry[0], entry[1]


def unet_folder(source: ModelSource, options: ExportOptions) -> Path:
    """The UNet to compile: the pipeline's own, or --unet (a UNet folder, or a pipeline folder holding one)."""
    if not options.unet:
        return source.path / "unet"
    path = Path(options.unet).expanduser()
    if (path / "unet" / "config.json").is_file():
        path = path / "unet"
    if not (path / "config.json").is_file():
        raise NeuronExportError(f"--unet {options.unet}: no UNet there (a folder with config.json and weights)")
    check_links(path)
    class_name = read_json(path / "config.json").get("_class_name")
    if class_name != "UNet2DConditionModel":
        raise NeuronExportError(f"--unet {options.unet} holds a {class_name}, not a UNet2DConditionModel")
    return path


def component_folder(source: ModelSource, spec: DiffusionComponent, options: ExportOptions) -> Path:
    return unet_folder(source, options) if spec.kind == "unet" else source.path / spec.source


def text_sequence_length(source: ModelSource, spec: DiffusionComponent, text_config: dict[str, Any]) -> int:
    """The pipelines pad prompts to the tokenizer's model_max_length (77 for CLIP)."""
    tokenizer_config = source.path / (spec.tokenizer or "tokenizer") / "tokenizer_config.json"
    length = read_json(tokenizer_config).get("model_max_length") if tokenizer_config.is_file() else None
    if not isinstance(length, int) or length >= NO_LENGTH_LIMIT:
        length = text_config.get("max_position_embeddings", 77)
    return length


def resolve_shapes(source: ModelSource, specs: list[DiffusionComponent], options: ExportOptions,
                   replicas: int = 1, rows_per_image: int = 2) -> tuple[dict[str, int], list[str]]:
    """Every axis value of the components, from the shape options and the pipeline folder's configs."""
    text_specs = [s for s in specs if s.kind == "text_encoder"]
    text_configs = {s.source: read_json(source.path / s.source / "config.json") for s in text_specs}
    lengths = {text_sequence_length(source, s, text_configs[s.source]) for s in text_specs}
    if len(lengths) != 1:
        raise NeuronExportError(f"{source.origin}: its tokenizers pad to different lengths {sorted(lengths)}")
    unet = read_json(unet_folder(source, options) / "config.json")
    vae = read_json(source.path / "vae" / "config.json")
    try:
        pooled_dim = text_configs["text_encoder_2"]["projection_dim"] if "text_encoder_2" in text_configs else None
        shapes = pipeline_shapes(unet, vae, lengths.pop(), pooled_dim, options, replicas, rows_per_image)
        shapes.update(controlnet_shapes(source, specs, shapes, unet))
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise NeuronExportError(f"{source.origin}: its unet, vae or text encoder config.json lacks or has a bad {first_line(error)}") from None
    if any(i.name == "time_ids" for s in specs for i in s.inputs) and "time_ids_dim" not in shapes:
        raise NeuronExportError(f"{source.origin}: its UNet takes no SDXL added conditions (addition_embed_type 'text_time')")
    for spec in specs:  # one component's inputs at a time are in memory
        check_input_memory(input_shapes({i.name: i.axes for i in spec.inputs}, shapes), options.shapes())
    warnings = [f"--{name} is not used by Stable Diffusion; ignored" for name in ("num_choices", "num_channels") if getattr(options, name)]
    warnings += [f"--{flag} does not apply to Stable Diffusion components; ignored"
                 for flag in ("output_hidden_states", "output_attentions") if getattr(options, flag)]
    if not options.classifier_free_guidance and "time_cond_proj_dim" in shapes:
        warnings.append("--no-classifier-free-guidance: this latent consistency UNet embeds the guidance scale and runs one row "
                        "per image anyway; ignored")
    if options.sequence_length not in (None, shapes["sequence_length"]):
        warnings.append(
            f"--sequence_length {options.sequence_length}: the pipeline pads prompts to its tokenizer's length "
            f"({shapes['sequence_length']}), which is what is compiled; ignored"
        )
    return shapes, warnings


def pipeline_shapes(
    unet: dict[str, Any], vae: dict[str, Any], sequence_length: int, pooled_dim: Optional[int], options: ExportOptions,
    replicas: int = 1, rows_per_image: int = 2,
) -> dict[str, int]:
    """Axis values from the UNet and VAE configs and the shape options; pooled_dim (text_encoder_2's
    projection) sizes SDXL's added conditions; replicas: the data-parallel UNet's copies (its batch is shared);
    rows_per_image: the UNet's rows per image (the task's unet_rows_per_image)."""
    scale = 2 ** (len(vae["block_out_channels"]) - 1)
    sample_size = unet.get("sample_size") or 64
    default_height, default_width = (sample_size, sample_size) if isinstance(sample_size, int) else sample_size
    height = options.height or default_height * scale
    width = options.width or default_width * scale
    for name, value in (("height", height), ("width", width)):
        if value % scale:
            raise NeuronExportError(f"--{name} {value} must be a multiple of {scale} (the VAE's scale factor)")
    batch = options.batch_size or 1
    images = options.num_images_per_prompt or 1
    rows = guidance_rows(unet, options, rows_per_image)
    cross_attention_dim = unet["cross_attention_dim"]
    shapes = {
        "batch_size": batch,
        "num_images_per_prompt": images,
        "height": height,
        "width": width,
        "sequence_length": sequence_length,
        # rows: CFG's unconditional and text halves, or one; shared by the copies (rounded up: a copy's
        # missing rows are padded at run time)
        "unet_batch_size": -(-batch * images * rows // replicas),
        "images_batch_size": batch * images,
        "unet_in_channels": unet["in_channels"],  # the latents and what the variant joins to them (mask, image latents)
        "latent_channels": vae.get("latent_channels", unet.get("out_channels", 4)),
        "latent_height": height // scale,
        "latent_width": width // scale,
        "image_channels": vae["in_channels"],
        "cross_attention_dim": cross_attention_dim[0] if isinstance(cross_attention_dim, (list, tuple)) else cross_attention_dim,
    }
    if unet.get("time_cond_proj_dim") is not None:
        shapes["time_cond_proj_dim"] = unet["time_cond_proj_dim"]
    if unet.get("addition_embed_type") == "text_time" and pooled_dim is not None:
        shapes["text_embeds_dim"] = pooled_dim
        shapes["time_ids_dim"] = (unet["projection_class_embeddings_input_dim"] - pooled_dim) // unet["addition_time_embed_dim"]
    return shapes


def guidance_rows(unet: dict[str, Any], options: ExportOptions, rows_per_image: int) -> int:
    """UNet rows per image: the task's rows under classifier-free guidance (unconditional + text, diffusers'
    pipelines at guidance_scale > 1; instruct-pix2pix adds an image row), 1 for a latent consistency UNet
    (the guidance scale is its timestep_cond input) or with --no-classifier-free-guidance (SDXL Turbo at
    guidance_scale 0)."""
    return rows_per_image if options.classifier_free_guidance and unet.get("time_cond_proj_dim") is None else 1


def load_module(source: ModelSource, spec: DiffusionComponent, options: ExportOptions) -> torch.nn.Module:
    """The eager diffusers / transformers module behind a component, fp32 in eval mode."""
    folder = component_folder(source, spec, options)
    library, class_name = model_index_entry(source, spec.source) or ("diffusers", None)
    if folder != source.path / spec.source or spec.repeated:  # --unet, ControlNets: their config names their class
        library, class_name = "diffusers", read_json(folder / "config.json")["_class_name"]
    if library not in ("diffusers", "transformers"):
        raise NeuronExportError(f"{spec.source} is a {library}.{class_name}; only diffusers and transformers modules can be exported")
    if library == "diffusers":
        from diffusers.utils import is_accelerate_available

        # Without accelerate diffusers falls back to a full init anyway, with a warning on every load.
        keywords = {"torch_dtype": torch.float32, "low_cpu_mem_usage": is_accelerate_available()}
    else:
        keywords = {"dtype": torch.float32}
    module_class = getattr(importlib.import_module(library), class_name, None)
    if module_class is None:
        raise NeuronExportError(f"cannot load {spec.source} of {source.origin}: {library} has no {class_name}")
    module, _ = load_weights(module_class, folder, f"{spec.source} of {source.origin}", **keywords)  # no head: all required
    return fuse_into_component(module, spec.source, source.config.get("_class_name"), loras_of(options),
                               read_json(unet_folder(source, options) / "config.json"), f"{spec.source} of {source.origin}")


def _text_encoder_module(spec: DiffusionComponent, eager: torch.nn.Module, example: dict[str, torch.Tensor]):
    flags = {"output_hidden_states": True} if spec.hidden_states else {}
    output_names = discover_output_names(eager, spec.outputs, example, flags)
    return TraceableModel(eager, ["input_ids"], output_names, **flags), output_names


# Component kind -> (spec, eager module, example) -> (traceable module, output names).
WRAPPERS = {
    "text_encoder": _text_encoder_module,
    # the UNet's inputs after sample, timestep and encoder_hidden_states: SDXL's added conditions, LCM's timestep_cond
    "unet": lambda spec, eager, example: (UNetModule(eager, [i.name for i in spec.inputs[3:]]), list(spec.outputs)),
    "vae_encoder": lambda spec, eager, example: (VaeEncoderModule(eager), list(spec.outputs)),
    "vae_decoder": lambda spec, eager, example: (VaeDecoderModule(eager), list(spec.outputs)),
    "controlnet": controlnet_module,
}


def make_component(
    spec: DiffusionComponent, eager: torch.nn.Module, shapes: dict[str, int], generator_config: Any, options: ExportOptions,
    validate: bool, bucket_shapes: Optional[list[dict[str, int]]] = None, backend: Optional[Backend] = None,
) -> Component:
    """A component for build_component: the wrapped module, its example and fresh validation inputs, and
    the registry's recipe for it (an fp32 VAE; on a Neuron backend the samples' attention, data parallelism);
    bucket_shapes: the shapes of every bucket (the component is bucketed if its inputs differ between them)."""
    own_options = options.replace(auto_cast="none", auto_cast_type=None) if spec.keeps_fp32 and options.auto_cast != "none" else None
    options = own_options or options
    axes = {i.name: i.axes for i in spec.inputs}

    def inputs_for(bucket: dict[str, int]):
        shapes_by_input = input_shapes(axes, bucket)
        validation_inputs = []
        if validate:
            validation_inputs = validation_input_sets(spec.inputs, shapes_by_input, generator_config, options.dynamic_batch_size)
            if "timestep" in axes:
                # Also one timestep for the whole batch, expanded (stride 0), as the pipelines pass it.
                expanded = make_inputs(spec.inputs, shapes_by_input, generator_config, seed=2, realistic=True)
                expanded["timestep"] = expanded["timestep"][:1].expand(shapes_by_input["timestep"])
                validation_inputs.insert(1, expanded)
        return make_inputs(spec.inputs, shapes_by_input, generator_config, seed=0), validation_inputs

    example, validation_inputs = inputs_for(shapes)
    module, output_names = WRAPPERS[spec.kind](spec, eager, example)
    atol, atol_source = default_atol(spec.atol, options)
    bucketing = bucket_plan(axes, bucket_shapes, EXACT, inputs_for, {}) if bucket_shapes and len(bucket_shapes) > 1 else None
    neuron_recipe = backend is not None and backend.is_neuron and spec.neuron_attention
    return Component(spec.name, module, list(axes), output_names, axes, example, validation_inputs, atol, atol_source,
                     spec.neuron_model_type, own_options, spec.data_parallel,
                     partial(neuron_attention, module) if neuron_recipe else contextlib.nullcontext,
                     bucketing, value_ranges=value_ranges(spec.inputs, generator_config))


def input_config(spec: DiffusionComponent, eager: torch.nn.Module, num_train_timesteps: int = 1000) -> Any:
    """What the dummy-input generators read: the text config for text encoders, else the timestep range."""
    if spec.kind == "text_encoder":
        return eager.config
    return SimpleNamespace(num_train_timesteps=num_train_timesteps)


def train_timesteps(source: ModelSource) -> int:
    scheduler = source.path / "scheduler" / "scheduler_config.json"
    return read_json(scheduler).get("num_train_timesteps", 1000) if scheduler.is_file() else 1000


def _load_component(source: ModelSource, spec: DiffusionComponent, shapes_per_bucket: list[dict[str, int]], timesteps: int,
                    options: ExportOptions, validate: bool, backend: Backend) -> Component:
    eager = load_module(source, spec, options)
    return make_component(spec, eager, shapes_per_bucket[-1], input_config(spec, eager, timesteps), options, validate,
                          shapes_per_bucket, backend)
