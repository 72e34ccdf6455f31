"""studio/playground image generation for every pipeline class of a task, from the registry's spec fields
alone: requests (images by role, strength, guidance, extra settings), the scheduler choice, a random seed
that can be repeated, and images equal to diffusers' own pipelines at the same seed.

One tiny SD artifact (demo:tiny-sd, torchscript, 64 px); pipelines the registry does not hold yet
(inpainting, ControlNet, LCM) are described by specs made here. ~1 min on 2 cores.
"""

import dataclasses
import json

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from neuron_export import ExportOptions, export
from neuron_export.demo import default_demo_root, resolve_demo
from neuron_export.diffusion.requests import STRENGTH, artifact_pipeline_spec, example_image
from neuron_export.errors import NeuronExportError
from neuron_export.registry import DIFFUSION_TASKS
from neuron_export.registry.diffusion import DiffusionPipelineSpec
from studio import playground
from studio.playground import diffusion, image_inputs

PROMPT = "a photo of an astronaut riding a horse"
INPAINT = DiffusionPipelineSpec("NeuronStableDiffusionInpaintPipeline", "StableDiffusionInpaintPipeline", uses_vae_encoder=True,
                                images=(("image", "init"), ("mask_image", "mask")), strength=True)
CONTROLNET = DiffusionPipelineSpec("NeuronStableDiffusionControlNetPipeline", "StableDiffusionControlNetPipeline",
                                   images=(("image", "control"),), extra_call=(("controlnet_conditioning_scale", 0.5),))
LCM = DiffusionPipelineSpec("NeuronLatentConsistencyModelPipeline", "LatentConsistencyModelPipeline", guidance_scale=8.5)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("playground-images") / "tiny-sd"
    export("demo:tiny-sd", folder, ExportOptions(backend="torchscript"))
    return playground.load(folder, default_demo_root())


def diffusers_images(class_name: str, seed: int, scheduler: str | None = None, **request):
    """diffusers' own pipeline over the demo's source folder: the reference the playground must equal."""
    pipe = getattr(diffusers, class_name).from_pretrained(resolve_demo("demo:tiny-sd"), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    if scheduler:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(seed), **request).images


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def assert_same_image(image, expected) -> None:
    assert pixels(image).std() > 10, "a flat image proves nothing"  # of 255
    assert np.abs(pixels(image) - pixels(expected)).mean() < 1e-2 * 255


def test_img2img_with_the_example_init_image_equals_diffusers(loaded):
    img2img = DIFFUSION_TASKS["stable-diffusion"].pipelines[1]
    settings = playground.ImageSettings(PROMPT, steps=4, seed=3, pipeline=img2img.class_name, strength=0.6, compare_eager=False)
    generation, stats = playground.generate_images(loaded, settings)
    expected = diffusers_images("StableDiffusionImg2ImgPipeline", 3, image=example_image("init", 64, 64, 3), strength=0.6,
                                num_inference_steps=4, guidance_scale=img2img.guidance_scale)
    assert_same_image(generation.images[0], expected[0])
    assert generation.settings["pipeline"] == img2img.class_name and generation.settings["strength"] == 0.6
    assert list(generation.inputs) == ["image"] and stats.seconds_per_step["compiled"] > 0


def test_scheduler_switch_reaches_both_pipelines(loaded):
    names = diffusion.scheduler_names(loaded)
    assert names[0] == "PNDMScheduler" and "EulerDiscreteScheduler" in names and len(set(names)) == len(names)
    settings = playground.ImageSettings(PROMPT, steps=3, seed=5, scheduler="EulerDiscreteScheduler")
    generation, stats = playground.generate_images(loaded, settings)
    expected = diffusers_images("StableDiffusionPipeline", 5, "EulerDiscreteScheduler", num_inference_steps=3, height=64, width=64)
    assert_same_image(generation.images[0], expected[0])
    assert_same_image(generation.eager_images[0], expected[0])
    assert stats.max_abs_diff <= 2 / 255 and generation.settings["scheduler"] == "EulerDiscreteScheduler"
    default = diffusers_images("StableDiffusionPipeline", 5, num_inference_steps=3, height=64, width=64)
    assert np.abs(pixels(expected[0]) - pixels(default[0])).mean() > 1, "the scheduler must change the image"
    with pytest.raises(NeuronExportError, match="cannot replace this pipeline's scheduler"):
        playground.generate_images(loaded, dataclasses.replace(settings, scheduler="FlowMatchEulerDiscreteScheduler"))


def test_a_random_seed_is_reported_and_repeats_the_image(loaded):
    first, _ = playground.generate_images(loaded, playground.ImageSettings(PROMPT, steps=2, seed=None, compare_eager=False))
    seed = first.settings["seed"]
    again, _ = playground.generate_images(loaded, playground.ImageSettings(PROMPT, steps=2, seed=seed, compare_eager=False))
    expected = diffusers_images("StableDiffusionPipeline", seed, num_inference_steps=2, height=64, width=64)
    assert_same_image(first.images[0], expected[0])
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))


def test_requests_follow_the_spec_fields(loaded):
    settings = playground.ImageSettings(PROMPT, negative_prompt="blurry", steps=5, guidance=3.0, seed=1)
    inpaint = diffusion.build_request(loaded, INPAINT, settings, seed=1)
    assert inpaint["strength"] == STRENGTH and inpaint["guidance_scale"] == 3.0 and inpaint["negative_prompt"] == "blurry"
    assert np.array_equal(np.asarray(inpaint["mask_image"]), np.asarray(example_image("mask", 64, 64, 1)))
    assert (inpaint["height"], inpaint["width"]) == (64, 64)  # diffusers' inpainting takes a size (img2img does not)
    upload = Image.new("RGB", (200, 100), (10, 200, 30))
    control = diffusion.build_request(loaded, CONTROLNET, dataclasses.replace(settings, images={"image": upload}), seed=1)
    assert control["image"].size == (64, 64) and control["image"].getpixel((5, 5)) == (10, 200, 30)
    assert control["controlnet_conditioning_scale"] == 0.5 and "strength" not in control
    lcm = diffusion.build_request(loaded, LCM, dataclasses.replace(settings, guidance=None), seed=1)
    assert lcm["guidance_scale"] == 8.5 and "negative_prompt" not in lcm  # LatentConsistencyModelPipeline takes none
    with pytest.raises(NeuronExportError, match="Enter a prompt"):
        diffusion.build_request(loaded, LCM, dataclasses.replace(settings, prompt="  "), seed=1)
    with pytest.raises(NeuronExportError, match="a stable-diffusion artifact runs NeuronStableDiffusionPipeline"):
        artifact_pipeline_spec(loaded.manifest, "NeuronStableDiffusionXLPipeline")


def test_mask_is_the_union_of_upload_rectangle_and_strokes():
    upload = Image.new("L", (32, 32))
    upload.paste(255, (0, 0, 8, 32))  # the left quarter
    strokes = np.zeros((16, 16, 4), dtype=np.uint8)
    strokes[12:, 12:, 3] = 255  # the bottom-right quarter, at another size
    mask = np.asarray(image_inputs.mask_image(64, 64, upload=upload, rectangle=(0.5, 0.0, 1.0, 0.25), painted=strokes)) > 0
    assert mask[:, :16].all() and mask[:16, 32:].all() and mask[48:, 48:].all()
    assert not mask[20:40, 20:40].any() and mask.mean() == pytest.approx(0.25 + 0.125 + 0.0625, abs=0.01)
    with pytest.raises(NeuronExportError, match="The mask is empty"):
        image_inputs.mask_image(64, 64, painted=np.zeros((8, 8, 4), dtype=np.uint8))
    overlay = np.asarray(image_inputs.mask_overlay(Image.new("RGB", (64, 64), (0, 0, 255)), Image.fromarray(mask.astype(np.uint8) * 255)))
    assert tuple(overlay[0, 0]) != (0, 0, 255) and tuple(overlay[30, 30]) == (0, 0, 255)


def test_a_model_index_without_a_usable_scheduler_is_one_line_and_runs_fall_back_to_the_saved_one(loaded):
    index = loaded.path / "model_index.json"
    saved = index.read_text()
    entries = json.loads(saved)
    try:
        for scheduler, message in ((None, 'names no scheduler'), (["diffusers", "NoSuchScheduler"], "NoSuchScheduler, the scheduler of")):
            index.write_text(json.dumps({**{k: v for k, v in entries.items() if k != "scheduler"},
                                         **({"scheduler": scheduler} if scheduler else {})}))
            loaded.cache.pop("schedulers", None)
            with pytest.raises(NeuronExportError, match=message) as error:
                diffusion.scheduler_names(loaded)
            assert "\n" not in str(error.value)
        generation, stats = playground.generate_images(loaded, playground.ImageSettings(PROMPT, steps=2, seed=4))
    finally:
        index.write_text(saved)
        loaded.cache.pop("schedulers", None)
    expected = diffusers_images("StableDiffusionPipeline", 4, num_inference_steps=2, height=64, width=64)  # PNDM, the saved one
    assert_same_image(generation.images[0], expected[0])
    assert_same_image(generation.eager_images[0], expected[0])
    assert generation.settings["scheduler"] == "PNDMScheduler"
