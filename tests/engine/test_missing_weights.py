"""A checkpoint that lacks weights is never "validated" silently: missing weights of the model itself
are an error; a head the checkpoint lacks (or has for another task) is a loud warning naming the
weights, recorded in the manifest. Checked against transformers' own loading report.

Budget: about 40 s (a few torchscript exports of tiny models).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import transformers
from safetensors.torch import load_file, save_file

from support import run_cli
from neuron_export import ExportOptions, export, read_manifest
from neuron_export.demo import build_tiny_text_model, resolve_demo
from neuron_export.errors import NeuronExportError

SHAPES = ["--backend", "torchscript", "--sequence_length", "16", "--no-cache"]


def drop_weights(folder: Path, keep) -> list[str]:
    """Rewrite the folder's safetensors without the weights `keep(name)` rejects; returns the dropped names."""
    weights = load_file(folder / "model.safetensors")
    dropped = sorted(name for name in weights if not keep(name))
    save_file({k: v for k, v in weights.items() if keep(k)}, folder / "model.safetensors", metadata={"format": "pt"})
    return dropped


def transformers_missing(folder: Path, auto_class) -> list[str]:
    """What transformers itself reports as newly initialized when loading the folder for a task."""
    _, info = auto_class.from_pretrained(folder, output_loading_info=True)
    return sorted(info["missing_keys"])


def test_a_checkpoint_missing_half_its_tensors_is_refused(tmp_path):
    folder = shutil.copytree(resolve_demo("demo:tiny-bert"), tmp_path / "half")
    names = sorted(load_file(folder / "model.safetensors"))
    dropped = drop_weights(folder, lambda name: names.index(name) % 2 == 0)
    assert any(name.startswith("bert.encoder.") for name in dropped)
    result = run_cli("export", "--model", str(folder), *SHAPES, str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    missing_body = [k for k in transformers_missing(folder, transformers.AutoModelForSequenceClassification)
                    if k.startswith("bert.") and ".pooler." not in k]
    assert f"lacks {len(missing_body)} weights of the model itself" in line and missing_body[0] in line
    assert not (tmp_path / "out").exists()


def test_a_base_checkpoint_exported_for_a_head_task_warns_and_records_the_head(tmp_path):
    base = build_tiny_text_model("bert", "feature-extraction", tmp_path / "base")  # a BertModel: no classifier
    expected = transformers_missing(base, transformers.AutoModelForSequenceClassification)
    assert expected == ["classifier.bias", "classifier.weight"]
    result = run_cli("export", "--model", str(base), *SHAPES, "--task", "text-classification", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "has no trained text-classification head: classifier.bias, classifier.weight" in result.stdout
    manifest = read_manifest(tmp_path / "out")
    assert manifest.untrained_weights == expected
    assert any("classifier.weight" in warning for warning in manifest.warnings)
    assert manifest.validation.passed is True  # the compiled model does match the (random-headed) eager one


def test_a_head_trained_for_another_task_is_flagged(tmp_path):
    """demo:tiny-bert is a text classifier: its head loads by name into a token classifier, trained for nothing of the kind."""
    assert json.loads((resolve_demo("demo:tiny-bert") / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    assert transformers_missing(resolve_demo("demo:tiny-bert"), transformers.AutoModelForTokenClassification) == []
    result = export("demo:tiny-bert", tmp_path / "out", ExportOptions(backend="torchscript", sequence_length=16,
                                                                     task="token-classification", use_cache=False))
    assert result.manifest.untrained_weights == ["classifier.weight", "classifier.bias"]
    assert read_manifest(tmp_path / "out").untrained_weights == ["classifier.weight", "classifier.bias"]


def test_a_checkpoint_for_its_own_task_has_no_warning(tmp_path):
    result = export("demo:tiny-bert", tmp_path / "out", ExportOptions(backend="torchscript", sequence_length=16, use_cache=False))
    assert result.manifest.untrained_weights == [] and result.manifest.warnings == []


def test_a_diffusers_component_missing_weights_is_refused(tmp_path):
    pipeline = shutil.copytree(resolve_demo("demo:tiny-sd"), tmp_path / "sd")
    unet = pipeline / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(unet)
    save_file({k: v for k, v in weights.items() if not k.startswith("mid_block.")}, unet, metadata={"format": "pt"})
    with pytest.raises(NeuronExportError, match=r"unet of .*sd lacks \d+ weights of the model itself \(mid_block\."):
        export(pipeline, tmp_path / "out", ExportOptions(backend="torchscript", use_cache=False))
    assert not (tmp_path / "out").exists()


def test_a_clip_checkpoint_exported_as_an_image_classifier_warns_for_its_head_only(tmp_path):
    """CLIP's image classifier has no body prefix (vision_model + classifier): its missing classifier
    is a head, while missing vision weights are still the model's own."""
    clip = resolve_demo("demo:tiny-clip")  # a CLIPModel: no classifier
    expected = transformers_missing(clip, transformers.AutoModelForImageClassification)
    assert expected == ["classifier.bias", "classifier.weight"]
    options = ExportOptions(backend="torchscript", task="image-classification", batch_size=1, use_cache=False)
    result = export(clip, tmp_path / "out", options)
    assert sorted(result.manifest.untrained_weights) == expected and result.manifest.validation.passed is True
    folder = shutil.copytree(clip, tmp_path / "no-vision")
    dropped = drop_weights(folder, lambda name: not name.startswith("vision_model.encoder."))
    with pytest.raises(NeuronExportError, match=rf"lacks {len(dropped)} weights of the model itself \(vision_model\.encoder\."):
        export(folder, tmp_path / "out2", options)
