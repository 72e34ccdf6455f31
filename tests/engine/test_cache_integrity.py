"""The compile cache never hands out the wrong artifact: two exports racing to one OUTPUT each store
what they built; a hit re-checks the stored manifest against its key; weights edited in place (same
size, same mtime) are a miss. Real `neuron-export` subprocesses for the race.

Budget: about 1 minute (torchscript exports of the tiny BERT).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from support import ROOT
from neuron_export import ExportOptions, export, load_artifact
from neuron_export.demo import resolve_demo
from neuron_export.export.cache import ENTRY_ARTIFACT, ENTRY_RECORD, CompileCache


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("NEURON_EXPORT_CACHE", str(root))
    return root


@pytest.fixture
def model(tmp_path):
    return shutil.copytree(resolve_demo("demo:tiny-bert"), tmp_path / "model")


def entry_manifests(root) -> dict[str, dict]:
    """Each entry's key -> the manifest of the artifact stored under it."""
    return {entry.key: json.loads((entry.path / ENTRY_ARTIFACT / "manifest.json").read_text()) for entry in CompileCache(root).entries()}


def test_two_exports_racing_to_one_output_each_store_their_own_artifact(model, tmp_path, cache_root):
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEURON_EXPORT_CACHE": str(cache_root)}
    racers = [subprocess.Popen([sys.executable, "-m", "neuron_export", "export", "--model", str(model), "--backend", "torchscript",
                                "--sequence_length", str(length), "--force", str(output)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
              for length in (8, 16)]
    for racer in racers:
        _, stderr = racer.communicate(timeout=300)
        assert racer.returncode == 0, stderr
    stored = entry_manifests(cache_root)
    assert sorted(m["shapes"]["sequence_length"] for m in stored.values()) == [8, 16]
    for key, manifest in stored.items():
        assert manifest["compile_cache"]["key"] == key  # each entry holds what was built for its key
    # A later hit gets the shape it asks for.
    for length in (8, 16):
        hit = export(model, tmp_path / f"hit-{length}", ExportOptions(backend="torchscript", sequence_length=length))
        assert hit.cache_hit
        assert [spec.shape for spec in load_artifact(hit.artifact).manifest.inputs][0] == [1, length]


def test_a_hit_whose_stored_manifest_is_for_another_key_is_refused(model, tmp_path, cache_root, caplog):
    """An entry holding another key's artifact (as the old race stored it) is deleted and recompiled."""
    for length in (8, 16):
        export(model, tmp_path / f"first-{length}", ExportOptions(backend="torchscript", sequence_length=length))
    stored = entry_manifests(cache_root)
    key_8 = next(k for k, m in stored.items() if m["shapes"]["sequence_length"] == 8)
    key_16 = next(k for k, m in stored.items() if m["shapes"]["sequence_length"] == 16)
    # Put the 16-token artifact (with valid checksums) under the 8-token key.
    shutil.rmtree(cache_root / key_8)
    shutil.copytree(cache_root / key_16, cache_root / key_8)
    with caplog.at_level(logging.WARNING, logger="neuron_export"):
        result = export(model, tmp_path / "again-8", ExportOptions(backend="torchscript", sequence_length=8))
    assert not result.cache_hit and "stored for another key" in caplog.text
    assert load_artifact(result.artifact).manifest.inputs[0].shape == [1, 8]
    assert json.loads((cache_root / key_8 / ENTRY_RECORD).read_text())["checksums"]  # stored again, for its own key
    assert entry_manifests(cache_root)[key_8]["shapes"]["sequence_length"] == 8


def test_weights_edited_in_place_with_the_same_size_and_mtime_are_a_miss(model, tmp_path, cache_root):
    export(model, tmp_path / "before", ExportOptions(backend="torchscript", sequence_length=8))
    weights_file = model / "model.safetensors"
    stat = weights_file.stat()
    weights = load_file(weights_file)
    weights["classifier.bias"] = weights["classifier.bias"] + 1.0  # same shapes: same file size
    save_file(weights, weights_file, metadata={"format": "pt"})
    os.utime(weights_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_file.stat().st_size == stat.st_size and weights_file.stat().st_mtime_ns == stat.st_mtime_ns
    result = export(model, tmp_path / "after", ExportOptions(backend="torchscript", sequence_length=8))
    assert not result.cache_hit
    inputs = {"input_ids": torch.randint(5, 100, (1, 8)), "attention_mask": torch.ones(1, 8, dtype=torch.int64),
              "token_type_ids": torch.zeros(1, 8, dtype=torch.int64)}
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(model).eval()
    with torch.no_grad():
        expected = eager(**inputs).logits
    torch.testing.assert_close(load_artifact(result.artifact)(**inputs)["logits"], expected, atol=1e-4, rtol=1e-4)
