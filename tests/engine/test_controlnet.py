"""ControlNet (one or several, optimum-neuron's --controlnet_ids): the compiled pipeline's images against
diffusers' StableDiffusionControlNetPipeline (MultiControlNetModel for several) with the same seed, on the
tiny pipeline and tiny ControlNets drawn with a fixed seed; the control path is live (another control
image or scale gives another image); the one-line errors; the compile cache key.

Budget: 3.5 minutes measured on 2 busy cores, load average ~9 (a CLI export of demo:tiny-sd-controlnet and
its benchmark, a Python export with two ControlNets, one of SDXL with a ControlNet, two CLI error runs).
"""

import json

import numpy as np
import pytest
import torch
from support import run_cli

from neuron_export import ExportOptions, NeuronExportError, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion, make_tiny_sd_pipeline, resolve_demo
from neuron_export.demo.tiny_controlnet import build_tiny_controlnet, make_tiny_controlnet
from neuron_export.diffusion.requests import example_image
from neuron_export.export import make_plan
from neuron_export.export.cache import CompileCache

# Each variant's compiles take minutes on 2 cores: outside the default suite, run by .ci/run (-m sd_variants).
pytestmark = pytest.mark.sd_variants

PROMPT = "a photo of an astronaut riding a horse"
MEAN_ATOL = 1e-2  # compiled vs eager image, same seed (as tests/engine/test_diffusion.py)
CONTROL_EFFECT = 0.05  # another control image moves the tiny pipelines' image by more than this somewhere


def control(variant=0):
    return example_image("control", 64, 64, variant=variant)


def generate(pipe, image, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, image=image, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np",
                **kwargs).images[0]


def assert_control_matters(image, other):
    """Further apart than compiled and eager may be: a compiled pipeline that lost the control path fails."""
    assert np.abs(image - other).mean() > MEAN_ATOL and np.abs(image - other).max() > CONTROL_EFFECT


def assert_same_picture(compiled, eager):
    assert eager.std() > 0.05 and eager.shape == (64, 64, 3)  # a picture, not a flat field
    assert np.abs(compiled - eager).mean() < MEAN_ATOL


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("controlnet")
    return {
        "sd": build_tiny_stable_diffusion(root / "sd"),
        "edges": build_tiny_controlnet(root / "edges", seed=21),
        "depth": build_tiny_controlnet(root / "depth", seed=22),
        "root": root,
    }


def test_tiny_controlnet_residuals_are_of_order_one_and_follow_the_control_image():
    """from_unet's zero convolutions would make the ControlNet a no-op that no comparison could catch."""
    unet = make_tiny_sd_pipeline().unet
    controlnet = make_tiny_controlnet(unet, seed=21)
    sample, text = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.randn(2, 77, 32)

    def cond(variant):
        pixels = torch.from_numpy(np.asarray(control(variant), dtype=np.float32) / 255).permute(2, 0, 1)
        return pixels[None].repeat(2, 1, 1, 1)

    with torch.no_grad():
        down, mid = controlnet(sample, 500, text, cond(0), return_dict=False)
        other_down, other_mid = controlnet(sample, 500, text, cond(1), return_dict=False)
        plain = unet(sample, 500, text).sample
        steered = unet(sample, 500, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    assert len(down) == 6 and min(float(d.abs().mean()) for d in [*down, mid]) > 0.1
    assert float((mid - other_mid).abs().mean()) > 0.1 and all(float((a - b).abs().mean()) > 0.1 for a, b in zip(down, other_down))
    assert float((steered - plain).abs().mean()) > 0.05


@pytest.fixture(scope="module")
def demo_export(folders):
    output = folders["root"] / "demo_compiled"
    result = run_cli("export", "--model", "demo:tiny-sd-controlnet", "--backend", "torchscript", str(output))
    return result, output


def test_cli_exports_the_controlnet_demo_and_its_images_are_diffusers_images(demo_export):
    from diffusers import StableDiffusionControlNetPipeline

    from neuron_export import NeuronStableDiffusionControlNetPipeline

    result, output = demo_export
    assert result.returncode == 0, result.stderr
    assert "Task auto-detected: stable-diffusion-controlnet" in result.stderr + result.stdout
    end_to_end = [line for line in result.stdout.splitlines() if line.startswith("End-to-end image check")]
    assert len(end_to_end) == 1 and end_to_end[0].endswith("passed ✓")
    manifest = read_manifest(output)
    assert manifest.components == ["text_encoder", "unet", "controlnet", "vae_decoder"] and manifest.validation.passed
    unet_inputs = [i.name for i in read_manifest(output / "unet").inputs]
    assert unet_inputs[-1] == "mid_block_additional_residual" and sum(n.startswith("down_block_additional_residuals_") for n in unet_inputs) == 6

    compiled = NeuronStableDiffusionControlNetPipeline.from_pretrained(output)
    eager = StableDiffusionControlNetPipeline.from_pretrained(resolve_demo("demo:tiny-sd-controlnet"))
    image = generate(eager, control(0))
    assert_control_matters(image, generate(eager, control(0), controlnet_conditioning_scale=0.0))  # ControlNet off
    assert_same_picture(generate(compiled, control(0)), image)
    # the control path is live: another control image, or another scale (a traced input), another image
    other = generate(compiled, control(1))
    assert_control_matters(other, image)
    assert_same_picture(other, generate(eager, control(1)))
    half = generate(compiled, control(0), controlnet_conditioning_scale=0.5)
    assert_control_matters(half, image)
    assert_same_picture(half, generate(eager, control(0), controlnet_conditioning_scale=0.5))


def test_two_controlnet_ids_on_a_base_pipeline_match_diffusers_multicontrolnet(folders, monkeypatch, tmp_path):
    """Python API with optimum-neuron's keyword (comma-separated ids); the end-to-end check runs at export."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from neuron_export import NeuronStableDiffusionControlNetPipeline

    monkeypatch.setenv("NEURON_EXPORT_CACHE", str(tmp_path / "cache"))
    pipe = NeuronStableDiffusionControlNetPipeline.from_pretrained(
        str(folders["sd"]), export=True, options=ExportOptions(backend="torchscript"),
        controlnet_ids=f"{folders['edges']},{folders['depth']}")
    assert pipe.manifest.validation.passed is True and pipe.manifest.validation.image_check.passed is True
    assert pipe.manifest.components == ["text_encoder", "unet", "controlnet", "controlnet_1", "vae_decoder"]
    model_index = json.loads((pipe.artifact / "model_index.json").read_text())
    assert (model_index["_class_name"], model_index["controlnet"]) == ("StableDiffusionControlNetPipeline", ["diffusers", "MultiControlNetModel"])

    nets = [ControlNetModel.from_pretrained(folders[name]) for name in ("edges", "depth")]
    eager = StableDiffusionControlNetPipeline.from_pretrained(folders["sd"], controlnet=nets)
    settings = dict(controlnet_conditioning_scale=[1.0, 0.5])
    image = generate(eager, [control(0), control(1)], **settings)
    assert_same_picture(generate(pipe, [control(0), control(1)], **settings), image)
    swapped = generate(pipe, [control(1), control(0)], **settings)  # each ControlNet takes its own image
    assert np.abs(swapped - image).max() > CONTROL_EFFECT
    assert_same_picture(swapped, generate(eager, [control(1), control(0)], **settings))


@pytest.mark.parametrize("bad, message", [
    ("unet", "holds a UNet2DConditionModel, not a diffusers ControlNetModel"),
    ("missing", "no such folder"),
])
def test_cli_refuses_a_controlnet_id_that_is_not_a_controlnet_in_one_line(folders, tmp_path, bad, message):
    folder = {"unet": folders["sd"] / "unet", "missing": tmp_path / "nothing"}[bad]
    result = run_cli("export", "--model", str(folders["sd"]), "--backend", "torchscript", str(tmp_path / "out"),
                     "--controlnet_ids", str(folder))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_controlnet_ids_are_refused_where_they_do_not_apply(folders):
    controlnet_pipeline = resolve_demo("demo:tiny-sd-controlnet")
    with pytest.raises(NeuronExportError, match="with its own ControlNet"):
        make_plan(controlnet_pipeline, ExportOptions(backend="torchscript", controlnet_ids=[str(folders["edges"])]))
    with pytest.raises(NeuronExportError, match="not a diffusion pipeline; ControlNets"):
        make_plan("demo:tiny-bert", ExportOptions(backend="torchscript", controlnet_ids=[str(folders["edges"])]))
    other_unet = folders["root"] / "xl_controlnet"
    make_tiny_controlnet(make_tiny_sd_pipeline(xl=True).unet).save_pretrained(other_unet)
    with pytest.raises(NeuronExportError, match="made for another UNet"):
        make_plan(folders["sd"], ExportOptions(backend="torchscript", controlnet_ids=[str(other_unet)]))


def test_a_global_pool_controlnet_and_a_text_model_without_guidance_are_refused_before_any_compile(folders, tmp_path):
    """A shuffle (global-pool) ControlNet makes diffusers run guess mode, which is not compiled: refused up front,
    not after a full compile; --no-classifier-free-guidance on a text model is an error, not ignored."""
    shuffle = tmp_path / "shuffle"
    make_tiny_controlnet(make_tiny_sd_pipeline().unet).save_pretrained(shuffle)
    (shuffle / "config.json").write_text(json.dumps({**json.loads((shuffle / "config.json").read_text()), "global_pool_conditions": True}))
    with pytest.raises(NeuronExportError, match="global-pool ControlNet"):
        make_plan(folders["sd"], ExportOptions(backend="torchscript", controlnet_ids=[str(shuffle)]))
    result = run_cli("export", "--model", "demo:tiny-bert", "--backend", "torchscript", str(tmp_path / "out"), "--no-classifier-free-guidance")
    assert result.returncode == 2 and "applies to Stable Diffusion only" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_controlnet_pipeline_over_an_lcm_unet_keeps_the_unet_with_timestep_cond_and_residuals(folders, tmp_path):
    """diffusers' LCM + ControlNet recipe: a StableDiffusionControlNetPipeline whose UNet is a latent consistency
    one. The plan (configs only) keeps the UNet, sized for its timestep_cond and one row per image."""
    import shutil

    folder = tmp_path / "lcm-controlnet"
    shutil.copytree(resolve_demo("demo:tiny-sd-controlnet"), folder)
    unet_config = folder / "unet" / "config.json"
    unet_config.write_text(json.dumps({**json.loads(unet_config.read_text()), "time_cond_proj_dim": 16}))
    plan = make_plan(folder, ExportOptions(backend="torchscript"))
    assert [c.name for c in plan.components] == ["text_encoder", "unet", "controlnet", "vae_decoder"]
    assert plan.shapes["time_cond_proj_dim"] == 16 and plan.shapes["unet_batch_size"] == 1  # one row: w is embedded


def test_controlnet_ids_are_taken_space_or_comma_separated(folders):
    a, b = str(folders["edges"]), str(folders["depth"])
    assert ExportOptions(controlnet_ids=f"{a},{b}").controlnet_ids == ExportOptions(controlnet_ids=[a, b]).controlnet_ids == (a, b)
    with pytest.raises(NeuronExportError, match="empty name"):
        ExportOptions(controlnet_ids=f"{a},")
    from neuron_export.cli import build_parser, export_argv

    parsed = build_parser().parse_args(["export", "-m", "x", "out", "--controlnet_ids", a, b])
    assert tuple(parsed.controlnet_ids) == (a, b)
    # the dashboard's jobs run the CLI with export_argv: the ids survive the round trip
    assert tuple(build_parser().parse_args(export_argv("x", "out", ExportOptions(controlnet_ids=[a, b]))).controlnet_ids) == (a, b)


def test_cache_key_follows_the_controlnets_weights(folders, tmp_path):
    def key():
        plan = make_plan(folders["sd"], ExportOptions(backend="torchscript", controlnet_ids=[str(net)]))
        return CompileCache(tmp_path).key(plan.cache_folders, plan.source.library, plan.task, plan.shapes, plan.backend, plan.options)

    net = build_tiny_controlnet(tmp_path / "net", seed=5)
    first = key()
    assert key() == first
    build_tiny_controlnet(tmp_path / "net", seed=6)  # same files, other weights
    assert key() != first


def test_a_unet_compiled_without_controlnet_refuses_residuals_rather_than_ignoring_them():
    from neuron_export.diffusion.controlnet import residual_inputs

    residuals = [torch.zeros(1)] * 6
    with pytest.raises(NeuronExportError, match="takes no ControlNet residuals"):
        residual_inputs(["sample", "timestep", "encoder_hidden_states"], residuals, torch.zeros(1))
    with pytest.raises(NeuronExportError, match="takes 6 ControlNet down-block residuals"):
        residual_inputs([f"down_block_additional_residuals_{i}" for i in range(6)] + ["mid_block_additional_residual"], None, None)


def test_benchmark_times_the_controlnet_pipeline_per_image_with_its_control_image(demo_export):
    from neuron_export import benchmark as bench

    _, output = demo_export
    report = bench.benchmark(output, bench.BenchmarkOptions(iterations=2, warmup=1, rounds=1, steps=2, save=False))
    (run,) = report["runs"]
    assert all(run["sides"][name]["status"] == "ok" for name in ("compiled", "eager"))
    # same request (the example control image) on both sides: the compiled pipeline's images are diffusers'
    assert run["same_inputs"] and run["sides"]["compiled"]["max_abs_diff"]["images"] <= 1e-3


def test_sdxl_controlnet_from_controlnet_ids_matches_diffusers(monkeypatch, tmp_path):
    """SDXL: the ControlNet takes the added conditions (text_embeds, time_ids) too."""
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    from neuron_export import NeuronStableDiffusionXLControlNetPipeline

    monkeypatch.setenv("NEURON_EXPORT_CACHE", str(tmp_path / "cache"))
    sdxl, net = build_tiny_stable_diffusion(tmp_path / "sdxl", xl=True), build_tiny_controlnet(tmp_path / "net", seed=23, xl=True)
    pipe = NeuronStableDiffusionXLControlNetPipeline.from_pretrained(
        str(sdxl), export=True, options=ExportOptions(backend="torchscript"), controlnet_ids=[str(net)])
    assert pipe.manifest.task == "stable-diffusion-xl-controlnet" and pipe.manifest.validation.image_check.passed is True
    assert [i.name for i in read_manifest(pipe.artifact / "controlnet").inputs][-2:] == ["text_embeds", "time_ids"]
    eager = StableDiffusionXLControlNetPipeline.from_pretrained(sdxl, controlnet=ControlNetModel.from_pretrained(net))
    image = generate(eager, control(0))
    assert_same_picture(generate(pipe, control(0)), image)
    assert np.abs(generate(pipe, control(1)) - image).max() > CONTROL_EFFECT
