"""Inpainting (SD, SDXL) and instruct-pix2pix: detection, export and the compiled pipelines' images
against the eager diffusers pipelines' (tiny random-weight pipelines built locally, torchscript).

Budget: ~3 minutes on 2 cores (three tiny torchscript pipeline exports, each with its end-to-end check).
"""

import json
import shutil

import numpy as np
import pytest
from support import run_cli

from neuron_export import ExportOptions, NeuronExportError, export, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion
from neuron_export.diffusion.requests import example_image, example_request
from neuron_export.registry import DIFFUSION_TASKS

# Each variant's compiles take minutes on 2 cores: outside the default suite, run by .ci/run (-m sd_variants).
pytestmark = pytest.mark.sd_variants

INPAINT, XL_INPAINT, PIX2PIX = "stable-diffusion-inpaint", "stable-diffusion-xl-inpaint", "stable-diffusion-instruct-pix2pix"
STEPS = 3
MEAN_ATOL = 1e-2  # the bound on the mean absolute pixel difference
MAX_ATOL = 1e-3  # and at every pixel: a dropped mask or image row moves some pixel by >= 0.05 (asserted below)


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images_of(pipe, task: str, **changes):
    """The task's example request (what the image check, benchmark and playground send), with changes."""
    request = {**example_request(DIFFUSION_TASKS[task].primary, 64, 64, STEPS), **changes}
    return np.asarray(pipe(**request, output_type="np").images, dtype=np.float32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-edit")
    made = {task: build_tiny_stable_diffusion(root / task, **DIFFUSION_TASKS[task].tiny) for task in (INPAINT, XL_INPAINT, PIX2PIX)}
    # An inpainting model saved as a text-to-image pipeline: only its UNet's 9 input channels say what it is.
    relabelled = shutil.copytree(made[INPAINT], root / "inpaint-as-txt2img")
    index = json.loads((relabelled / "model_index.json").read_text())
    (relabelled / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionPipeline"}))
    return {**made, "relabelled": relabelled, "root": root}


@pytest.fixture(scope="module")
def compiled(folders):
    """The three exports: the relabelled inpainting folder with the CLI, SDXL inpainting with export(),
    instruct-pix2pix with from_pretrained(export=True)."""
    from neuron_export import NeuronStableDiffusionInstructPix2PixPipeline

    root = folders["root"]
    cli = run_cli("export", "--model", str(folders["relabelled"]), "--backend", "torchscript", str(root / "inpaint-out"))
    export(folders[XL_INPAINT], root / "xl-inpaint-out", ExportOptions(backend="torchscript"))
    pix2pix = NeuronStableDiffusionInstructPix2PixPipeline.from_pretrained(str(folders[PIX2PIX]), export=True,
                                                                           options=ExportOptions(backend="torchscript"))
    # the pipeline is held: its folder lives as long as it does
    return {"cli": cli, INPAINT: root / "inpaint-out", XL_INPAINT: root / "xl-inpaint-out", PIX2PIX: pix2pix.artifact, "pix2pix": pix2pix}


def test_inpainting_unet_in_a_text_to_image_folder_is_detected_and_exported(compiled):
    result = compiled["cli"]
    assert result.returncode == 0, result.stderr
    assert ("Task auto-detected: stable-diffusion-inpaint (a StableDiffusionPipeline folder whose UNet takes 9 input channels: "
            "run it with NeuronStableDiffusionInpaintPipeline)") in result.stdout
    end_to_end = [line for line in result.stdout.splitlines() if line.startswith("End-to-end image check")]
    assert len(end_to_end) == 1 and end_to_end[0].endswith("passed ✓")
    manifest = read_manifest(compiled[INPAINT])
    assert manifest.task == INPAINT and manifest.components == ["text_encoder", "unet", "vae_encoder", "vae_decoder"]
    # The UNet takes the latents + mask + masked-image latents; the VAE decoder only the 4 latent channels.
    assert read_manifest(compiled[INPAINT] / "unet").inputs[0].shape == [2, 9, 8, 8]
    assert read_manifest(compiled[INPAINT] / "vae_decoder").inputs[0].shape == [1, 4, 8, 8]


@pytest.mark.parametrize("task, unet_sample", [(XL_INPAINT, [2, 9, 8, 8]), (PIX2PIX, [3, 8, 8, 8])])
def test_exports_pass_the_end_to_end_image_check(compiled, task, unet_sample):
    manifest = read_manifest(compiled[task])
    assert manifest.task == task and manifest.validation.passed is True
    assert manifest.validation.image_check.passed and manifest.validation.image_check.diverged_step is None
    # instruct-pix2pix: text, image and unconditional rows per image
    assert read_manifest(compiled[task] / "unet").inputs[0].shape == unet_sample


CASES = [
    (INPAINT, "NeuronStableDiffusionInpaintPipeline", "StableDiffusionInpaintPipeline", {}),
    (INPAINT, "NeuronStableDiffusionInpaintPipeline", "StableDiffusionInpaintPipeline", {"strength": 1.0, "negative_prompt": "blurry"}),
    (XL_INPAINT, "NeuronStableDiffusionXLInpaintPipeline", "StableDiffusionXLInpaintPipeline", {}),
    (PIX2PIX, "NeuronStableDiffusionInstructPix2PixPipeline", "StableDiffusionInstructPix2PixPipeline", {}),
    # no guidance: one UNet row of the three compiled, padded
    (PIX2PIX, "NeuronStableDiffusionInstructPix2PixPipeline", "StableDiffusionInstructPix2PixPipeline", {"guidance_scale": 1.0}),
]


@pytest.mark.parametrize("task, neuron_class, diffusers_class, changes", CASES)
def test_compiled_images_match_diffusers(folders, compiled, task, neuron_class, diffusers_class, changes):
    import diffusers

    import neuron_export

    pipe = quiet(getattr(neuron_export, neuron_class).from_pretrained(compiled[task]))
    eager = quiet(getattr(diffusers, diffusers_class).from_pretrained(folders[task]))
    expected = images_of(eager, task, **changes)
    assert expected.shape == (1, 64, 64, 3) and expected.std() > 0.05  # a picture, not a flat field
    got = images_of(pipe, task, **changes)
    assert np.abs(got - expected).mean() < MEAN_ATOL and np.abs(got - expected).max() <= MAX_ATOL


@pytest.mark.parametrize("task, argument", [(INPAINT, "mask_image"), (PIX2PIX, "image")])
def test_the_compared_images_depend_on_the_edit_inputs(folders, task, argument):
    """What the comparison above would catch: another mask or init image moves pixels far beyond MAX_ATOL."""
    import diffusers

    eager = quiet(getattr(diffusers, DIFFUSION_TASKS[task].primary.diffusers_class).from_pretrained(folders[task]))
    kind = dict(DIFFUSION_TASKS[task].primary.images)[argument]
    other = example_image(kind, 64, 64, seed=7).transpose(0)  # mirrored: another region, another texture
    assert np.abs(images_of(eager, task) - images_of(eager, task, **{argument: other})).max() > 0.05


def test_a_missing_mask_or_image_is_a_one_line_error(compiled):
    from neuron_export import NeuronStableDiffusionInpaintPipeline, NeuronStableDiffusionInstructPix2PixPipeline

    inpaint = NeuronStableDiffusionInpaintPipeline.from_pretrained(compiled[INPAINT])
    with pytest.raises(NeuronExportError, match=r"^NeuronStableDiffusionInpaintPipeline needs mask_image \(the mask: white where"):
        inpaint("a cat", image=example_image("init", 64, 64), num_inference_steps=1)
    pix2pix = NeuronStableDiffusionInstructPix2PixPipeline.from_pretrained(compiled[PIX2PIX])
    with pytest.raises(NeuronExportError, match=r"needs image \(the image to edit\)"):
        pix2pix("make it snowy", num_inference_steps=1)
    # it takes no height / width (its image's size decides), but a size other than the compiled one is refused as such
    with pytest.raises(NeuronExportError, match="compiled for 64x64"):
        pix2pix("make it snowy", image=example_image("init", 128, 128), height=128, width=128, num_inference_steps=1)
    with pytest.raises(NeuronExportError, match="the image is 128x128 pixels and this pipeline was compiled for 64x64"):
        pix2pix("make it snowy", image=example_image("init", 128, 128), height=64, width=64, num_inference_steps=1)


def test_an_inpaint_pipeline_without_an_inpainting_unet_or_an_unsupported_class_is_refused(folders, tmp_path):
    four_channels = shutil.copytree(folders[INPAINT], tmp_path / "four")
    shutil.rmtree(four_channels / "unet")
    build_tiny_stable_diffusion(tmp_path / "sd")
    shutil.copytree(tmp_path / "sd" / "unet", four_channels / "unet")
    upscaler = shutil.copytree(folders[INPAINT], tmp_path / "upscaler")
    index = json.loads((upscaler / "model_index.json").read_text())
    (upscaler / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionUpscalePipeline"}))
    cases = [
        (four_channels, "is a StableDiffusionInpaintPipeline whose UNet takes 4 input channels; stable-diffusion-inpaint needs a UNet with 9"),
        (upscaler, "is a diffusers StableDiffusionUpscalePipeline; supported pipelines: "),
    ]
    for index, (folder, message) in enumerate(cases):
        output = tmp_path / f"out{index}"
        result = run_cli("export", "--model", str(folder), "--backend", "torchscript", str(output))
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
        assert message in result.stderr and not output.exists()
    assert "StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline" in result.stderr


def test_detection_and_shapes_come_from_the_registry(folders):
    from neuron_export.export.diffusion import pipeline_shapes
    from neuron_export.model_info import inspect_model
    from neuron_export.registry import diffusers_task

    assert inspect_model(str(folders["relabelled"])).detected_task == INPAINT
    assert [diffusers_task("StableDiffusionPipeline", n) for n in (4, 9, 8, None)] == ["stable-diffusion", INPAINT, PIX2PIX, "stable-diffusion"]
    assert diffusers_task("StableDiffusionXLPipeline", 9) == XL_INPAINT
    unet = json.loads((folders[PIX2PIX] / "unet" / "config.json").read_text())
    vae = json.loads((folders[PIX2PIX] / "vae" / "config.json").read_text())
    rows = DIFFUSION_TASKS[PIX2PIX].unet_rows_per_image
    shapes = pipeline_shapes(unet, vae, 77, None, ExportOptions(num_images_per_prompt=2), replicas=2, rows_per_image=rows)
    # 2 images x 3 rows over 2 data-parallel copies; the VAE's latents stay 4 channels
    assert (shapes["unet_batch_size"], shapes["unet_in_channels"], shapes["latent_channels"]) == (3, 8, 4)
    odd = pipeline_shapes(unet, vae, 77, None, ExportOptions(), replicas=2, rows_per_image=rows)
    assert odd["unet_batch_size"] == 2  # 3 rows on 2 copies: 2 each, the missing row padded at run time


def test_the_benchmark_sends_each_task_its_example_request(compiled):
    """`neuron-export benchmark` times the artifact's pipeline on what it takes (images, strength, guidance)."""
    from neuron_export.benchmark.pipelines import pipeline_inputs, pipeline_request

    def request(task):
        manifest = read_manifest(compiled[task])
        return pipeline_request(manifest.task, pipeline_inputs(manifest, batch_size=1, steps=2, seed=3))

    inpaint = request(INPAINT)
    assert {"image", "mask_image", "strength", "height", "width"} <= set(inpaint) and "generator" not in inpaint
    pix2pix = request(PIX2PIX)
    assert pix2pix["image_guidance_scale"] == 1.5 and "height" not in pix2pix and "mask_image" not in pix2pix
    again = request(INPAINT)
    assert np.array_equal(np.asarray(again["mask_image"]), np.asarray(inpaint["mask_image"]))
    assert not np.array_equal(np.asarray(inpaint["mask_image"].convert("RGB")), np.asarray(inpaint["image"]))