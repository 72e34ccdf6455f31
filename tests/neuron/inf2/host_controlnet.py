"""A ControlNet pipeline on the NeuronCores: the ControlNet compiled like the UNet (--model-type
unet-inference, data-parallel on cores 0 and 1, one CFG half each, with its per-row conditioning scale) and
the UNet taking its residuals; the image against eager diffusers'. Budget: ~1-3 minutes (200 s at load average 10 on 2 cores)."""

import numpy as np
import torch
import torch_neuronx

from neuron_export import ExportOptions, NeuronStableDiffusionControlNetPipeline, export, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion
from neuron_export.diffusion.requests import example_image

PROMPT = "a photo of an astronaut riding a horse"
MEAN_ATOL = 1e-2  # as tests/engine/test_controlnet.py


def generate(pipe, variant=0):
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, image=example_image("control", 64, 64, variant=variant), num_inference_steps=2,
                generator=torch.Generator().manual_seed(0), output_type="np").images[0]


def test_controlnet_runs_data_parallel_and_matches_diffusers(tmp_path):
    from diffusers import StableDiffusionControlNetPipeline

    source = build_tiny_stable_diffusion(tmp_path / "source", controlnets=1)
    result = export(source, tmp_path / "compiled", ExportOptions(use_cache=False))
    assert result.validation_passed is True and result.manifest.backend == "neuron"
    header = torch_neuronx.standin.describe(tmp_path / "compiled" / "controlnet" / "model.neuron")
    assert "--model-type unet-inference" in " ".join(header["compiler_args"])
    assert read_manifest(tmp_path / "compiled" / "controlnet").neuron_cores == [0, 1]

    pipe = NeuronStableDiffusionControlNetPipeline.from_pretrained(tmp_path / "compiled")
    torch_neuronx.standin.clear_executions()
    image = generate(pipe)
    # every ControlNet call (one per step): the unconditional half on core 0, the text half on core 1
    controlnet_runs = [(r["core"], r["shapes"][0][0]) for r in torch_neuronx.standin.executions() if r["graph"] == "ControlNetModule"]
    assert controlnet_runs and controlnet_runs == [(0, 1), (1, 1)] * (len(controlnet_runs) // 2)
    eager = generate(StableDiffusionControlNetPipeline.from_pretrained(source))
    assert eager.std() > 0.05 and np.abs(image - eager).mean() < MEAN_ATOL
    assert np.abs(generate(pipe, variant=1) - image).max() > 0.05  # the control image steers the compiled pipeline
