"""LoRA fused at compile time (--lora_model_ids ...): the compiled pipeline against diffusers' own
load_lora_weights + (set_adapters +) fuse_lora at the same scales, on a tiny SD pipeline and tiny LoRAs
drawn with a fixed seed; the one-line errors; the compile cache key.

Budget: ~1 minute on 2 cores (two torchscript exports in-process, two CLI error runs).
"""

import json

import numpy as np
import pytest
import torch
from support import run_cli

from neuron_export import ExportOptions, NeuronExportError, export, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion, make_tiny_sd_pipeline
from neuron_export.demo.lora import build_tiny_lora
from neuron_export.export import make_plan
from neuron_export.export.cache import CompileCache

PROMPT = "a photo of an astronaut riding a horse"
MEAN_ATOL, MAX_ATOL = 1e-2, 1e-3  # as tests/engine/test_diffusion.py: compiled vs eager image, same seed
LORA_EFFECT = 0.05  # the tiny LoRAs move some pixel by more than this (checked), so a LoRA left out is caught


def generate(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images


def eager_fused(folder, loras, scales, adapter_names=None):
    """diffusers' own LoRA path, not ours: load each, mix (several), fuse."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    for index, lora in enumerate(loras):
        pipe.load_lora_weights(str(lora), adapter_name=adapter_names[index] if adapter_names else None)
    if adapter_names:
        pipe.set_adapters(adapter_names, adapter_weights=scales)
        pipe.fuse_lora()
    else:
        pipe.fuse_lora(lora_scale=scales[0])
    return pipe


def assert_same_images(compiled, eager, base):
    assert np.abs(eager - base).max() >= LORA_EFFECT  # the LoRA matters: leaving it out would fail below
    assert np.abs(compiled - eager).mean() <= MEAN_ATOL
    assert np.abs(compiled - eager).max() <= MAX_ATOL


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    return {
        "sd": build_tiny_stable_diffusion(root / "sd"),
        "style": build_tiny_lora(root / "style", seed=1),  # UNet and text encoder
        "detail": build_tiny_lora(root / "detail", seed=2, text_encoders=False),  # UNet only
        "sdxl_lora": build_tiny_lora(root / "sdxl_lora", xl=True, seed=3),
        "root": root,
    }


@pytest.fixture(scope="module")
def base_image(folders):
    from diffusers import StableDiffusionPipeline

    return generate(StableDiffusionPipeline.from_pretrained(folders["sd"]))


def test_tiny_lora_changes_the_unet_and_text_encoder(folders):
    from diffusers import StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(folders["sd"])
    fused = eager_fused(folders["sd"], [folders["style"]], [0.7])
    sample, text, ids = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32), torch.tensor([[0, 3, 5, 1]])
    with torch.no_grad():
        assert (fused.unet(sample, 500, text).sample - base.unet(sample, 500, text).sample).abs().max() >= 0.1
        assert (fused.text_encoder(ids)[0] - base.text_encoder(ids)[0]).abs().max() >= 0.1


def test_fused_export_from_pretrained_matches_diffusers_fuse_lora(folders, base_image, monkeypatch, tmp_path):
    """Python API (optimum-neuron's kwargs); one LoRA at scale 0.7 on the UNet and the text encoder."""
    from neuron_export import NeuronStableDiffusionPipeline
    from neuron_export.reference import reference_pipeline

    monkeypatch.setenv("NEURON_EXPORT_CACHE", str(tmp_path / "cache"))
    pipe = NeuronStableDiffusionPipeline.from_pretrained(
        str(folders["sd"]), export=True, options=ExportOptions(backend="torchscript"), lora_model_ids=str(folders["style"]),
        lora_scales=0.7)
    eager = generate(eager_fused(folders["sd"], [folders["style"]], [0.7]))
    assert_same_images(generate(pipe), eager, base_image)
    assert pipe.manifest.validation.passed is True
    (record,) = pipe.manifest.loras
    assert (record["model_id"], record["weight_name"], record["scale"]) == (str(folders["style"]), "pytorch_lora_weights.safetensors", 0.7)
    assert len(record["sha256"]) == 64
    # the eager reference of the artifact (validation, benchmark, playground) is the fused pipeline too
    assert np.abs(generate(reference_pipeline(pipe.manifest)) - eager).max() <= 1e-6


def test_two_adapters_with_scales_match_diffusers_set_adapters(folders, base_image, monkeypatch, tmp_path):
    monkeypatch.setenv("NEURON_EXPORT_CACHE", str(tmp_path / "cache"))
    # validation off: the fused components are validated in the test above; here the images are compared
    options = ExportOptions(backend="torchscript", disable_validation=True, lora_model_ids=[str(folders["style"]), str(folders["detail"])],
                            lora_adapter_names=["style", "detail"], lora_scales=[0.6, -0.8])
    export(folders["sd"], tmp_path / "out", options)
    from neuron_export import NeuronStableDiffusionPipeline

    eager = eager_fused(folders["sd"], [folders["style"], folders["detail"]], [0.6, -0.8], ["style", "detail"])
    assert_same_images(generate(NeuronStableDiffusionPipeline.from_pretrained(tmp_path / "out")), generate(eager), base_image)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(r["adapter_name"], r["scale"]) for r in manifest["loras"]] == [("style", 0.6), ("detail", -0.8)]
    assert read_manifest(tmp_path / "out" / "unet").loras == manifest["loras"]


@pytest.mark.parametrize("part", ["unet", "text_encoder", "text_encoder_2"])
def test_sdxl_component_fusion_matches_diffusers(folders, part):
    """One component at a time (as the export loads them) equals diffusers fusing the whole SDXL pipeline."""
    from neuron_export.diffusion.lora import Lora, fuse_into_component

    lora = Lora(folders["sdxl_lora"], "pytorch_lora_weights.safetensors", None, 0.8)
    pipe, fused = make_tiny_sd_pipeline(xl=True), make_tiny_sd_pipeline(xl=True)
    fused.load_lora_weights(str(lora.folder))
    fused.fuse_lora(lora_scale=0.8)
    module = fuse_into_component(getattr(pipe, part), part, "StableDiffusionXLPipeline", [lora], dict(pipe.unet.config), part)
    assert not any("lora" in name for name, _ in module.named_modules())  # no peft layer left to trace
    with torch.no_grad():
        if part == "unet":
            sample, text = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 64)
            added = {"text_embeds": torch.randn(2, 32), "time_ids": torch.randn(2, 6)}
            got, expected = (m(sample, 500, text, added_cond_kwargs=added).sample for m in (module, fused.unet))
        else:
            ids = torch.tensor([[0, 3, 5, 1]])
            got, expected = module(ids)[0], getattr(fused, part)(ids)[0]
    assert (got - expected).abs().max() <= 1e-5


def test_cache_key_follows_the_lora_scale_and_file(folders, tmp_path):
    def key(scale):
        plan = make_plan(folders["sd"], ExportOptions(backend="torchscript", lora_model_ids=[str(lora)], lora_scales=[scale]))
        return CompileCache(tmp_path).key(plan.cache_folders, plan.source.library, plan.task, plan.shapes, plan.backend, plan.options)

    lora = build_tiny_lora(tmp_path / "lora", seed=5)
    first = key(0.7)
    assert key(0.7) == first and key(0.5) != first
    build_tiny_lora(tmp_path / "lora", seed=6)  # same file name, other weights
    assert key(0.7) != first


@pytest.mark.parametrize("options, message", [
    (dict(lora_model_ids=["a", "b"]), "2 --lora_model_ids need --lora_adapter_names"),
    (dict(lora_model_ids=["a", "b"], lora_adapter_names=["x"]), "--lora_adapter_names has 1 value for 2 --lora_model_ids"),
    (dict(lora_model_ids=["a", "b"], lora_adapter_names=["x", "x"]), "--lora_adapter_names must differ"),
    (dict(lora_model_ids=["a"], lora_scales=[1.0, 2.0]), "--lora_scales has 2 values for 1 --lora_model_ids"),
    (dict(lora_model_ids=["a"], lora_scales=[float("nan")]), "--lora_scales must be finite numbers"),
    (dict(lora_scales=[0.5]), "--lora_scales applies to --lora_model_ids"),
    (dict(lora_model_ids=[5]), "--lora_model_ids must be names"),
])
def test_inconsistent_lora_options_are_refused(options, message):
    with pytest.raises(NeuronExportError, match=message.replace("-", r"\-")):
        ExportOptions(**options)


def test_one_lora_may_be_given_bare_and_as_a_path(tmp_path):
    options = ExportOptions(lora_model_ids=tmp_path, lora_scales=0.5)
    assert (options.lora_model_ids, options.lora_scales) == ((str(tmp_path),), (0.5,))
    assert ExportOptions.from_dict(options.to_dict()) == options  # as a manifest or a job stores it


def test_bad_loras_are_one_line_errors_and_write_nothing(folders, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "style.safetensors").write_bytes((folders["style"] / "pytorch_lora_weights.safetensors").read_bytes())
    cases = [
        (dict(lora_model_ids=[str(tmp_path / "missing")]), "no such folder"),
        (dict(lora_model_ids=[str(other)]), "has no pytorch_lora_weights.safetensors; name its file with --lora_weight_names (found: style.safetensors)"),
        (dict(lora_model_ids=[str(other)], lora_weight_names=["nope.safetensors"]), "--lora_weight_names nope.safetensors: no such file"),
        (dict(lora_model_ids=[str(folders["sd"] / "unet")], lora_weight_names=["diffusion_pytorch_model.safetensors"]),
         "holds no LoRA weights for this StableDiffusionPipeline's unet or text_encoder"),
    ]
    for index, (options, message) in enumerate(cases):
        with pytest.raises(NeuronExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
            export(folders["sd"], tmp_path / f"out{index}", ExportOptions(backend="torchscript", use_cache=False, **options))
        assert not (tmp_path / f"out{index}").exists()
    with pytest.raises(NeuronExportError, match="not a diffusion pipeline"):
        make_plan("demo:tiny-bert", ExportOptions(lora_model_ids=[str(folders["style"])]))


def test_cli_lora_that_does_not_fit_the_unet_exits_2_with_one_line(folders, tmp_path):
    """An SDXL LoRA on SD: its UNet cross-attention weights have other shapes (found when the UNet loads)."""
    output = tmp_path / "out"
    result = run_cli("export", "--model", str(folders["sd"]), str(output), "--backend", "torchscript", "--no-cache",
                     "--lora_model_ids", str(folders["sdxl_lora"]), "--lora_scales", "0.5")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert f"--lora_model_ids {folders['sdxl_lora']} does not fit the unet of" in result.stderr and "size mismatch" in result.stderr
    assert not output.exists() and not list(tmp_path.glob(".out*"))
    # a list option takes every value after it: OUTPUT last is taken as a scale, and said so
    result = run_cli("export", "--model", str(folders["sd"]), "--lora_model_ids", str(folders["style"]), "--lora_scales", "0.5", str(output))
    assert result.returncode == 2 and "give OUTPUT before the --lora_* options" in result.stderr
