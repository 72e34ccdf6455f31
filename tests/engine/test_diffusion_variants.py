"""LCM, SDXL Turbo and the SDXL refiner: the tiny demos exported with the real CLI, their compiled
pipelines' images against the eager diffusers pipelines' with the same seed.

Budget: three torchscript pipeline exports and one inductor LCM pipeline (-O1). Measured on 2 cores: 2 minutes
at load average ~4, 6.6 minutes at load average 8 (the inductor test 58 s and 165 s of them).
"""

import json

import numpy as np
import pytest
import torch
from support import run_cli

from neuron_export import ExportOptions, NeuronExportError, read_manifest
from neuron_export.demo import DEMO_MODELS
from neuron_export.errors import ArtifactError

# Each variant's compiles take minutes on 2 cores: outside the default suite, run by .ci/run (-m sd_variants).
pytestmark = pytest.mark.sd_variants

PROMPT = "a photo of an astronaut riding a horse"
MEAN_ATOL = 1e-2  # the bound on the mean absolute pixel difference
MAX_ATOL = 1e-3  # fp32 end to end: float rounding only; dropping w or a row moves some pixel by >= 0.05


def assert_same_images(compiled, eager):
    compiled, eager = np.asarray(compiled, dtype=np.float32), np.asarray(eager, dtype=np.float32)
    assert compiled.shape == eager.shape
    assert eager.std() > 0.05  # not a flat image: the comparison can fail
    assert np.abs(compiled - eager).mean() <= MEAN_ATOL
    assert np.abs(compiled - eager).max() <= MAX_ATOL


def generate(pipe, steps: int = 4, output_type: str = "np", **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), num_inference_steps=steps, output_type=output_type, **kwargs).images


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The tiny demos, built by the demo catalog's own builders."""
    root = tmp_path_factory.mktemp("variants")
    built = {name: DEMO_MODELS[f"demo:tiny-{name}"].build(root / name) for name in ("lcm", "sdxl-turbo", "sdxl-refiner")}
    return {**built, "root": root}


def export(folders, name: str, *flags: str):
    output = folders["root"] / f"{name}_compiled"
    result = run_cli("export", "--model", str(folders[name]), "--backend", "torchscript", *flags, str(output))
    assert result.returncode == 0, result.stderr
    end_to_end = [line for line in result.stdout.splitlines() if line.startswith("End-to-end image check")]
    assert len(end_to_end) == 1 and end_to_end[0].endswith("passed ✓"), result.stdout[-2000:]
    return result, output


@pytest.fixture(scope="module")
def lcm_export(folders):
    return export(folders, "lcm")


@pytest.fixture(scope="module")
def turbo_export(folders):
    return export(folders, "sdxl-turbo", "--no-classifier-free-guidance")


@pytest.fixture(scope="module")
def refiner_export(folders):
    return export(folders, "sdxl-refiner")


def unet_inputs(output) -> dict:
    return {i.name: i.shape for i in read_manifest(output / "unet").inputs}


def test_lcm_unet_takes_the_guidance_embedding_and_one_row_per_image(lcm_export):
    result, output = lcm_export
    assert "Task auto-detected: latent-consistency" in result.stderr + result.stdout
    assert unet_inputs(output)["timestep_cond"] == [1, 16]  # w's embedding (time_cond_proj_dim), no CFG rows
    assert unet_inputs(output)["sample"][0] == 1
    assert read_manifest(output).pipeline_class == "LatentConsistencyModelPipeline"


@pytest.mark.parametrize("guidance_scale", [8.5, 2.0])  # 8.5: LCM's default w; another w must change the image
def test_lcm_matches_diffusers(folders, lcm_export, guidance_scale):
    from diffusers import LatentConsistencyModelPipeline

    from neuron_export import NeuronLatentConsistencyModelPipeline

    pipe = NeuronLatentConsistencyModelPipeline.from_pretrained(lcm_export[1])
    eager = LatentConsistencyModelPipeline.from_pretrained(folders["lcm"])
    expected = generate(eager, guidance_scale=guidance_scale)
    assert_same_images(generate(pipe, guidance_scale=guidance_scale), expected)
    other_w = generate(eager, guidance_scale=10.5 - guidance_scale)
    assert np.abs(other_w - expected).max() > 10 * MAX_ATOL  # timestep_cond matters: ignoring it would fail above


def test_lcm_on_inductor_matches_diffusers(folders, tmp_path):
    """The one variant compiled with AOTInductor in the default suite (-O1: the fastest compile)."""
    from diffusers import LatentConsistencyModelPipeline

    from neuron_export import NeuronLatentConsistencyModelPipeline

    pipe = NeuronLatentConsistencyModelPipeline.from_pretrained(
        str(folders["lcm"]), export=True, options=ExportOptions(backend="inductor", optlevel=1))
    assert pipe.manifest.validation.passed is True and pipe.manifest.validation.image_check.passed is True
    eager = LatentConsistencyModelPipeline.from_pretrained(folders["lcm"])
    assert_same_images(generate(pipe), generate(eager))


def test_turbo_compiles_one_row_per_image_and_matches_diffusers_at_guidance_0(folders, turbo_export):
    from diffusers import StableDiffusionXLPipeline

    from neuron_export import NeuronStableDiffusionXLPipeline

    _, output = turbo_export
    assert unet_inputs(output)["sample"][0] == 1  # no classifier-free guidance rows
    pipe = NeuronStableDiffusionXLPipeline.from_pretrained(output)
    eager = StableDiffusionXLPipeline.from_pretrained(folders["sdxl-turbo"])
    for steps in (1, 4):
        assert_same_images(generate(pipe, steps, guidance_scale=0.0), generate(eager, steps, guidance_scale=0.0))
    # guidance_scale defaults to 0 on a pipeline compiled without guidance (diffusers' SDXL default is 5)
    assert_same_images(generate(pipe, 2), generate(eager, 2, guidance_scale=0.0))


def test_turbo_refuses_guidance_it_was_not_compiled_for(turbo_export):
    from neuron_export import NeuronStableDiffusionXLImg2ImgPipeline, NeuronStableDiffusionXLPipeline

    for pipeline_class in (NeuronStableDiffusionXLPipeline, NeuronStableDiffusionXLImg2ImgPipeline):
        pipe = pipeline_class.from_pretrained(turbo_export[1])
        with pytest.raises(NeuronExportError, match="guidance_scale 5 needs classifier-free guidance") as error:
            generate(pipe, 1, guidance_scale=5.0, image=np.zeros((64, 64, 3), np.float32))
        assert "\n" not in str(error.value)


def test_refiner_exports_without_text_encoder(refiner_export):
    result, output = refiner_export
    manifest = read_manifest(output)
    assert manifest.components == ["text_encoder_2", "unet", "vae_encoder", "vae_decoder"]
    assert unet_inputs(output)["time_ids"] == [2, 5]  # sizes, crop and the aesthetic score; CFG rows
    assert json.loads((output / "model_index.json").read_text())["requires_aesthetics_score"] is True
    assert manifest.validation.image_check.passed is True  # its own class, img2img, was checked


def test_refiner_refines_the_base_latents_like_diffusers(folders, turbo_export, refiner_export):
    """Base then refiner, two pipelines: the (Turbo) base's latents are the refiner's image."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    from neuron_export import NeuronStableDiffusionXLImg2ImgPipeline, NeuronStableDiffusionXLPipeline

    def base_then_refiner(base, refiner):
        latents = generate(base, 2, output_type="latent", guidance_scale=0.0)
        assert latents.shape == (1, 4, 8, 8)
        return generate(refiner, 4, image=latents, strength=0.5, guidance_scale=5.0)

    compiled = base_then_refiner(NeuronStableDiffusionXLPipeline.from_pretrained(turbo_export[1]),
                                 NeuronStableDiffusionXLImg2ImgPipeline.from_pretrained(refiner_export[1]))
    eager = base_then_refiner(StableDiffusionXLPipeline.from_pretrained(folders["sdxl-turbo"]),
                              StableDiffusionXLImg2ImgPipeline.from_pretrained(folders["sdxl-refiner"]))
    assert_same_images(compiled, eager)


def test_refiner_refuses_the_txt2img_class_and_latents_of_another_size(refiner_export):
    from neuron_export import NeuronStableDiffusionXLImg2ImgPipeline, NeuronStableDiffusionXLPipeline

    with pytest.raises(ArtifactError, match="SDXL refiner.*NeuronStableDiffusionXLImg2ImgPipeline"):
        NeuronStableDiffusionXLPipeline.from_pretrained(refiner_export[1])
    refiner = NeuronStableDiffusionXLImg2ImgPipeline.from_pretrained(refiner_export[1])
    with pytest.raises(NeuronExportError, match="latents passed as image are those of 128x128 images .* compiled for 64x64"):
        generate(refiner, 2, image=torch.zeros(1, 4, 16, 16))  # a base compiled at another size
