"""The compile cache: hits on identical exports (without loading the eager model), misses on any change,
corrupt entries recompiled, the `cache` command. Torchscript exports of the tiny demo BERT.

Budget: < 1.5 minutes on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import pytest
import torch
import transformers

from support import run_cli
from neuron_export import export, load_artifact
from neuron_export.export import transformers as export_transformers
from neuron_export.export.cache import ENTRY_ARTIFACT, ENTRY_RECORD, NOT_IN_KEY, CompileCache
from neuron_export.demo import build_tiny_text_model, resolve_demo
from neuron_export.errors import NeuronExportError
from neuron_export.options import ExportOptions

BASE = dict(backend="torchscript", sequence_length=16)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("compile-cache")


@pytest.fixture(autouse=True)
def isolated_cache(cache_root, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_CACHE", str(cache_root))


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A private copy of the tiny BERT classifier, so tests may rewrite its weights."""
    return shutil.copytree(resolve_demo("demo:tiny-bert"), tmp_path_factory.mktemp("model") / "tiny-bert")


def _export(model, output, **changes):
    return export(model, output, ExportOptions(**{**BASE, **changes}))


def _assert_runs_like_transformers(artifact, model_folder):
    """The artifact's logits equal eager transformers' on a tokenized sentence."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_folder)
    inputs = dict(tokenizer("the cat sat on the mat", padding="max_length", max_length=16, return_tensors="pt"))
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(model_folder).eval()
    with torch.no_grad():
        expected = eager(**inputs).logits
    torch.testing.assert_close(load_artifact(artifact)(**inputs)["logits"], expected, atol=1e-5, rtol=1e-4)


def _never_load_eager(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cache hit must not load the eager model")

    monkeypatch.setattr(export_transformers, "load_eager_model", refuse)


def test_identical_export_is_a_hit_that_never_loads_the_eager_model(model_folder, tmp_path, monkeypatch, caplog):
    first = _export(model_folder, tmp_path / "first")
    assert not first.cache_hit
    _never_load_eager(monkeypatch)
    with caplog.at_level(logging.INFO, logger="neuron_export"):
        second = _export(model_folder, tmp_path / "second")
    assert second.cache_hit and second.validation_passed
    assert "compile cache hit" in caplog.text.lower()
    assert (tmp_path / "first" / "model.pt").read_bytes() == (tmp_path / "second" / "model.pt").read_bytes()
    _assert_runs_like_transformers(second.artifact, model_folder)

    # Existing OUTPUT rules hold for a hit too.
    with pytest.raises(NeuronExportError, match="already exists"):
        _export(model_folder, tmp_path / "second")
    assert _export(model_folder, tmp_path / "second", force=True).cache_hit


@pytest.mark.parametrize(
    "changes",
    [{"optlevel": 1}, {"sequence_length": 8}, {"batch_size": 2}, {"dynamic_batch_size": True},
     {"output_hidden_states": True}, {"atol": 1e-3}, {"task": "feature-extraction"}],
    ids=lambda changes: next(iter(changes)),
)
def test_any_option_change_is_a_miss(changes, model_folder, tmp_path):
    _export(model_folder, tmp_path / "base")  # a hit once the first test stored it
    result = _export(model_folder, tmp_path / "changed", **changes)
    assert not result.cache_hit
    assert _export(model_folder, tmp_path / "again", **changes).cache_hit


def test_changed_weights_are_a_miss_and_a_copied_folder_a_hit(model_folder, tmp_path):
    _export(model_folder, tmp_path / "base")
    copy = shutil.copytree(model_folder, tmp_path / "copy")
    assert _export(copy, tmp_path / "from-copy").cache_hit  # keyed by content, not by path
    build_tiny_text_model("bert", "text-classification", copy, seed=1)  # same config, other weights
    retrained = _export(copy, tmp_path / "retrained")
    assert not retrained.cache_hit
    _assert_runs_like_transformers(retrained.artifact, copy)


@pytest.mark.parametrize("damage", ["flip model bytes", "delete entry record"])
def test_corrupt_entry_is_deleted_and_recompiled(damage, model_folder, tmp_path, caplog):
    _export(model_folder, tmp_path / "base", optlevel=3)
    [entry] = [e for e in CompileCache().entries() if json.loads(
        (e.path / ENTRY_ARTIFACT / "manifest.json").read_text())["optlevel"] == 3]
    if damage == "flip model bytes":
        model_file = entry.path / ENTRY_ARTIFACT / "model.pt"
        data = bytearray(model_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model_file.write_bytes(bytes(data))
    else:
        (entry.path / ENTRY_RECORD).unlink()
    with caplog.at_level(logging.WARNING, logger="neuron_export"):
        result = _export(model_folder, tmp_path / "recompiled", optlevel=3)
    assert not result.cache_hit
    assert "corrupt" in caplog.text
    _assert_runs_like_transformers(result.artifact, model_folder)
    assert _export(model_folder, tmp_path / "healed", optlevel=3).cache_hit  # stored again, intact


def test_no_cache_and_compiler_workdir_bypass_the_cache(model_folder, tmp_path):
    _export(model_folder, tmp_path / "base")
    assert not _export(model_folder, tmp_path / "no-cache", use_cache=False).cache_hit
    assert not _export(model_folder, tmp_path / "workdir", compiler_workdir=str(tmp_path / "work")).cache_hit


class _Backend:
    name = "torchscript"

    def compiler_version(self) -> str:
        return "test"


# A value different from the default for every ExportOptions field.
CHANGED_VALUES = {
    "task": "fill-mask", "backend": "inductor", "device": "cuda", "instance_type": "inf2", "batch_size": 3,
    "sequence_length": 7, "num_choices": 2, "num_channels": 1, "height": 8, "width": 8, "num_images_per_prompt": 2,
    "num_beams": 2, "auto_cast": "matmul", "auto_cast_type": "fp16", "optlevel": 3, "dynamic_batch_size": True,
    "compiler_workdir": "/tmp/work", "num_cores": 2, "trust_remote_code": True, "cache_dir": "/tmp/hub",
    "unet": "/tmp/unet", "output_hidden_states": True, "output_attentions": True, "atol": 0.5,
    "disable_validation": True, "force": True, "use_cache": False, "length_histogram": "/tmp/lengths.json",
    "audio_sequence_length": 16000, "text_batch_size": 3, "image_batch_size": 2, "cpu_isa": "avx2", "threads": 1,
    "quantize": "int8-dynamic", "lora_model_ids": ["/tmp/lora"], "lora_weight_names": ["style.safetensors"],
    "lora_adapter_names": ["style"], "lora_scales": [0.5], "classifier_free_guidance": False,
    "controlnet_ids": ["/tmp/controlnet"],
}


def test_the_key_covers_every_option_that_changes_the_artifact(model_folder, cache_root):
    assert set(CHANGED_VALUES) == {f.name for f in dataclasses.fields(ExportOptions)}, "classify the new option"
    cache = CompileCache(cache_root)
    shapes = {"batch_size": 1, "sequence_length": 16}

    def key(options):
        return cache.key(model_folder, "transformers", "text-classification", shapes, _Backend(), options)

    for name, value in CHANGED_VALUES.items():
        # auto_cast_type matters with auto-cast on (the export fills in bf16 when it is not given)
        context = {"auto_cast": "matmul", "auto_cast_type": "bf16"} if name == "auto_cast_type" else {}
        if name.startswith("lora_") and name != "lora_model_ids":  # each is one value per LoRA
            context = {"lora_model_ids": ["/tmp/lora"]}
        base = key(ExportOptions(**context))
        changed = key(ExportOptions(**{**context, name: value}))
        if name in NOT_IN_KEY:
            assert changed == base, f"{name} does not change the artifact"
        else:
            assert changed != base, f"{name} changes the artifact"
    assert key(ExportOptions(auto_cast_type="fp16")) == key(ExportOptions())  # ignored without auto_cast


def test_cache_command_lists_and_clears(model_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_CACHE", str(tmp_path / "cli-cache"))
    args = ["export", "--model", str(model_folder), "--backend", "torchscript", "--sequence_length", "16"]
    assert run_cli(*args, str(tmp_path / "a")).returncode == 0
    hit = run_cli(*args, str(tmp_path / "b"))
    assert hit.returncode == 0 and "compile cache hit" in hit.stdout.lower()
    assert "cache hit" not in run_cli(*args, "--no-cache", str(tmp_path / "c")).stdout.lower()

    listing = run_cli("cache", "list")
    assert listing.returncode == 0 and "1 entries" in listing.stdout and "text-classification" in listing.stdout
    cleared = run_cli("cache", "clear")
    assert cleared.returncode == 0 and "Removed 1" in cleared.stdout
    assert "0 entries" in run_cli("cache", "list").stdout
    assert not any((tmp_path / "cli-cache").iterdir())
