"""The end-to-end image check of Stable Diffusion exports, and that no component is ever dropped.

The check passes on a faithful torchscript export, whose image equals diffusers' own pipeline's; it
fails an export whose UNet is off by just under its atol (every component passes its own check) and
names the step where the latents diverged. Tiny random-weight pipeline (64 px), ~1 min on 2 cores.
"""

import json
import shutil
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from neuron_export import ExportOptions, NeuronExportError, export, read_manifest
from neuron_export.artifact import Manifest
from neuron_export.errors import ArtifactError
from neuron_export.demo import build_tiny_stable_diffusion
from neuron_export.diffusion import image_check
from neuron_export.export import build

COMPONENTS = ["text_encoder", "unet", "vae_encoder", "vae_decoder"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("image-check") / "sd")


@pytest.fixture(scope="module")
def faithful(source):
    return export(source, source.parent / "faithful", ExportOptions(backend="torchscript", use_cache=False))


def diffusers_run(folder, scheduler_steps: list):
    """diffusers' own StableDiffusionPipeline on the check's request: its first image (H x W x 3, [0, 1])."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def count(pipeline, step, timestep, tensors):
        scheduler_steps.append(step)
        return tensors

    return pipe(image_check.PROMPT, num_inference_steps=image_check.STEPS, guidance_scale=7.5,
                generator=torch.Generator().manual_seed(image_check.SEED), output_type="np",
                callback_on_step_end=count).images[0]


def test_faithful_export_passes_and_its_image_is_diffusers_image(source, faithful):
    check = faithful.manifest.validation.image_check
    assert faithful.validation_passed is True and check.passed and check.diverged_step is None
    steps = []
    eager = diffusers_run(source, steps)
    assert 0.05 < eager.std() and eager.shape == (64, 64, 3)  # a picture, not a flat field
    stored = {name: np.asarray(Image.open(faithful.artifact / check.images / f"{name}.png"), dtype=np.float32) / 255
              for name in ("compiled", "eager")}
    assert np.abs(stored["eager"] - eager).max() <= 0.5 / 255  # the check's eager side is diffusers' image
    assert np.abs(stored["compiled"] - eager).mean() < 1e-2  # the compiled pipeline's image, against diffusers'
    from neuron_export import NeuronStableDiffusionPipeline

    compiled = NeuronStableDiffusionPipeline.from_pretrained(faithful.artifact)
    compiled.set_progress_bar_config(disable=True)
    image = compiled(image_check.PROMPT, num_inference_steps=image_check.STEPS, guidance_scale=7.5,
                     seed=image_check.SEED, output_type="np").images[0]
    assert np.abs(image - eager).mean() < 1e-2
    assert len(check.latent_drift) == len(steps)  # one drift per scheduler step (PNDM adds a warm-up step)
    assert check.psnr >= check.min_psnr and check.max_pixel_diff <= check.max_pixel_diff_limit
    assert check.precision == "fp32" and check.scheduler == "PNDMScheduler"
    recorded = json.loads((faithful.artifact / "manifest.json").read_text())
    assert Manifest.from_dict(recorded).validation.image_check == check  # recorded in the typed manifest
    del recorded["validation"]["image_check"]  # a manifest written before the check still loads
    assert Manifest.from_dict(recorded).validation.image_check is None


class BiasedUNet(torch.nn.Module):
    """The compiled UNet off by `bias` (just under its atol): lower on classifier-free guidance's
    unconditional rows, higher on its text rows, so guidance multiplies the error by 2 x 7.5 - 1."""

    def __init__(self, unet: torch.nn.Module, bias: float):
        super().__init__()
        self.unet, self.bias = unet, bias

    def forward(self, *inputs):
        (noise,) = self.unet(*inputs)
        half = noise.shape[0] // 2
        sign = torch.cat([-torch.ones(half), torch.ones(noise.shape[0] - half)]).view(-1, 1, 1, 1)
        return (noise + sign * self.bias,)


@pytest.fixture
def biased_unet(monkeypatch):
    """Every export in the test compiles a UNet that is off by 0.9 x its atol (the eager reference is not)."""
    prepare = build.prepare_module

    def biased(component, plan):
        module = prepare(component, plan)
        return BiasedUNet(module, 0.9 * component.atol) if component.name == "unet" else module

    monkeypatch.setattr(build, "prepare_module", biased)


def test_error_within_atol_compounding_over_steps_fails_the_export(source, tmp_path, biased_unet, capsys, caplog):
    from neuron_export import cli

    caplog.set_level("INFO", logger="neuron_export")
    output = tmp_path / "biased"
    handler = signal.getsignal(signal.SIGTERM)
    try:
        code = cli.main(["export", "--model", str(source), "--backend", "torchscript", "--no-cache", str(output)])
    finally:
        signal.signal(signal.SIGTERM, handler)
    err = capsys.readouterr().err
    manifest = read_manifest(output)  # kept, like a failed component's artifact, with its reports
    assert code == 1 and manifest.validation.passed is False
    assert manifest.validation.components == dict.fromkeys(COMPONENTS, True)
    unet = json.loads((output / "unet" / "validation.json").read_text())["outputs"][0]
    assert 0.5 * unet["atol"] < unet["max_abs_diff"] < unet["atol"]  # the perturbation is in, within atol
    check = manifest.validation.image_check
    assert not check.passed and check.diverged_step is not None
    assert check.latent_drift[check.diverged_step - 1] > check.max_latent_drift
    assert all(drift <= check.max_latent_drift for drift in check.latent_drift[: check.diverged_step - 1])
    assert f"diverged at step {check.diverged_step} of {len(check.latent_drift)}" in err
    assert "validation failed for the end-to-end image check" in err
    line = [message for message in caplog.messages if message.startswith("End-to-end image check")]
    assert len(line) == 1 and "FAILED" in line[0] and f"diverged at step {check.diverged_step}" in line[0], line


def test_thresholds_follow_auto_cast(source):
    """A 2-level pixel error fails fp32's thresholds (at most one 8-bit level) and passes bf16's."""
    rng = np.random.default_rng(0)
    eager = rng.random((8, 8, 3), dtype=np.float32)
    compiled = eager.copy()
    compiled[3, 4, 1] += 2 / 255
    strict = image_check.compare(compiled, eager, [0.0], "fp32")
    loose = image_check.compare(compiled, eager, [0.0], "bf16")
    assert not strict.passed and loose.passed and strict.diverged_step is None
    assert strict.max_pixel_diff == pytest.approx(2 / 255)
    mse = float(np.mean((compiled.astype(np.float64) - eager) ** 2))
    assert strict.psnr == pytest.approx(-10 * np.log10(mse))
    assert "decoded images differ" in image_check.divergence(strict)


# ---- no component silently dropped ---------------------------------------------------------------


def test_a_component_that_fails_to_compile_fails_the_export_naming_it(source, tmp_path, monkeypatch):
    from neuron_export.backends.torchscript import TorchScriptBackend

    trace = TorchScriptBackend.trace

    def failing(self, module, example, options):
        if type(module).__name__ == "UNetModule":
            raise RuntimeError("unsupported operator in the UNet")
        return trace(self, module, example, options)

    monkeypatch.setattr(TorchScriptBackend, "trace", failing)
    with pytest.raises(NeuronExportError, match="could not compile unet: unsupported operator"):
        export(source, tmp_path / "out", ExportOptions(backend="torchscript", use_cache=False))
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []  # nothing published, nothing left


@pytest.mark.parametrize("damage, named", [
    (lambda folder: _drop_index_entry(folder, "vae"), "model_index.json has no vae"),
    (lambda folder: shutil.rmtree(folder / "text_encoder"), "missing its text_encoder/ folder"),
])
def test_a_pipeline_folder_missing_a_component_is_refused_naming_it(source, tmp_path, damage, named):
    folder = shutil.copytree(source, tmp_path / "sd")
    damage(folder)
    with pytest.raises(NeuronExportError, match=named):
        export(folder, tmp_path / "out", ExportOptions(backend="torchscript", use_cache=False))
    assert not (tmp_path / "out").exists()


def _drop_index_entry(folder, name):
    index = json.loads((folder / "model_index.json").read_text())
    del index[name]
    (folder / "model_index.json").write_text(json.dumps(index))


def test_an_artifact_missing_a_compiled_component_does_not_load(faithful, tmp_path):
    from neuron_export import NeuronStableDiffusionPipeline

    artifact = shutil.copytree(faithful.artifact, tmp_path / "artifact")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["components"].remove("vae_decoder")
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="lacks the compiled vae_decoder"):
        NeuronStableDiffusionPipeline.from_pretrained(artifact)
