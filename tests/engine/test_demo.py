"""Tests for neuron_export.demo: the tiny demo model builders (the catalog: test_demo_catalog.py)."""

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
from neuron_export.registry import ARCHITECTURES, TASKS, TINY_IMAGE_SIZE, supported_tasks

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


def test_every_task_of_a_family_is_served_by_one_of_its_architectures():
    # An architecture serves the tasks of its family that transformers has a head for.
    for family in {spec.family.name: spec.family for spec in ARCHITECTURES.values()}.values():
        served = {t for arch, spec in ARCHITECTURES.items() if spec.family is family for t in supported_tasks(arch)}
        assert served == set(family.tasks), family.name
    with pytest.raises(NeuronExportError, match="not supported"):
        supported_tasks("gpt2")


def _each_architecture_and_each_task(modality: str, first: str) -> list[tuple[str, str]]:
    """Every architecture of a modality with its first task, and every task on the first architecture
    (the export matrix runs every pair; here the builders' per-architecture and per-task parts are checked)."""
    archs = [a for a, spec in ARCHITECTURES.items() if spec.family.modality == modality]
    return list(dict.fromkeys([(a, supported_tasks(a)[0]) for a in archs] + [(first, t) for t in supported_tasks(first)]))


TEXT_PAIRS = _each_architecture_and_each_task("text", "bert")
VISION_PAIRS = _each_architecture_and_each_task("vision", "beit") + [("dpt", "depth-estimation"), ("yolos", "object-detection")]
# The width of the tiny text models, by its config key.
WIDTH_KEY = {"distilbert": "dim", "flaubert": "emb_dim", "xlm": "emb_dim"}


@pytest.mark.parametrize("arch,task", TEXT_PAIRS)
def test_text_model_builds_loads_and_tokenizes(arch, task, tmp_path):
    import transformers
    from transformers import AutoTokenizer

    folder = demo.build_tiny_text_model(arch, task, tmp_path / "a")
    assert folder == tmp_path / "a"
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == arch and config["architectures"]
    assert config[WIDTH_KEY.get(arch, "hidden_size")] == 32

    tok = AutoTokenizer.from_pretrained(folder)
    words = tok.tokenize(SENTENCE)
    assert tok.unk_token not in words, words
    assert "cat" in words and "mat" in words
    assert len(tok) == config["vocab_size"]
    assert tok.pad_token_id == config["pad_token_id"]
    assert tok.model_max_length <= config["max_position_embeddings"]
    expect_types = arch not in ("distilbert", "roberta", "xlm-roberta", "camembert", "mpnet", "esm", "modernbert", "phi")
    assert ("token_type_ids" in tok.model_input_names) == expect_types

    auto_cls = getattr(transformers, TASKS[task].auto_class)
    loaded = auto_cls.from_pretrained(folder).eval()
    in_memory, _ = demo.make_tiny_model(arch, task, seed=0)
    inputs = _text_inputs(tok, task)
    forward_params = inspect.signature(loaded.forward).parameters
    assert set(inputs) <= set(forward_params), (set(inputs), list(forward_params))
    no_cache = {"use_cache": False} if arch == "phi" else {}  # a decoder: it would also return its cache
    with torch.no_grad():
        got = loaded(**inputs, return_dict=False, **no_cache)
        want = in_memory(**inputs, return_dict=False, **no_cache)
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
    assert model.config.architectures
    pixels = processor(_pil_image(), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, TINY_IMAGE_SIZE, 48 if arch == "yolos" else TINY_IMAGE_SIZE)
    in_memory, _ = demo.make_tiny_model(arch, task, seed=0)
    with torch.no_grad():
        got = model(pixel_values=pixels, return_dict=False)
        want = in_memory(pixel_values=pixels, return_dict=False)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)  # LeViT, MobileNetV2: outputs ~10, conv kernels round
    if task == "image-classification":
        assert got[0].shape == (1, 3)
        assert list(model.config.id2label.values()) == ["cat", "dog", "bird"]
    _assert_same_state(_state_dict(folder), _state_dict(demo.build_tiny_vision_model(arch, task, tmp_path / "b")))


AUDIO_PAIRS = _each_architecture_and_each_task("audio", "wav2vec2") + [("hubert", "automatic-speech-recognition")]  # group norm


@pytest.mark.parametrize("arch,task", AUDIO_PAIRS)
def test_audio_model_builds_with_its_feature_extractor(arch, task, tmp_path):
    import transformers

    folder = demo.build_tiny_model(arch, task, tmp_path / "a")
    config = transformers.AutoConfig.from_pretrained(folder)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    clip = np.sin(np.arange(3200) / 7.0).astype("float32")
    inputs = dict(extractor(clip, sampling_rate=16000, return_tensors="pt"))
    # The extractor gives an attention mask exactly when the model takes one (layer-norm feature encoders).
    assert ("attention_mask" in inputs) == (getattr(config, "feat_extract_norm", "group") == "layer")
    if task == "automatic-speech-recognition":
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        assert len(tokenizer) == config.vocab_size and tokenizer.pad_token_id == config.pad_token_id
        assert tokenizer.decode(tokenizer("THE CAT SAT")["input_ids"], group_tokens=False) == "THE CAT SAT"
    model = getattr(transformers, TASKS[task].auto_class).from_pretrained(folder).eval()
    with torch.no_grad():
        got = model(**inputs, return_dict=False)
        want = demo.make_tiny_model(arch, task)[0](**inputs, return_dict=False)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)
    _assert_same_state(_state_dict(folder), _state_dict(demo.build_tiny_model(arch, task, tmp_path / "b")))


def test_clip_builds_with_its_processor(tmp_path):
    import transformers

    folder = demo.build_tiny_model("clip", "zero-shot-image-classification", tmp_path)
    processor = transformers.AutoProcessor.from_pretrained(folder)
    encoded = processor(text=["a photo of a cat", "a dog"], images=_pil_image(), padding=True, return_tensors="pt")
    assert len(processor.tokenizer.tokenize("a photo of a cat")) == 5  # every word known (unknown is <|endoftext|> in CLIP)
    assert tuple(encoded["pixel_values"].shape) == (1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    model = transformers.AutoModelForZeroShotImageClassification.from_pretrained(folder).eval()
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    with torch.no_grad():
        assert model(**encoded).logits_per_image.shape == (1, 2)


def test_weights_are_redrawn_where_transformers_init_gives_near_zero_outputs():
    # MobileViT's conv + BatchNorm stack outputs exactly 0 with transformers' own init at this size.
    import transformers

    ours, processor = demo.make_tiny_model("mobilevit", "image-classification")
    torch.manual_seed(0)
    theirs = transformers.MobileViTForImageClassification(ours.config).eval()
    pixels = processor(_pil_image(), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        assert float(theirs(pixel_values=pixels).logits.abs().max()) < 1e-6
        assert float(ours(pixel_values=pixels).logits.abs().max()) > 1e-2


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
