"""The benchmark of a Stable Diffusion artifact for any pipeline class of its task (--pipeline): the request is
the class's example request (init image, mask, control image from the registry's spec), the compiled images
match eager diffusers' of the same class, and one call of each side is broken down per component and step.

One tiny SD artifact (demo:tiny-sd, torchscript, 64 px); ~1 min on 2 cores.
"""

from types import SimpleNamespace

import diffusers
import numpy as np
import pytest

from neuron_export import ExportOptions, export
from neuron_export import benchmark as bench
from neuron_export.benchmark import pipelines
from neuron_export.diffusion.requests import example_image
from neuron_export.errors import NeuronExportError
from neuron_export.registry import DIFFUSION_TASKS
from neuron_export.registry.diffusion import DiffusionPipelineSpec

IMG2IMG = DIFFUSION_TASKS["stable-diffusion"].pipelines[1]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-pipelines") / "tiny-sd"
    export("demo:tiny-sd", folder, ExportOptions(backend="torchscript"))
    return folder


def img2img_timesteps(artifact, steps: int, strength: float):
    """The timesteps diffusers' img2img runs: the last `strength` of the scheduler's (PNDM repeats one)."""
    scheduler = diffusers.PNDMScheduler.from_pretrained(artifact, subfolder="scheduler")
    scheduler.set_timesteps(steps)
    return diffusers.StableDiffusionImg2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=scheduler), steps, strength, "cpu")[0]


def test_img2img_is_timed_per_image_component_and_step_against_diffusers(artifact):
    options = bench.BenchmarkOptions(iterations=2, warmup=0, rounds=1, steps=4, save=False, onnx=False, pipeline=IMG2IMG.class_name)
    report = bench.benchmark(artifact, options)
    (run,) = report["runs"]
    assert run["same_inputs"]
    assert run["sides"]["compiled"]["max_abs_diff"]["images"] <= 1e-3  # the same class, image and seed as diffusers'
    denoised = len(img2img_timesteps(artifact, 4, 0.75))
    for name, class_name in (("compiled", IMG2IMG.class_name), ("eager", IMG2IMG.diffusers_class)):
        found = run["sides"][name]["pipeline"]
        assert found["class_name"] == class_name and found["steps"] == denoised
        assert found["component_calls"] == {"text_encoder": 2, "unet": denoised, "vae_encoder": 1, "vae_decoder": 1}
        assert 0 < sum(found["component_s"].values()) <= found["image_s"] and 0 < found["step_s"] < found["image_s"]
    said = [line for line in bench.format_report(report) if f"{IMG2IMG.class_name}, one call" in line]
    assert len(said) == 1 and "unet " in said[0] and f"per denoising step ({denoised} steps)" in said[0]


def test_an_unknown_pipeline_class_is_a_one_line_error_before_any_side_starts(artifact):
    with pytest.raises(NeuronExportError, match="a stable-diffusion artifact runs NeuronStableDiffusionPipeline, ") as raised:
        bench.benchmark(artifact, bench.BenchmarkOptions(pipeline="NeuronStableDiffusionXLPipeline", save=False))
    assert "\n" not in str(raised.value)


def test_requests_take_the_example_images_of_the_spec(monkeypatch):
    inpaint = DiffusionPipelineSpec("NeuronStableDiffusionInpaintPipeline", "StableDiffusionInpaintPipeline", uses_vae_encoder=True,
                                    images=(("image", "init"), ("mask_image", "mask")), strength=True, guidance_scale=5.0)
    task = DIFFUSION_TASKS["stable-diffusion"]
    monkeypatch.setitem(DIFFUSION_TASKS, "stable-diffusion", type(task)(task.name, task.components, (*task.pipelines, inpaint)))
    manifest = type("M", (), {"task": "stable-diffusion", "shapes": {"num_images_per_prompt": 1, "height": 32, "width": 48},
                              "pipeline_class": "StableDiffusionPipeline", "options": ExportOptions(), "components": ["unet"]})
    arguments = pipelines.pipeline_inputs(manifest, batch_size=2, steps=3, seed=5, pipeline="StableDiffusionInpaintPipeline")
    assert arguments["pipeline"] == inpaint.class_name
    request = pipelines.pipeline_request("stable-diffusion", arguments)
    assert np.array_equal(np.asarray(request["mask_image"]), np.asarray(example_image("mask", 32, 48, 5)))
    assert np.array_equal(np.asarray(request["image"]), np.asarray(example_image("init", 32, 48, 5)))
    assert request["prompt"] == arguments["prompt"] and len(request["prompt"]) == 2 and request["guidance_scale"] == 5.0
    assert request["strength"] == 0.75 and request["num_inference_steps"] == 3 and "generator" not in request
