"""A latent consistency model on the NeuronCores: its UNet takes the guidance embedding (timestep_cond)
and runs one row per image (no CFG halves): one image's row on core 0, the second copy padded.
Images against the eager diffusers pipeline. Budget: ~60 s."""

import numpy as np
import torch

from neuron_export import ExportOptions, NeuronLatentConsistencyModelPipeline, export, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion


def test_lcm_runs_one_row_per_image_and_matches_diffusers(tmp_path, runs):
    from diffusers import LatentConsistencyModelPipeline

    source = build_tiny_stable_diffusion(tmp_path / "source", variant="lcm")
    result = export(source, tmp_path / "compiled", ExportOptions(use_cache=False))
    assert result.validation_passed is True and result.manifest.backend == "neuron"
    unet = read_manifest(tmp_path / "compiled" / "unet")
    assert {i.name: i.shape for i in unet.inputs}["timestep_cond"] == [1, 16] and unet.neuron_cores == [0, 1]

    def generate(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe("a photo of an astronaut", num_inference_steps=3, guidance_scale=8.5,
                    generator=torch.Generator().manual_seed(0), output_type="np").images

    pipe = NeuronLatentConsistencyModelPipeline.from_pretrained(tmp_path / "compiled")
    runs_before = len(runs())  # the export's validation and image check ran the UNet too
    images = generate(pipe)
    eager = generate(LatentConsistencyModelPipeline.from_pretrained(source))
    difference = np.abs(images - eager)
    assert eager.std() > 0.05 and difference.mean() <= 1e-2 and difference.max() <= 1e-3, (difference.mean(), difference.max())
    unet_runs = [(r["core"], r["shapes"][0][0]) for r in runs()[runs_before:] if r["graph"] == "UNetModule"]
    assert unet_runs == [(0, 1), (1, 1)] * 3  # per step one row per core: the image's, and a padded copy of it
