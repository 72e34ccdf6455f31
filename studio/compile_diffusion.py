"""The Compile form's parts for Stable Diffusion pipelines: LoRAs fused at compile time, ControlNets
compiled with the pipeline (--controlnet_ids), and a UNet without classifier-free guidance rows."""

from __future__ import annotations

from typing import Any, Optional

import streamlit as st

from neuron_export.diffusion.controlnet import CONTROLNET_PIPELINES, controlnet_config
from neuron_export.diffusion.lora import resolve_lora_files
from neuron_export.errors import NeuronExportError
from neuron_export.model_info import ModelInfo
from neuron_export.options import ExportOptions
from neuron_export.registry import DIFFUSERS_PIPELINES
from studio import ui
from studio.workspace import Workspace

# The tasks of the base pipelines ControlNets can be added to (StableDiffusion(XL)Pipeline folders).
CONTROLNET_BASE_TASKS = {DIFFUSERS_PIPELINES[name] for name in CONTROLNET_PIPELINES}


def lora_section(workspace: Workspace, info: Optional[ModelInfo]) -> Optional[dict[str, Any]]:
    """LoRAs fused into a Stable Diffusion pipeline at compile time: folders in a model root, one per line
    with an optional scale; None (and the reason on screen) when a folder or its weight file is missing."""
    if info is None or info.library != "diffusers":
        return {}
    with st.expander("LoRA (fused into the UNet and text encoders at compile time)"):
        text = st.text_area("LoRA folders, one per line: FOLDER or FOLDER SCALE (default scale 1.0)", key="loras",
                            help="Each folder holds diffusers' pytorch_lora_weights.safetensors. A new scale means a new compile.")
    folders, scales = [], []
    for line in filter(None, map(str.strip, text.splitlines())):
        folder, _, last = line.rpartition(" ")
        scale = _number(last) if folder else None
        folders.append(folder.strip() if scale is not None else line)
        scales.append(1.0 if scale is None else scale)
    try:
        fields = {"lora_model_ids": [str(workspace.model_folder(folder)) for folder in folders], "lora_scales": scales,
                  "lora_adapter_names": [f"lora{i + 1}" for i in range(len(folders))] if len(folders) > 1 else []}
        resolve_lora_files(ExportOptions(**fields))  # a missing folder or weight file is shown before Compile
    except NeuronExportError as error:
        ui.show_error(error)
        return None
    return fields


def guidance_section(info: Optional[ModelInfo]) -> dict[str, Any]:
    """Stable Diffusion only: compile the UNet without classifier-free guidance rows (SDXL Turbo)."""
    if info is None or info.library != "diffusers":
        return {}
    off = st.checkbox("Compile without classifier-free guidance (SDXL Turbo: run at guidance 0)", key="no_cfg",
                      help="The UNet is compiled for one row per image instead of two: half the work, and the pipeline "
                           "then runs guidance_scale <= 1 only. LCM models never use the guidance rows.")
    return {"classifier_free_guidance": not off}


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def controlnet_section(workspace: Workspace, info: Optional[ModelInfo]) -> Optional[dict[str, Any]]:
    """ControlNets added to a base Stable Diffusion (XL) pipeline, each compiled as a component: folders in a
    model root, one per line; None (and the reason on screen) when one is missing or not a ControlNet."""
    if info is None or info.detected_task not in CONTROLNET_BASE_TASKS:
        return {}
    with st.expander("ControlNet (compiled with the pipeline: a control image steers every image)"):
        text = st.text_area("ControlNet folders, one per line (several: diffusers' MultiControlNetModel)", key="controlnets",
                            help="Each folder holds a diffusers ControlNetModel (config.json and weights) made for this "
                                 "pipeline's UNet; the artifact becomes a ControlNet pipeline.")
    try:
        folders = [workspace.model_folder(line) for line in filter(None, map(str.strip, text.splitlines()))]
        for folder in folders:  # a folder that is not a ControlNet is shown before Compile
            controlnet_config(folder, str(folder))
    except NeuronExportError as error:
        ui.show_error(error)
        return None
    return {"controlnet_ids": [str(folder) for folder in folders]}
