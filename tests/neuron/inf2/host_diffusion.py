"""Stable Diffusion and SDXL on the NeuronCores, the AWS recipe: the UNet compiled for one core's share
of the CFG batch with --model-type=unet-inference and the samples' attention, loaded data-parallel on
cores 0 and 1 (unconditional and text halves side by side); text encoders with --model-type=transformer;
the VAE in fp32 under --auto_cast. Images against the eager diffusers pipelines. Budget: ~90 s."""

import json

import numpy as np
import pytest
import torch
import torch_neuronx

from neuron_export import ExportOptions, NeuronStableDiffusionPipeline, NeuronStableDiffusionXLPipeline, export, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion

PROMPT = "a photo of an astronaut riding a horse"
MEAN_ATOL, MAX_ATOL = 1e-2, 1e-3  # as tests/engine/test_diffusion.py: dropping guidance or the prompt shows above them


def generate(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images


def assert_same_images(compiled, eager, mean=MEAN_ATOL, most=MAX_ATOL):
    difference = np.abs(np.asarray(compiled, dtype=np.float32) - np.asarray(eager, dtype=np.float32))
    assert difference.mean() <= mean and difference.max() <= most, (difference.mean(), difference.max())


def compiled_with(folder, component):
    header = torch_neuronx.standin.describe(folder / component / "model.neuron")
    return " ".join(header["compiler_args"]), header


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    source = build_tiny_stable_diffusion(root / "source")
    result = export(source, root / "compiled", ExportOptions(compiler_workdir=str(root / "work"), use_cache=False))
    return source, root / "compiled", root / "work", result


def test_the_recipe_is_what_was_compiled(sd):
    _, compiled, work, result = sd
    assert result.validation_passed is True and result.manifest.backend == "neuron"
    unet = read_manifest(compiled / "unet")
    assert unet.neuron_cores == [0, 1] and unet.inputs[0].shape[0] == 1  # one image's CFG half per core
    args, header = compiled_with(compiled, "unet")
    assert "--model-type unet-inference" in args and header["flags"]["lazy_load"] == header["flags"]["async_load"] == 1
    assert header["env"]["NEURON_FUSE_SOFTMAX"] == "1"
    graph = (work / "unet" / "model.hlo").read_text()
    assert "aten::bmm" in graph and "scaled_dot_product_attention" not in graph  # the samples' attention, not SDPA
    assert "--model-type transformer" in compiled_with(compiled, "text_encoder")[0]
    assert "--model-type unet-inference" in compiled_with(compiled, "vae_decoder")[0]
    assert {read_manifest(compiled / c).neuron_cores[0] for c in ("text_encoder", "vae_encoder", "vae_decoder")} == {0}


def test_cfg_halves_run_on_separate_cores_and_match_diffusers(sd, runs):
    from diffusers import StableDiffusionPipeline

    source, compiled, _, _ = sd
    pipe = NeuronStableDiffusionPipeline.from_pretrained(compiled)
    assert pipe.unet.compiled.cores == [0, 1] and pipe.unet.compiled.replicas == 2
    images = generate(pipe, guidance_scale=7.5)
    assert_same_images(images, generate(StableDiffusionPipeline.from_pretrained(source), guidance_scale=7.5))
    unet_runs = [(r["core"], r["shapes"][0][0]) for r in runs() if r["graph"] == "UNetModule"]
    # every UNet call (one per scheduler step): the unconditional half on core 0, the text half on core 1
    assert unet_runs and unet_runs == [(0, 1), (1, 1)] * (len(unet_runs) // 2)
    assert {r["core"] for r in runs() if r["graph"] != "UNetModule"} == {0}


def test_one_visible_core_runs_the_halves_in_turn(sd, runs, monkeypatch):
    from diffusers import StableDiffusionPipeline

    source, compiled, _, _ = sd
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "0")
    pipe = NeuronStableDiffusionPipeline.from_pretrained(compiled)
    assert pipe.unet.compiled.cores == [0] and pipe.unet.compiled.replicas == 1
    images = generate(pipe, guidance_scale=7.5)
    assert_same_images(images, generate(StableDiffusionPipeline.from_pretrained(source), guidance_scale=7.5))
    unet_runs = [(r["core"], r["shapes"][0][0]) for r in runs() if r["graph"] == "UNetModule"]
    assert unet_runs and set(unet_runs) == {(0, 1)} and len(unet_runs) % 2 == 0  # both halves of each call, on core 0


def test_sdxl_with_auto_cast_keeps_the_vae_in_fp32(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    source = build_tiny_stable_diffusion(tmp_path / "source", xl=True)
    result = export(source, tmp_path / "compiled", ExportOptions(auto_cast="matmul", use_cache=False))
    compiled = tmp_path / "compiled"
    assert result.validation_passed is True
    for text_encoder in ("text_encoder", "text_encoder_2"):
        assert "--model-type transformer --auto-cast matmult --auto-cast-type bf16" in compiled_with(compiled, text_encoder)[0]
    for vae in ("vae_encoder", "vae_decoder"):
        assert "--auto-cast none" in compiled_with(compiled, vae)[0]
        assert json.loads((compiled / vae / "manifest.json").read_text())["auto_cast"] == "none"
    pipe = NeuronStableDiffusionXLPipeline.from_pretrained(compiled)
    eager = generate(StableDiffusionXLPipeline.from_pretrained(source), guidance_scale=5.0)
    assert_same_images(generate(pipe, guidance_scale=5.0), eager, mean=2e-2, most=1e-1)  # bf16 matmuls in the UNet
