"""The eager model an artifact came from: the reference that validation, the benchmark and the
playground compare the compiled model with.

It is found on this host only (the source folder, a demo, or the local Hugging Face cache); nothing
is downloaded. A manifest is data, not consent: the source model's own code runs only when the
caller passes trust_remote_code=True for it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .artifact import Manifest
from .diffusion.controlnet import load_controlnets
from .diffusion.lora import check_unchanged, fuse_loras, loras_of
from .errors import NeuronExportError, first_line
from .sources import HUB_ID, HUB_PATTERNS, ModelSource, load_eager_model, read_model_folder
from .traceable import eager_traceable


def source_folder(manifest: Manifest, demo_root: Optional[Path] = None) -> Path:
    """The local folder of the model an artifact was compiled from; never downloads."""
    source = manifest.source or ""
    if source.startswith("demo:"):
        from .demo import resolve_demo

        return resolve_demo(source, root=demo_root)
    folder = Path(source).expanduser()
    if folder.is_dir():
        return folder
    if not source or source.startswith((".", "/", "~")) or not HUB_ID.match(source):
        raise NeuronExportError(f"its source model {source or '(unknown)'} is no longer at that path")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, cache_dir=manifest.options.cache_dir, allow_patterns=HUB_PATTERNS,
                                      local_files_only=True))
    except Exception as error:  # not cached: LocalEntryNotFoundError, OSError, ...
        raise NeuronExportError(f"{source} is not in the local Hugging Face cache ({first_line(error)})") from None


def reference_source(manifest: Manifest, folder: Optional[Path] = None, trust_remote_code: bool = False) -> ModelSource:
    """The artifact's source model as a ModelSource (folder: where it is, else found by source_folder)."""
    options = manifest.options.replace(trust_remote_code=trust_remote_code)
    return read_model_folder(manifest.source, folder or source_folder(manifest), options)


def reference_module(manifest: Manifest, folder: Optional[Path] = None, trust_remote_code: bool = False) -> torch.nn.Module:
    """The source model wrapped like at export: positional inputs -> tuple of the manifest's outputs (CPU, fp32)."""
    source = reference_source(manifest, folder, trust_remote_code)
    options = manifest.options.replace(trust_remote_code=trust_remote_code)
    eager, _ = load_eager_model(source, manifest.task, options)  # its untrained weights are in the manifest
    return eager_traceable(source, eager, manifest.input_names, manifest.outputs, options)


def reference_model(manifest: Manifest, folder: Optional[Path] = None, trust_remote_code: bool = False) -> Callable[..., dict[str, Any]]:
    """The source model on the artifact's device, called like a CompiledModel: named tensors -> {output: tensor}."""
    module = reference_module(manifest, folder, trust_remote_code).to(manifest.device)
    names, outputs = manifest.input_names, list(manifest.outputs)

    def run(**tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return dict(zip(outputs, module(*[tensors[name] for name in names])))

    run.module, run.input_names = module, names  # what the benchmark counts FLOPs on
    return run


def reference_generator(manifest: Manifest, folder: Optional[Path] = None, trust_remote_code: bool = False) -> torch.nn.Module:
    """The eager transformers model of a generative artifact (fp32, on its device): its generate() is the reference."""
    source = reference_source(manifest, folder, trust_remote_code)
    eager, _ = load_eager_model(source, manifest.task, manifest.options.replace(trust_remote_code=trust_remote_code))
    return eager.to(manifest.device)  # its untrained weights are in the manifest


def reference_pipeline(manifest: Manifest, folder: Optional[Path] = None, trust_remote_code: bool = False,
                       class_name: Optional[str] = None, unet: Optional[Path] = None):
    """The eager diffusers pipeline of a compiled pipeline's source (fp32, without the safety checker,
    which is not exported either); class_name: another diffusers class over the same folder (txt2img
    for an img2img source); unet: the UNet folder that --unet compiled in place of the pipeline's."""
    import diffusers

    folder = folder or source_folder(manifest)
    pipeline_class = getattr(diffusers, class_name or manifest.pipeline_class or "DiffusionPipeline", diffusers.DiffusionPipeline)
    parameters = inspect.signature(pipeline_class.__init__).parameters
    extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in parameters else {}
    try:
        if unet is not None:
            extra["unet"] = diffusers.UNet2DConditionModel.from_pretrained(unet, local_files_only=True, torch_dtype=torch.float32)
        if manifest.options.controlnet_ids:  # added to a base pipeline at export
            extra["controlnet"] = load_controlnets(manifest.options.controlnet_ids)
        pipeline = pipeline_class.from_pretrained(folder, local_files_only=True, dtype=torch.float32,
                                                  trust_remote_code=trust_remote_code, **extra)
    except Exception as error:  # diffusers raises many types for missing / broken files
        raise NeuronExportError(f"cannot load the eager pipeline from {folder}: {first_line(error)}") from None
    check_unchanged(manifest.loras)  # the LoRAs it was compiled with, fused as at export
    fuse_loras(pipeline, loras_of(manifest.options), "eager pipeline")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(manifest.device)
