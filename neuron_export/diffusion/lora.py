"""LoRA fused into a Stable Diffusion pipeline's weights at compile time (optimum-neuron's --lora_* options).

A traced graph cannot take a LoRA scale at run time, so the scale is baked in, with diffusers' own steps:
load_lora_weights for each LoRA, set_adapters to mix several, fuse_lora, then unload_lora_weights so that
no peft layer is left in the graph (optimum-neuron leaves them). The export fuses into one component at a
time (a holder that carries only that module); reference.py fuses into the whole eager pipeline. Both run
fuse_loras, so validation compares the compiled fused model with the eager fused one, never with the base.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import torch

from ..errors import NeuronExportError, first_line

DEFAULT_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights writes


@dataclass(frozen=True)
class Lora:
    folder: Path
    weight_name: str
    adapter_name: Optional[str]
    scale: float

    @property
    def file(self) -> Path:
        return self.folder / self.weight_name


def loras_of(options) -> list[Lora]:
    """The LoRAs an ExportOptions names, as plan_loras resolved them (options.check made the counts agree)."""
    count = len(options.lora_model_ids)
    names = options.lora_weight_names or (DEFAULT_WEIGHT_NAME,) * count
    adapters = options.lora_adapter_names or (None,) * count
    scales = options.lora_scales or (1.0,) * count
    return [Lora(Path(f), w, a, float(s)) for f, w, a, s in zip(options.lora_model_ids, names, adapters, scales)]


def plan_loras(options, pipeline_class: str, components: list[str], unet_config: dict[str, Any]):
    """Check every LoRA (folder, weight file, which components it changes) before anything is loaded;
    returns the options with absolute folders and weight names filled in, and the manifest's record."""
    if not options.lora_model_ids:
        return options, []
    options = resolve_lora_files(options)
    from diffusers.utils import USE_PEFT_BACKEND

    if not USE_PEFT_BACKEND:  # diffusers loads LoRAs through peft only
        raise NeuronExportError("--lora_model_ids needs peft >= 0.17 (pip install peft; it is in requirements.txt)")
    mixin = loader_mixin(pipeline_class)
    parts = [part for part in mixin._lora_loadable_modules if part in components]
    for lora in loras_of(options):
        targets = lora_targets(mixin, lora, unet_config)
        if not targets & set(parts):
            raise NeuronExportError(f"--lora_model_ids {lora.folder}: {lora.weight_name} holds no LoRA weights for "
                                    f"this {pipeline_class}'s {' or '.join(parts)}")
    return options, [lora_record(lora) for lora in loras_of(options)]


def resolve_lora_files(options):
    """The options with each LoRA's folder made absolute and its weight file named (diffusers' default
    name when it is there); a missing folder or file is a one-line error."""
    folders, weight_names = [], []
    for index, model_id in enumerate(options.lora_model_ids):
        folder = Path(model_id).expanduser()
        if not folder.is_dir():
            raise NeuronExportError(f"--lora_model_ids {model_id}: no such folder (LoRAs are read from local folders)")
        weight_name = options.lora_weight_names[index] if options.lora_weight_names else _default_weight_name(folder, model_id)
        if not (folder / weight_name).is_file():
            raise NeuronExportError(f"--lora_weight_names {weight_name}: no such file in {model_id}")
        folders.append(str(folder.resolve()))
        weight_names.append(weight_name)
    return options.replace(lora_model_ids=tuple(folders), lora_weight_names=tuple(weight_names),
                           lora_scales=tuple(lora.scale for lora in loras_of(options)))


def _default_weight_name(folder: Path, model_id: str) -> str:
    if (folder / DEFAULT_WEIGHT_NAME).is_file():
        return DEFAULT_WEIGHT_NAME
    found = sorted(p.name for p in folder.glob("*.safetensors"))
    raise NeuronExportError(f"--lora_model_ids {model_id} has no {DEFAULT_WEIGHT_NAME}; name its file with --lora_weight_names "
                            f"({'found: ' + ', '.join(found) if found else 'it holds no .safetensors file'})")


def lora_record(lora: Lora) -> dict[str, Any]:
    """What the manifest says of a fused LoRA; its sha256 lets the reference check it is still the same file."""
    with open(lora.file, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"model_id": str(lora.folder), "weight_name": lora.weight_name, "adapter_name": lora.adapter_name,
            "scale": lora.scale, "sha256": digest}


def check_unchanged(records: list[dict[str, Any]]) -> None:
    """Refuse to rebuild a reference from LoRA files that are no longer those the artifact was compiled with."""
    for record in records:
        file = Path(record["model_id"]) / record["weight_name"]
        if not file.is_file():
            raise NeuronExportError(f"the LoRA {file} it was compiled with is no longer there")
        if lora_record(Lora(file.parent, file.name, None, 1.0))["sha256"] != record["sha256"]:
            raise NeuronExportError(f"the LoRA {file} changed since it was compiled")


def loader_mixin(pipeline_class: str) -> type:
    """diffusers' LoRA loader of a pipeline class (StableDiffusionLoraLoaderMixin, ...)."""
    import diffusers
    from diffusers.loaders.lora_base import LoraBaseMixin

    pipeline = getattr(diffusers, pipeline_class or "", None)
    for base in getattr(pipeline, "__mro__", ()):
        if base is not LoraBaseMixin and issubclass(base, LoraBaseMixin) and base.__module__.startswith("diffusers.loaders"):
            return base
    raise NeuronExportError(f"--lora_model_ids: a {pipeline_class or 'pipeline'} takes no LoRA in diffusers")


def lora_targets(mixin: type, lora: Lora, unet_config: dict[str, Any]) -> set[str]:
    """The pipeline parts (unet, text_encoder, ...) a LoRA file has weights for, in diffusers' reading of it."""
    from diffusers.configuration_utils import FrozenDict

    try:
        state_dict = mixin.lora_state_dict(str(lora.folder), weight_name=lora.weight_name,
                                         unet_config=FrozenDict(unet_config), local_files_only=True)[0]
    except Exception as error:  # diffusers / safetensors raise many types for a file that is no LoRA
        raise NeuronExportError(f"--lora_model_ids {lora.folder}: {lora.weight_name} is not a LoRA diffusers reads ({first_line(error)})") from None
    parts = {key.split(".", 1)[0] for key in state_dict}
    return parts & set(mixin._lora_loadable_modules)


def fuse_loras(target, loras: list[Lora], what: str) -> None:
    """diffusers' steps on `target` (a pipeline, or a holder of one component): load each LoRA, mix, fuse,
    unload the peft layers. `what` names the target in errors."""
    if not loras:
        return
    try:
        with torch.no_grad(), _quiet_loader():
            for lora in loras:
                target.load_lora_weights(str(lora.folder), weight_name=lora.weight_name, adapter_name=lora.adapter_name,
                                         local_files_only=True)
            loaded = {name for names in target.get_list_adapters().values() for name in names}
            if len(loaded) < len(loras):  # diffusers only warns when no key matches the model
                raise NeuronExportError(f"--lora_model_ids {_folders(loras)}: diffusers found no weights in it for the {what}")
            if len(loras) == 1:
                target.fuse_lora(lora_scale=loras[0].scale)
            else:
                target.set_adapters([lora.adapter_name for lora in loras], adapter_weights=[lora.scale for lora in loras])
                target.fuse_lora()
            target.unload_lora_weights()
    except NeuronExportError:
        raise
    except Exception as error:  # peft / diffusers: shape mismatches, modules not found, ...
        raise NeuronExportError(f"--lora_model_ids {_folders(loras)} does not fit the {what}: {first_line(error)}") from None


@contextlib.contextmanager
def _quiet_loader():
    """diffusers logs a LoRA that fails to load (then raises): the raised error is reported once, in one line."""
    logger = logging.getLogger("diffusers.loaders.peft")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _folders(loras: list[Lora]) -> str:
    return ", ".join(str(lora.folder) for lora in loras)


def fuse_into_component(module: torch.nn.Module, part: str, pipeline_class: str, loras: list[Lora],
                        unet_config: dict[str, Any], what: str) -> torch.nn.Module:
    """The component `part` (unet, text_encoder, text_encoder_2) with the LoRAs that have weights for it fused in."""
    mixin = loader_mixin(pipeline_class) if loras else None
    if mixin is None or part not in mixin._lora_loadable_modules:
        return module
    wanted = [lora for lora in loras if part in lora_targets(mixin, lora, unet_config)]
    fuse_loras(_component_holder(mixin, part, module, unet_config), wanted, what)
    return module


def _component_holder(mixin: type, part: str, module: torch.nn.Module, unet_config: dict[str, Any]):
    """An object diffusers' LoRA methods accept as a pipeline, that carries one component: loading the
    others is skipped (SDXL's loader reads the UNet's config even then, so a stand-in carries it)."""
    from diffusers.configuration_utils import FrozenDict

    class ComponentHolder(mixin):
        hf_device_map = None  # read by diffusers' offloading check

        @property
        def components(self) -> dict[str, Any]:
            return {name: getattr(self, name, None) for name in self._lora_loadable_modules}

        @classmethod
        def load_lora_into_unet(cls, state_dict, network_alphas=None, unet=None, **kwargs):
            if isinstance(unet, torch.nn.Module):
                super().load_lora_into_unet(state_dict, network_alphas=network_alphas, unet=unet, **kwargs)

        @classmethod
        def load_lora_into_text_encoder(cls, state_dict, network_alphas=None, text_encoder=None, **kwargs):
            if isinstance(text_encoder, torch.nn.Module):
                super().load_lora_into_text_encoder(state_dict, network_alphas=network_alphas, text_encoder=text_encoder, **kwargs)

    holder = ComponentHolder()
    for name in mixin._lora_loadable_modules:
        setattr(holder, name, None)
    holder.unet = SimpleNamespace(config=FrozenDict(unet_config))
    setattr(holder, part, module)
    return holder
