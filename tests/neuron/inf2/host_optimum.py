"""Folders that optimum-neuron wrote (built here in its layout with the stand-in torch_neuronx) load and
run in the model classes, pipeline() and the SD pipelines, against transformers / diffusers; one compiled
for another instance type or a newer compiler is refused in one line (exit 2 on the CLI). Budget: ~60 s."""

import json
import shutil

import numpy as np
import pytest
import torch
import transformers
from optimum_layout import diffusion_folder, encoder_folder

import neuron_export
from neuron_export import NeuronModelForFeatureExtraction, NeuronModelForSequenceClassification, read_manifest
from neuron_export.demo import build_tiny_stable_diffusion, resolve_demo
from neuron_export.errors import ArtifactError, InputMismatchError
from support import run_cli

TEXTS = ["the cat sat on the mat", "a fine day"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return encoder_folder(resolve_demo("demo:tiny-bert"), tmp_path_factory.mktemp("optimum") / "bert", "text-classification",
                          "AutoModelForSequenceClassification", batch_size=2, sequence_length=16)


def test_an_encoder_folder_runs_in_its_model_class_and_pipeline(bert):
    model = NeuronModelForSequenceClassification.from_pretrained(bert)
    manifest = model.manifest
    assert (manifest.backend, manifest.target, manifest.tool, manifest.input_names) == (
        "neuron", "inf2", "optimum-neuron", ["input_ids", "attention_mask", "token_type_ids"])
    assert "not a Neuron artifact" not in manifest.runs_on and manifest.validation.passed is None
    inputs = dict(transformers.AutoTokenizer.from_pretrained(bert)(TEXTS, padding=True, return_tensors="pt"))
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(resolve_demo("demo:tiny-bert")).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, eager(**inputs).logits, atol=1e-5, rtol=0)  # padded to (2, 16) and back
    ours = neuron_export.pipeline("text-classification", str(bert))(TEXTS[0])
    theirs = transformers.pipeline("text-classification", model=str(resolve_demo("demo:tiny-bert")))(TEXTS[0])
    assert ours[0]["label"] == theirs[0]["label"] and abs(ours[0]["score"] - theirs[0]["score"]) < 1e-5
    assert not (bert / "manifest.json").exists()  # the folder stays as optimum-neuron made it
    # Token ids past the vocabulary (its config's vocab_size) are refused before they reach the NeuronCore.
    vocab = json.loads((bert / "config.json").read_text())["vocab_size"]
    with pytest.raises(InputMismatchError, match=f"input 'input_ids' holds values from 0 to {vocab}; the model takes 0 to {vocab - 1}"):
        model(**{**inputs, "input_ids": inputs["input_ids"].clamp(max=0).index_fill(1, torch.tensor([0]), vocab)})


def test_a_roberta_style_folder_has_no_token_type_ids(tmp_path):
    source = resolve_demo("demo:tiny-roberta-mc")
    folder = encoder_folder(source, tmp_path / "roberta", "feature-extraction", "AutoModel", sequence_length=16)
    model = NeuronModelForFeatureExtraction.from_pretrained(folder)
    assert model.manifest.input_names == ["input_ids", "attention_mask"]
    inputs = dict(transformers.AutoTokenizer.from_pretrained(folder)(TEXTS[:1], return_tensors="pt"))
    with torch.no_grad():
        expected = transformers.AutoModel.from_pretrained(source).eval()(**inputs)
    got = model(**inputs)
    for name in ("last_hidden_state", "pooler_output"):
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize("xl", [False, True])
def test_a_pipeline_folder_runs_in_the_neuron_pipeline_like_diffusers(tmp_path, xl, runs):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    pipeline_class = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    source = build_tiny_stable_diffusion(tmp_path / "source", xl=xl)
    folder = diffusion_folder(pipeline_class.from_pretrained(source), tmp_path / "optimum", xl=xl)
    manifest = read_manifest(folder)
    assert manifest.is_pipeline and read_manifest(folder / "unet").neuron_cores == [0, 1]
    ours = getattr(neuron_export, "NeuronStableDiffusionXLPipeline" if xl else "NeuronStableDiffusionPipeline").from_pretrained(folder)
    runs_before = len(runs())
    generated = []
    for pipe in (ours, pipeline_class.from_pretrained(source)):
        pipe.set_progress_bar_config(disable=True)
        generated.append(pipe("an astronaut", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images)
    difference = np.abs(generated[0] - generated[1])
    assert difference.mean() <= 1e-2 and difference.max() <= 1e-3, (difference.mean(), difference.max())
    assert {r["core"] for r in runs()[runs_before:] if r["graph"] == "UnetWrapper"} == {0, 1}


def test_a_variant_pipeline_folder_is_refused_in_one_line(tmp_path):
    """Only the optimum-neuron layouts tested above load: an LCM class, or an SD folder whose UNet is a variant's
    (a latent consistency UNet takes timestep_cond, which this loader does not map), is one line."""
    from diffusers import StableDiffusionPipeline

    source = build_tiny_stable_diffusion(tmp_path / "source")
    folder = diffusion_folder(StableDiffusionPipeline.from_pretrained(source), tmp_path / "optimum", xl=False)
    for name, edit in (("model_index.json", {"_class_name": "LatentConsistencyModelPipeline"}), ("unet/config.json", {"time_cond_proj_dim": 16})):
        variant = tmp_path / name.replace("/", "-")
        shutil.copytree(folder, variant)
        (variant / name).write_text(json.dumps({**json.loads((variant / name).read_text()), **edit}))
        with pytest.raises(ArtifactError, match="export the diffusers model with neuron-export instead") as raised:
            read_manifest(variant)
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("neuron, message", [
    ({"instance_type": "trn2"}, "compiled for trn2 (NeuronCore-v3) and this host is an inf2.xlarge (NeuronCore-v2): recompile it for inf2"),
    ({"compiler_version": "2.99.1.0+0"}, "compiled with neuronx-cc 2.99.1.0+0 and this host has neuronx-cc"),
])
def test_a_folder_this_host_cannot_run_is_one_line(bert, tmp_path, neuron, message):
    folder = tmp_path / "other"
    shutil.copytree(bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["neuron"].update(neuron)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        NeuronModelForSequenceClassification.from_pretrained(folder)
    done = run_cli("benchmark", str(folder), "--iterations", "1")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in bert.iterdir())  # nothing written
