"""Stable Diffusion / SDXL: component export with the real CLI, and the compiled pipelines'
images against the eager diffusers pipelines' (tiny random-weight pipelines built locally).

Budget: < 4 minutes on 2 cores (two torchscript pipeline exports, one tiny inductor UNet).
"""

import json
import shutil

import numpy as np
import pytest
import torch
from support import run_cli
from PIL import Image

from neuron_export import ExportOptions, NeuronExportError, load_artifact, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion
from neuron_export.errors import ArtifactError

PROMPT = "a photo of an astronaut riding a horse"
STEPS = 3
# On these tiny random pipelines, dropping guidance or the prompt changes the image by ~0.005-0.02
# on average but >= 0.05 at some pixel: the max bound is what catches that.
MEAN_ATOL = 1e-2
MAX_ATOL = 1e-3


def assert_same_images(compiled, eager):
    compiled, eager = np.asarray(compiled, dtype=np.float32), np.asarray(eager, dtype=np.float32)
    assert compiled.shape == eager.shape
    assert np.abs(compiled - eager).mean() <= MEAN_ATOL
    assert np.abs(compiled - eager).max() <= MAX_ATOL


def generate(pipe, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def init_image() -> Image.Image:
    """A fixed 64x64 RGB picture: colour gradients with a bright square."""
    y, x = np.mgrid[0:64, 0:64]
    pixels = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1)
    pixels[20:40, 20:40] = 255
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion")
    return {
        "sd": build_tiny_stable_diffusion(root / "sd"),
        "other_sd": build_tiny_stable_diffusion(root / "other_sd", seed=1),  # its UNet replaces sd's
        "sdxl": build_tiny_stable_diffusion(root / "sdxl", xl=True),
        "root": root,
    }


@pytest.fixture(scope="module")
def sd_export(folders):
    output = folders["root"] / "sd_compiled"
    result = run_cli("export", "--model", str(folders["sd"]), "--backend", "torchscript",
                     "--unet", str(folders["other_sd"] / "unet"), str(output))
    return result, output


@pytest.fixture(scope="module")
def sdxl_export(folders):
    output = folders["root"] / "sdxl_compiled"
    result = run_cli("export", "--model", str(folders["sdxl"]), "--backend", "torchscript",
                     "--num_images_per_prompt", "2", str(output))
    return result, output


@pytest.fixture(scope="module")
def eager_sd(folders):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(folders["other_sd"] / "unet")
    return quiet(StableDiffusionPipeline.from_pretrained(folders["sd"], unet=unet))


@pytest.mark.parametrize(
    "export, components, unet_batch",
    [("sd_export", ["text_encoder", "unet", "vae_encoder", "vae_decoder"], 1 * 1 * 2),
     ("sdxl_export", ["text_encoder", "text_encoder_2", "unet", "vae_encoder", "vae_decoder"], 1 * 2 * 2)],
)
def test_export_writes_a_validated_diffusers_layout(request, export, components, unet_batch):
    result, output = request.getfixturevalue(export)
    assert result.returncode == 0, result.stderr
    for name in components:
        assert f"Validating {name} model..." in result.stdout
        assert (output / name / "model.pt").is_file() and (output / name / "config.json").is_file()
        assert json.loads((output / name / "validation.json").read_text())["passed"] is True
    assert "-[x]" not in result.stdout
    end_to_end = [line for line in result.stdout.splitlines() if line.startswith("End-to-end image check")]
    assert len(end_to_end) == 1 and end_to_end[0].endswith("passed ✓")  # the whole pipeline's image, one line
    for name in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer_config.json"):
        assert (output / name).is_file()
    manifest = read_manifest(output)
    assert manifest.components == components
    assert manifest.validation.passed is True
    # classifier-free guidance: batch_size x num_images_per_prompt x 2 UNet rows
    assert read_manifest(output / "unet").inputs[0].shape[0] == unet_batch


@pytest.mark.parametrize("guidance_scale", [7.5, 1.0])  # 1.0: half the compiled UNet batch, padded
def test_sd_txt2img_matches_diffusers(sd_export, eager_sd, guidance_scale):
    from neuron_export import NeuronStableDiffusionPipeline

    pipe = quiet(NeuronStableDiffusionPipeline.from_pretrained(sd_export[1]))
    assert_same_images(generate(pipe, guidance_scale=guidance_scale), generate(eager_sd, guidance_scale=guidance_scale))


def test_sd_pipeline_returns_pil_images_and_takes_any_scheduler(sd_export, eager_sd, tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    from neuron_export import NeuronStableDiffusionPipeline

    pipe = quiet(NeuronStableDiffusionPipeline.from_pretrained(sd_export[1]))
    image = pipe(PROMPT, num_inference_steps=2, seed=0).images[0]
    assert isinstance(image, Image.Image) and image.size == (64, 64)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # int64 timesteps
    eager = quiet(type(eager_sd)(**{**eager_sd.components, "scheduler": pipe.scheduler}))
    assert_same_images(generate(pipe, negative_prompt="blurry"), generate(eager, negative_prompt="blurry"))
    pipe.save_pretrained(tmp_path / "saved")
    reloaded = NeuronStableDiffusionPipeline.from_pretrained(tmp_path / "saved")
    assert type(reloaded.scheduler) is DPMSolverMultistepScheduler


@pytest.mark.parametrize("load", ["from_pretrained", "from_pipe"])
def test_sd_img2img_matches_diffusers(sd_export, eager_sd, load):
    from diffusers import StableDiffusionImg2ImgPipeline

    from neuron_export import NeuronStableDiffusionImg2ImgPipeline, NeuronStableDiffusionPipeline

    if load == "from_pretrained":
        pipe = quiet(NeuronStableDiffusionImg2ImgPipeline.from_pretrained(sd_export[1]))
    else:  # over a loaded txt2img pipeline: its compiled models, not a second copy; the VAE encoder added
        txt2img = NeuronStableDiffusionPipeline.from_pretrained(sd_export[1])
        pipe = quiet(NeuronStableDiffusionImg2ImgPipeline.from_pipe(txt2img))
        assert pipe.unet is txt2img.unet and pipe.text_encoder is txt2img.text_encoder
        assert pipe.vae.compiled is txt2img.vae.compiled
        assert txt2img.vae.encoder_model is None and pipe.vae.encoder_model is not None
        with pytest.raises(NeuronExportError, match="takes a compiled Neuron"):
            NeuronStableDiffusionImg2ImgPipeline.from_pipe(eager_sd)
    eager = quiet(StableDiffusionImg2ImgPipeline(**eager_sd.components))
    kwargs = dict(image=init_image(), strength=0.75, num_inference_steps=4)
    assert_same_images(generate(pipe, **kwargs), generate(eager, **kwargs))


@pytest.mark.parametrize("images", [2, 1])  # 1: half the compiled batch, padded
def test_sdxl_txt2img_matches_diffusers(folders, sdxl_export, images):
    from diffusers import StableDiffusionXLPipeline

    from neuron_export import NeuronStableDiffusionXLPipeline

    pipe = quiet(NeuronStableDiffusionXLPipeline.from_pretrained(sdxl_export[1]))
    eager = quiet(StableDiffusionXLPipeline.from_pretrained(folders["sdxl"]))
    assert_same_images(generate(pipe, num_images_per_prompt=images), generate(eager, num_images_per_prompt=images))


def test_sdxl_img2img_matches_diffusers(folders, sdxl_export):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from neuron_export import NeuronStableDiffusionXLImg2ImgPipeline

    pipe = quiet(NeuronStableDiffusionXLImg2ImgPipeline.from_pretrained(sdxl_export[1]))
    eager = quiet(StableDiffusionXLImg2ImgPipeline.from_pretrained(folders["sdxl"]))
    kwargs = dict(image=init_image(), strength=0.75, num_inference_steps=4, negative_prompt="blurry")
    assert_same_images(generate(pipe, **kwargs), generate(eager, **kwargs))


def test_shapes_other_than_compiled_are_refused_clearly(sd_export, sdxl_export):
    from neuron_export import NeuronStableDiffusionImg2ImgPipeline, NeuronStableDiffusionPipeline, NeuronStableDiffusionXLPipeline

    pipe = NeuronStableDiffusionPipeline.from_pretrained(sd_export[1])
    with pytest.raises(NeuronExportError, match="compiled for 64x64"):
        pipe(PROMPT, height=128, num_inference_steps=1)
    with pytest.raises(NeuronExportError, match="batch_size 1"):
        pipe([PROMPT, PROMPT], num_inference_steps=1)
    img2img = NeuronStableDiffusionImg2ImgPipeline.from_pretrained(sd_export[1])
    with pytest.raises(NeuronExportError, match="compiled for 64x64"):
        img2img(PROMPT, image=init_image().resize((128, 128)), num_inference_steps=2)
    sdxl = NeuronStableDiffusionXLPipeline.from_pretrained(sdxl_export[1])
    with pytest.raises(NeuronExportError, match="num_images_per_prompt 2"):
        sdxl(PROMPT, num_images_per_prompt=3, num_inference_steps=1)


def test_pipeline_root_is_not_a_single_model(sd_export, sdxl_export):
    from neuron_export import NeuronStableDiffusionPipeline

    with pytest.raises(ArtifactError, match="NeuronStableDiffusionPipeline"):
        load_artifact(sd_export[1])
    with pytest.raises(ArtifactError, match="NeuronStableDiffusionXLPipeline"):
        NeuronStableDiffusionPipeline.from_pretrained(sdxl_export[1])


def test_a_damaged_model_index_is_one_line_when_the_pipeline_loads(sd_export, tmp_path):
    """No scheduler entry, or a scheduler class this diffusers lacks: one line naming it, not diffusers' TypeError."""
    import json
    import shutil

    from neuron_export import NeuronStableDiffusionPipeline

    for edit, message in ((lambda index: index.pop("scheduler"), "names no scheduler"),
                          (lambda index: index.update(scheduler=["diffusers", "NoSuchScheduler"]), "is a NoSuchScheduler, which diffusers")):
        folder = tmp_path / message.split()[-1]
        shutil.copytree(sd_export[1], folder)
        index = json.loads((folder / "model_index.json").read_text())
        edit(index)
        (folder / "model_index.json").write_text(json.dumps(index))
        with pytest.raises(ArtifactError, match=message) as raised:
            NeuronStableDiffusionPipeline.from_pretrained(folder)
        assert "\n" not in str(raised.value)


def test_unet_adapter_guards_stride0_timestep_on_inductor(folders, tmp_path):
    """The diffusers pipelines pass one timestep expanded to the batch (stride 0), which an
    AOTInductor UNet misreads silently. One tiny UNet compiled with inductor (-O1)."""
    from diffusers.configuration_utils import FrozenDict

    from neuron_export.diffusion.adapters import CompiledUNet
    from neuron_export.export import make_plan
    from neuron_export.export.build import build_component
    from neuron_export.progress import Progress

    plan = make_plan(str(folders["sd"]), ExportOptions(backend="inductor", optlevel=1, disable_validation=True))
    component = next(c for c in plan.components if c.name == "unet").load()
    build_component(component, plan, tmp_path, Progress(None, 3))
    eager = component.module.unet
    unet = CompiledUNet(load_artifact(tmp_path), FrozenDict(eager.config))

    generator = torch.Generator().manual_seed(5)
    sample = torch.randn(2, 4, 8, 8, generator=generator)
    text = torch.randn(2, 77, 32, generator=generator)
    with torch.no_grad():
        expected = eager(sample, torch.full((2,), 601), encoder_hidden_states=text).sample
    for timestep in (torch.tensor(601.0).expand(2), torch.full((2,), 601.0), torch.tensor(601), 601):
        got = unet(sample, timestep, encoder_hidden_states=text, return_dict=False)[0]
        assert (got - expected).abs().max() <= 1e-4, f"timestep {timestep!r}"


def test_bad_inputs_are_one_line_errors_and_write_nothing(folders, tmp_path):
    no_unet = tmp_path / "no_unet"
    shutil.copytree(folders["sd"], no_unet)
    shutil.rmtree(no_unet / "unet")
    cases = [
        (["--model", str(no_unet)], "missing its unet/ folder"),
        (["--model", str(folders["sd"]), "--height", "60"], "--height 60 must be a multiple of 8"),
        (["--model", str(folders["sd"]), "--num_images_per_prompt", "0"], "--num_images_per_prompt must be a positive integer"),
    ]
    for index, (args, message) in enumerate(cases):
        output = tmp_path / f"out{index}"
        result = run_cli("export", *args, "--backend", "torchscript", str(output))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0 and message in result.stderr
        assert not output.exists() and not list(tmp_path.glob(f".out{index}*"))


@pytest.mark.slow
def test_inductor_sd_pipeline_from_pretrained_export_matches_diffusers(folders, tmp_path):
    """The whole tiny SD pipeline compiled with AOTInductor through from_pretrained(export=True)."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    from neuron_export import NeuronStableDiffusionImg2ImgPipeline, NeuronStableDiffusionPipeline

    pipe = quiet(NeuronStableDiffusionPipeline.from_pretrained(
        str(folders["sd"]), export=True, options=ExportOptions(backend="inductor", optlevel=1), height=64, width=64))
    assert pipe.manifest.validation.passed is True
    eager = quiet(StableDiffusionPipeline.from_pretrained(folders["sd"]))
    assert_same_images(generate(pipe), generate(eager))
    pipe.save_pretrained(tmp_path / "saved")
    img2img = quiet(NeuronStableDiffusionImg2ImgPipeline.from_pretrained(tmp_path / "saved"))
    eager_img2img = quiet(StableDiffusionImg2ImgPipeline(**eager.components))
    kwargs = dict(image=init_image(), strength=0.75, num_inference_steps=4)
    assert_same_images(generate(img2img, **kwargs), generate(eager_img2img, **kwargs))
