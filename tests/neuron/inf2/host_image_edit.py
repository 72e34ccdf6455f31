"""Inpainting and instruct-pix2pix on the NeuronCores: the UNet data-parallel on cores 0 and 1 with its
extra input channels; instruct-pix2pix's 3 rows per image shared as 2 per core (the fourth padded).
Images against the eager diffusers pipelines. Budget: ~2 minutes."""

import numpy as np
import torch_neuronx

from neuron_export import (
    ExportOptions, NeuronStableDiffusionInpaintPipeline, NeuronStableDiffusionInstructPix2PixPipeline, export, read_manifest,
)
from neuron_export.demo import build_tiny_stable_diffusion
from neuron_export.diffusion.requests import example_request
from neuron_export.registry import DIFFUSION_TASKS

MEAN_ATOL, MAX_ATOL = 1e-2, 1e-3  # as tests/engine/test_image_edit_pipelines.py


def images_of(pipe, task: str):
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe(**example_request(DIFFUSION_TASKS[task].primary, 64, 64, 2), output_type="np").images)


def test_instruct_pix2pix_rows_are_shared_by_the_cores_and_match_diffusers(tmp_path, runs):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    task = "stable-diffusion-instruct-pix2pix"
    source = build_tiny_stable_diffusion(tmp_path / "source", **DIFFUSION_TASKS[task].tiny)
    result = export(source, tmp_path / "compiled", ExportOptions(use_cache=False))
    assert result.validation_passed is True and result.manifest.backend == "neuron"
    unet = read_manifest(tmp_path / "compiled" / "unet")
    assert unet.neuron_cores == [0, 1] and unet.inputs[0].shape[:2] == [2, 8]  # 3 rows on 2 cores: 2 each
    torch_neuronx.standin.clear_executions()  # the export's own runs (validation, image check)
    pipe = NeuronStableDiffusionInstructPix2PixPipeline.from_pretrained(tmp_path / "compiled")
    images = images_of(pipe, task)
    expected = images_of(StableDiffusionInstructPix2PixPipeline.from_pretrained(source), task)
    difference = np.abs(images - expected)
    assert expected.std() > 0.05 and difference.mean() <= MEAN_ATOL and difference.max() <= MAX_ATOL
    unet_runs = [(r["core"], r["shapes"][0][0]) for r in runs() if r["graph"] == "UNetModule"]
    assert unet_runs and unet_runs == [(0, 2), (1, 2)] * (len(unet_runs) // 2)


def test_inpainting_unet_takes_nine_channels_on_the_cores_and_matches_diffusers(tmp_path):
    from diffusers import StableDiffusionInpaintPipeline

    task = "stable-diffusion-inpaint"
    source = build_tiny_stable_diffusion(tmp_path / "source", **DIFFUSION_TASKS[task].tiny)
    result = export(source, tmp_path / "compiled", ExportOptions(use_cache=False))
    assert result.validation_passed is True and result.manifest.validation.image_check.passed
    assert read_manifest(tmp_path / "compiled" / "unet").inputs[0].shape == [1, 9, 8, 8]  # one CFG half per core
    pipe = NeuronStableDiffusionInpaintPipeline.from_pretrained(tmp_path / "compiled")
    expected = images_of(StableDiffusionInpaintPipeline.from_pretrained(source), task)
    difference = np.abs(images_of(pipe, task) - expected)
    assert expected.std() > 0.05 and difference.mean() <= MEAN_ATOL and difference.max() <= MAX_ATOL
