"""Buckets on the NeuronCores: one torch_neuronx trace per bucket (the largest loaded at start in the
background, the others on first use), each call on the smallest that fits, against transformers; an SD
pipeline with two resolutions keeps the AWS recipe at each (the UNet data-parallel on cores 0 and 1),
against diffusers. Budget: ~60 s."""

import torch
import torch_neuronx
import transformers

from neuron_export import ExportOptions, NeuronModelForSequenceClassification, NeuronStableDiffusionPipeline, export, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion, resolve_demo

from host_diffusion import assert_same_images, generate


def test_sequence_buckets_are_neuron_traces_and_each_call_runs_on_the_smallest(tmp_path, runs):
    output = tmp_path / "bert"
    result = export("demo:tiny-bert", output, ExportOptions(task="text-classification", sequence_length=(8, 16), use_cache=False))
    assert result.validation_passed is True and result.manifest.backend == "neuron"
    assert [b.location for b in read_manifest(output).buckets] == ["model.8.neuron", "model.16.neuron"]
    flags = {n: torch_neuronx.standin.describe(output / f"model.{n}.neuron")["flags"] for n in (8, 16)}
    assert (flags[16]["async_load"], flags[16]["lazy_load"], flags[8]["lazy_load"]) == (1, 0, 1)

    model = NeuronModelForSequenceClassification.from_pretrained(output)
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_demo("demo:tiny-bert"))
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(resolve_demo("demo:tiny-bert")).eval()
    runs_before = len(runs())
    for text, bucket in (("a fine day", "8"), ("the cat sat on the mat and looked at the dog", "16")):
        inputs = dict(tokenizer([text], return_tensors="pt"))
        with torch.no_grad():
            torch.testing.assert_close(model(**inputs).logits, eager(**inputs).logits, atol=1e-4, rtol=0)
        assert model.compiled.last_bucket == bucket
    assert [r["shapes"][0][1] for r in runs()[runs_before:]] == [8, 16]  # what reached the NeuronCore


def test_two_sd_resolutions_keep_the_unet_on_two_cores(tmp_path, runs):
    from diffusers import StableDiffusionPipeline

    source = build_tiny_stable_diffusion(tmp_path / "source")
    output = tmp_path / "compiled"
    result = export(source, output, ExportOptions(height=(64, 96), width=(64, 96), use_cache=False))
    assert result.validation_passed is True and [b.name for b in result.manifest.buckets] == ["64x64", "96x96"]
    unet = read_manifest(output / "unet")
    assert unet.neuron_cores == [0, 1] and [b.inputs[0].shape[0] for b in unet.buckets] == [1, 1]  # one CFG half per core

    pipe = NeuronStableDiffusionPipeline.from_pretrained(output)
    assert pipe.unet.compiled.cores == [0, 1] and pipe.unet.compiled.replicas == 2
    eager = StableDiffusionPipeline.from_pretrained(source)
    runs_before = len(runs())
    assert_same_images(generate(pipe, guidance_scale=7.5, height=64, width=64), generate(eager, guidance_scale=7.5, height=64, width=64))
    assert pipe.unet.compiled.last_bucket == "8x8"
    unet_runs = [(r["core"], tuple(r["shapes"][0])) for r in runs()[runs_before:] if r["graph"] == "UNetModule"]
    assert unet_runs and set(unet_runs) == {(0, (1, 4, 8, 8)), (1, (1, 4, 8, 8))}  # the 64 px bucket, halves on cores 0 and 1
