"""ControlNet (optimum-neuron's --controlnet_ids): each ControlNet is a compiled component whose residuals
are inputs of the compiled UNet.

The ControlNets come from a saved StableDiffusionControlNetPipeline folder (controlnet/, and controlnet_1/,
... for diffusers' MultiControlNetModel) or are added to a base StableDiffusionPipeline with
--controlnet_ids (local folders or hub ids). A ControlNet outputs one residual per output of the UNet's
down blocks and one for its mid block; their number and shapes follow the UNet's config (residual_layout),
and each ControlNet must produce exactly the UNet's. The conditioning scale is a traced input, one value
per row, so it can change between calls (optimum-neuron traces one value and must repeat it for its two
data-parallel cores); guess mode is not compiled.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..errors import NeuronExportError
from ..model_files import check_links, read_json
from ..registry import DIFFUSION_TASKS, InputSpec
from ..registry.diffusion import DiffusionComponent, repeated_components

CONTROLNET_CLASS = "ControlNetModel"
# A base pipeline -> its ControlNet pipeline (what --controlnet_ids makes of it).
CONTROLNET_PIPELINES = {"StableDiffusionPipeline": "StableDiffusionControlNetPipeline",
                        "StableDiffusionXLPipeline": "StableDiffusionXLControlNetPipeline"}
DOWN_RESIDUAL = "down_block_additional_residuals"  # UNet inputs down_block_additional_residuals_0, _1, ... (optimum-neuron's)
MID_RESIDUAL = "mid_block_additional_residual"
DOWN_OUTPUT = "down_block_res_samples"  # ControlNet outputs down_block_res_samples.0, .1, ...
MID_OUTPUT = "mid_block_res_sample"


def pipeline_class_of(source, options) -> str:
    """model_index.json's _class_name; with --controlnet_ids, the ControlNet pipeline over that base pipeline."""
    class_name = source.config.get("_class_name", "")
    if not options.controlnet_ids:
        return class_name
    if class_name in CONTROLNET_PIPELINES.values():
        raise NeuronExportError(f"--controlnet_ids: {source.origin} is a {class_name} with its own ControlNet(s); "
                                f"give a base {' or '.join(CONTROLNET_PIPELINES)} to add ControlNets to")
    if class_name not in CONTROLNET_PIPELINES:
        raise NeuronExportError(f"--controlnet_ids: {source.origin} is a {class_name or 'model without model_index.json'}; "
                                f"ControlNets are added to a {' or '.join(CONTROLNET_PIPELINES)}")
    return CONTROLNET_PIPELINES[class_name]


def assembled_model_index(source, options) -> Optional[dict[str, Any]]:
    """The model_index.json of a base pipeline with --controlnet_ids (None without): its ControlNet class and entry."""
    if not options.controlnet_ids:
        return None
    entry = ["diffusers", CONTROLNET_CLASS if len(options.controlnet_ids) == 1 else "MultiControlNetModel"]
    return {**source.config, "_class_name": pipeline_class_of(source, options), "controlnet": entry}


def plan_controlnets(source, options, task: str, specs: list[DiffusionComponent], unet_config: dict[str, Any]):
    """The pipeline's components `specs` with one per ControlNet of the task (their `source`: a folder of the
    pipeline, or the absolute folder of a --controlnet_ids entry) and the UNet taking their residuals; the
    options with the --controlnet_ids resolved to folders. Every ControlNet is checked against the UNet first."""
    task_specs = DIFFUSION_TASKS[task].components
    if not any(spec.repeated for spec in task_specs):
        return options, specs
    if options.controlnet_ids:
        folders = [_id_folder(model_id, options) for model_id in options.controlnet_ids]
        options = options.replace(controlnet_ids=tuple(str(folder) for folder in folders))
        sources = [str(folder) for folder in folders]
    else:
        sources = _pipeline_controlnets(source)
    layout = residual_layout(unet_config)
    for name in sources:
        what = f"--controlnet_ids {name}" if options.controlnet_ids else f"{name}/ of {source.origin}"
        config = controlnet_config(source.path / name, what)
        if residual_layout(config) != layout or config.get("cross_attention_dim") != unet_config.get("cross_attention_dim"):
            raise NeuronExportError(f"{what}: this ControlNet was made for another UNet (its blocks or cross-attention "
                                    "size differ from this pipeline's UNet)")
    present = {spec.name: spec for spec in specs}  # as planned: an LCM UNet already takes timestep_cond
    kept = tuple(present.get(spec.name, spec) for spec in task_specs if spec.repeated or spec.name in present)
    expanded = repeated_components(kept, len(sources))
    controlnets = iter(sources)
    return options, [
        _with_residual_inputs(spec, layout) if spec.kind == "unet"
        else replace(spec, source=next(controlnets)) if spec.repeated else spec
        for spec in expanded
    ]


def controlnet_config(folder: Path, what: str) -> dict[str, Any]:
    """A ControlNet folder's config; anything else (a UNet, a pipeline, no config) is a one-line error."""
    if not (folder / "config.json").is_file():
        raise NeuronExportError(f"{what}: no ControlNet there (a folder with config.json and weights)")
    check_links(folder)
    config = read_json(folder / "config.json")
    if config.get("_class_name") != CONTROLNET_CLASS:
        raise NeuronExportError(f"{what} holds a {config.get('_class_name') or 'model'}, not a diffusers {CONTROLNET_CLASS}")
    if config.get("global_pool_conditions"):  # diffusers then forces guess mode, which the compiled ControlNet lacks
        raise NeuronExportError(f"{what}: a global-pool ControlNet (shuffle) runs in guess mode, which is not compiled here")
    return config


def _id_folder(model_id: str, options) -> Path:
    """A --controlnet_ids entry's folder: a local folder, or a hub id downloaded as --model's are."""
    from ..sources import HUB_ID, _download

    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return folder.resolve()
    if model_id.startswith((".", "/", "~")) or not HUB_ID.match(model_id):
        raise NeuronExportError(f"--controlnet_ids {model_id}: no such folder")
    return _download(model_id, options)


def _pipeline_controlnets(source) -> list[str]:
    """The ControlNet folders of a saved ControlNet pipeline: controlnet/, and controlnet_1/, ... for several."""
    entry = source.config.get("controlnet")
    if not (isinstance(entry, list) and len(entry) == 2 and entry[1] in (CONTROLNET_CLASS, "MultiControlNetModel")):
        raise NeuronExportError(f"{source.origin}: model_index.json's controlnet must be a {CONTROLNET_CLASS} or "
                                f"MultiControlNetModel, got {entry!r}")
    names = ["controlnet"]
    while entry[1] == "MultiControlNetModel" and (source.path / f"controlnet_{len(names)}").is_dir():
        names.append(f"controlnet_{len(names)}")
    return names


def residual_layout(config: dict[str, Any]) -> list[tuple[int, int]]:
    """(channels, times halved) of each residual a ControlNet hands the UNet: the conv_in output, every
    resnet and downsampler output of the down blocks, then the mid block's (diffusers' order)."""
    try:
        channels = list(config["block_out_channels"])
        layers = config["layers_per_block"]
        per_block = [layers] * len(channels) if isinstance(layers, int) else list(layers)
        layout = [(channels[0], 0)]
        for index, width in enumerate(channels):
            layout += [(width, index)] * per_block[index]
            if index < len(channels) - 1:
                layout.append((width, index + 1))
    except (KeyError, TypeError, IndexError) as error:
        raise NeuronExportError(f"a UNet or ControlNet config.json lacks or has a bad {error}") from None
    return layout + [(channels[-1], len(channels) - 1)]


def _residual_axes(index: int, count: int) -> tuple[str, tuple[str, ...]]:
    """The UNet input of residual `index` of `count` (the last is the mid block's) and its axes."""
    axis = "mid_residual" if index == count - 1 else f"residual_{index}"
    name = MID_RESIDUAL if index == count - 1 else f"{DOWN_RESIDUAL}_{index}"
    return name, ("unet_batch_size", f"{axis}_channels", f"{axis}_height", f"{axis}_width")


def _with_residual_inputs(unet: DiffusionComponent, layout: list[tuple[int, int]]) -> DiffusionComponent:
    residuals = tuple(InputSpec(*_residual_axes(i, len(layout)), "gaussian", "float32") for i in range(len(layout)))
    return replace(unet, inputs=unet.inputs + residuals)


def controlnet_shapes(source, specs: Sequence[DiffusionComponent], shapes: dict[str, int], unet_config: dict[str, Any]) -> dict[str, int]:
    """The axis values of the ControlNet inputs and residuals at these shapes ({} without ControlNets)."""
    controlnets = [spec for spec in specs if spec.repeated]
    if not controlnets:
        return {}
    channels = {read_json(source.path / spec.source / "config.json").get("conditioning_channels", 3) for spec in controlnets}
    if len(channels) != 1:
        raise NeuronExportError(f"{source.origin}: its ControlNets take control images of different channels {sorted(channels)}")
    values = {"control_channels": channels.pop()}
    layout = residual_layout(unet_config)
    for index, (width, halvings) in enumerate(layout):
        _, axes = _residual_axes(index, len(layout))
        height, breadth = shapes["latent_height"], shapes["latent_width"]
        for _ in range(halvings):  # a stride-2 convolution with padding 1
            height, breadth = (height + 1) // 2, (breadth + 1) // 2
        values.update(zip(axes[1:], (width, height, breadth)))
    return values


class ControlNetModule(torch.nn.Module):
    """ControlNetModel: the residuals scaled by a per-row conditioning scale (diffusers multiplies them by
    its conditioning_scale exactly so, outside guess mode)."""

    def __init__(self, controlnet: torch.nn.Module, added_condition_names: Sequence[str] = ()):
        super().__init__()
        self.controlnet = controlnet
        self.added_condition_names = list(added_condition_names)

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, *added_conditions):
        added_cond_kwargs = dict(zip(self.added_condition_names, added_conditions)) or None
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states, controlnet_cond=controlnet_cond,
                                    conditioning_scale=1.0, added_cond_kwargs=added_cond_kwargs, return_dict=False)
        scale = conditioning_scale.reshape(-1, 1, 1, 1)
        return (*(residual * scale for residual in down), mid * scale)


def controlnet_module(spec: DiffusionComponent, eager: torch.nn.Module, example: dict[str, torch.Tensor]):
    """The export's wrapper of a ControlNet component (export/diffusion.py WRAPPERS): module and output names."""
    count = len(residual_layout(eager.config))
    outputs = [f"{DOWN_OUTPUT}.{index}" for index in range(count - 1)] + [MID_OUTPUT]
    return ControlNetModule(eager, [i.name for i in spec.inputs[5:]]), outputs


def split_residuals(named: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A UNet's extra inputs by name -> (added conditions, the residual keywords of UNet2DConditionModel)."""
    down = [tensor for name, tensor in named.items() if name.startswith(DOWN_RESIDUAL)]
    residuals = {"down_block_additional_residuals": tuple(down), MID_RESIDUAL: named[MID_RESIDUAL]} if down else {}
    added = {name: tensor for name, tensor in named.items() if not name.startswith(DOWN_RESIDUAL) and name != MID_RESIDUAL}
    return added, residuals


def residual_inputs(input_names: Sequence[str], down: Optional[Sequence[torch.Tensor]], mid: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The compiled UNet's residual inputs from diffusers' keywords; a UNet compiled with (without) them
    refuses a call without (with) them rather than silently ignoring the ControlNet."""
    names = [name for name in input_names if name.startswith(DOWN_RESIDUAL)]
    if not names:
        if down is not None or mid is not None:
            raise NeuronExportError("this compiled UNet takes no ControlNet residuals: export a ControlNet pipeline "
                                    "(a StableDiffusionControlNetPipeline folder, or --controlnet_ids) to run one")
        return {}
    if down is None or mid is None or len(down) != len(names):
        given = "none" if down is None else len(down)
        raise NeuronExportError(f"the compiled UNet takes {len(names)} ControlNet down-block residuals and the mid-block "
                                f"residual; got {given} and {'none' if mid is None else 'one'}")
    return {**{f"{DOWN_RESIDUAL}_{index}": tensor for index, tensor in enumerate(down)}, MID_RESIDUAL: mid}


def load_controlnets(folders: Sequence[str]):
    """The eager ControlNet(s) of --controlnet_ids, as a diffusers ControlNet pipeline takes them (a list for several)."""
    from diffusers import ControlNetModel

    nets = [ControlNetModel.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32) for folder in folders]
    return nets[0] if len(nets) == 1 else nets
