"""A tiny Stable Diffusion pipeline compiled for two resolutions (--height 64,96 --width 64,96): one
UNet and VAE per resolution, the text encoder once; the image at each resolution equals eager
diffusers'. Budget: < 1 minute on 2 cores (one torchscript export through the real CLI)."""

import numpy as np
import pytest
import torch
from support import run_cli
from test_diffusion import PROMPT, assert_same_images, generate, init_image, quiet

from neuron_export import NeuronStableDiffusionImg2ImgPipeline, NeuronStableDiffusionPipeline, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion
from neuron_export.errors import NeuronExportError

SIZES = (64, 96)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("bucketed-sd")
    source = build_tiny_stable_diffusion(root / "sd")
    output = root / "compiled"
    result = run_cli("export", "--model", str(source), "--backend", "torchscript", "--height", "96,64", "--width", "96,64", str(output))
    assert result.returncode == 0, result.stderr
    return source, output


def test_resolution_dependent_components_have_a_bucket_per_resolution(compiled):
    _, output = compiled
    root = read_manifest(output)
    assert [b.name for b in root.buckets] == ["64x64", "96x96"] and all(b.validation.passed for b in root.buckets)
    assert root.validation.passed is True and root.to_dict()["format_version"] == 2
    assert not read_manifest(output / "text_encoder").is_bucketed  # its input (the prompt) does not depend on the size
    latent = [{"latent_height": s // 8, "latent_width": s // 8} for s in SIZES]
    assert [b.shapes for b in read_manifest(output / "unet").buckets] == latent
    assert [b.shapes for b in read_manifest(output / "vae_decoder").buckets] == latent
    assert [b.shapes for b in read_manifest(output / "vae_encoder").buckets] == [{"height": s, "width": s} for s in SIZES]
    for name in ("unet", "vae_encoder", "vae_decoder"):
        assert all(b.validation.passed for b in read_manifest(output / name).buckets)


@pytest.mark.parametrize("size", SIZES)
def test_image_at_each_resolution_equals_diffusers(compiled, size):
    from diffusers import StableDiffusionPipeline

    source, output = compiled
    pipe = quiet(NeuronStableDiffusionPipeline.from_pretrained(output))
    assert pipe.resolutions == [(64, 64), (96, 96)]
    eager = quiet(StableDiffusionPipeline.from_pretrained(source))
    image = generate(pipe, height=size, width=size)
    assert image.shape == (1, size, size, 3)
    assert pipe.unet.compiled.last_bucket == pipe.vae.compiled.last_bucket == f"{size // 8}x{size // 8}"
    assert np.asarray(image).std() > 0.01  # a real picture, not a flat one
    assert_same_images(image, generate(eager, height=size, width=size))


def test_img2img_at_the_smaller_resolution_equals_diffusers(compiled):
    """The default size is the largest: an image of the other size runs on the VAE encoder's other bucket."""
    from diffusers import StableDiffusionImg2ImgPipeline

    source, output = compiled
    size = SIZES[0]
    pipe = quiet(NeuronStableDiffusionImg2ImgPipeline.from_pretrained(output))
    eager = quiet(StableDiffusionImg2ImgPipeline.from_pretrained(source))
    kwargs = dict(image=init_image().resize((size, size)), strength=0.75, num_inference_steps=3)
    assert_same_images(generate(pipe, **kwargs), generate(eager, **kwargs))


def test_other_resolutions_are_refused_naming_the_compiled_ones(compiled):
    pipe = NeuronStableDiffusionPipeline.from_pretrained(compiled[1])
    with pytest.raises(NeuronExportError, match="compiled for 64x64, 96x96"):
        pipe(PROMPT, height=80, width=80, num_inference_steps=1)
    with pytest.raises(NeuronExportError, match="compiled for 64x64, 96x96"):
        pipe(PROMPT, height=64, width=96, num_inference_steps=1)  # the sizes pair by position
    img2img = NeuronStableDiffusionImg2ImgPipeline.from_pretrained(compiled[1])
    with pytest.raises(NeuronExportError, match="compiled for 64x64, 96x96"):
        img2img(PROMPT, image=init_image().resize((80, 80)), num_inference_steps=2, generator=torch.Generator().manual_seed(0))
