"""The CLI on an inf2 host: `auto` picks neuron, compiles, validates on the NeuronCores, and the artifact
answers like transformers' eager model; dynamic batch; auto-cast; `doctor`. Budget: ~60 s."""

import json

import pytest
import torch
import torch_neuronx
import transformers

from neuron_export import load_artifact
from neuron_export.demo import resolve_demo
from neuron_export.errors import InputMismatchError
from support import run_cli

TEXTS = ["the cat sat on the mat", "john smith lives in paris", "a fine day"]


def eager_logits(texts, length=16):
    folder = resolve_demo("demo:tiny-bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = dict(tokenizer(texts, padding="max_length", max_length=length, return_tensors="pt"))
    with torch.no_grad():
        return inputs, transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()(**inputs).logits


def test_auto_compiles_for_the_neuroncores_and_validates_there(tmp_path, runs):
    done = run_cli("export", "--model", "demo:tiny-bert", "--sequence_length", "16", "--no-cache", str(tmp_path / "bert"))
    assert done.returncode == 0, done.stderr
    assert "Backend: neuron (auto: torch-neuronx and a Neuron device are present); runs on AWS inf2 NeuronCores only" in done.stdout
    assert "-[✓] all values close (atol: 0.0001)" in done.stdout
    manifest = json.loads((tmp_path / "bert" / "manifest.json").read_text())
    assert (manifest["target"], manifest["neuron_cores"], manifest["validation"]["passed"]) == ("inf2", [0], True)
    compiled = load_artifact(tmp_path / "bert")
    inputs, expected = eager_logits(TEXTS[:1])
    torch.testing.assert_close(compiled(**inputs)["logits"], expected, atol=1e-5, rtol=0)
    assert runs()[-1]["core"] == 0 and runs()[-1]["graph"] == "TraceableModel"
    with pytest.raises(InputMismatchError, match=r"has shape \(1, 8\); the model was compiled for \(1, 16\)"):
        compiled(**{k: v[:, :8] for k, v in inputs.items()})  # refused before it reaches the runtime


def test_dynamic_batch_and_auto_cast(tmp_path):
    done = run_cli("export", "--model", "demo:tiny-bert", "--sequence_length", "16", "--dynamic-batch-size", "--auto_cast", "matmul",
                   "--no-cache", str(tmp_path / "bert"))
    assert done.returncode == 0, done.stderr
    assert "all values close (atol: 0.05)" in done.stdout  # the bf16 default tolerance
    header = torch_neuronx.standin.describe(tmp_path / "bert" / "model.neuron")
    assert header["flags"]["dynamic_batch"] == 1 and "matmult" in header["compiler_args"]
    inputs, expected = eager_logits(TEXTS)
    got = load_artifact(tmp_path / "bert")(**inputs)["logits"]
    assert got.shape == (3, 2)
    torch.testing.assert_close(got, expected, atol=5e-2, rtol=0)
    assert not torch.equal(got, expected)  # the matmuls really ran in bf16


def test_doctor_on_this_host():
    done = run_cli("doctor", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    facts = {f["name"]: f for f in report["facts"]}
    assert facts["torch-neuronx"]["ok"] and "built for torch" in facts["torch-neuronx"]["value"]
    assert facts["Neuron devices"]["value"].startswith("1 (/dev/neuron0) on an inf2.xlarge")
    assert facts["NeuronCores"]["value"].startswith("2 usable by this process")
    neuron = next(b for b in report["backends"] if b["is_neuron"])
    assert neuron["can_compile"] and neuron["can_run"] and report["ok"]
