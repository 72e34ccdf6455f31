"""The README's "extending" recipes, each done here in a few lines and checked against transformers:
an architecture is one registry entry, a task is one registry entry (plus its family's task list),
a backend is one class implementing the Backend protocol."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import transformers

from neuron_export import ExportOptions, export, load_artifact
from neuron_export.backends import BACKENDS
from neuron_export.backends.portable import PortableBackend
from neuron_export.demo import build_tiny_model, resolve_demo
from neuron_export.modeling import model_class
from neuron_export.registry import ARCHITECTURES, TASKS, TEXT_ENCODER, Architecture, TaskSpec

SEQUENCE_LENGTH = 16


def _tokens(folder: Path, text: str = "the cat sat on the mat") -> dict[str, torch.Tensor]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return dict(tokenizer(text, padding="max_length", max_length=SEQUENCE_LENGTH, return_tensors="pt"))


def test_an_architecture_is_one_registry_entry(monkeypatch, tmp_path):
    tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    monkeypatch.setitem(ARCHITECTURES, "ernie", Architecture("ernie", TEXT_ENCODER, tiny=tiny))

    folder = build_tiny_model("ernie", "text-classification", tmp_path / "ernie")
    result = export(folder, tmp_path / "artifact", ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH))
    assert result.validation_passed is True
    inputs = _tokens(folder)
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = eager(**inputs).logits
    torch.testing.assert_close(load_artifact(result.artifact)(**inputs)["logits"], expected, rtol=0, atol=1e-4)


def test_a_task_is_one_registry_entry(monkeypatch, tmp_path):
    task = TaskSpec("next-sentence-prediction", "AutoModelForNextSentencePrediction", ("logits",), ("ForNextSentencePrediction",),
                    "NeuronModelForNextSentencePrediction", "NextSentencePredictorOutput", views={"text": "text-labels"})
    monkeypatch.setitem(TASKS, task.name, task)
    family = dataclasses.replace(TEXT_ENCODER, tasks=TEXT_ENCODER.tasks + (task.name,))
    monkeypatch.setitem(ARCHITECTURES, "bert", dataclasses.replace(ARCHITECTURES["bert"], family=family))

    folder = build_tiny_model("bert", task.name, tmp_path / "bert-nsp")
    result = export(folder, tmp_path / "artifact", ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH))
    assert result.manifest.task == task.name and result.validation_passed is True
    model = model_class(task.model_class).from_pretrained(result.artifact)
    inputs = {name: tensor[:, :10] for name, tensor in _tokens(folder).items()}  # shorter: padded by the class
    eager = transformers.AutoModelForNextSentencePrediction.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = eager(**inputs).logits
    output = model(**inputs)
    assert type(output).__name__ == "NextSentencePredictorOutput"
    torch.testing.assert_close(output.logits, expected, rtol=0, atol=1e-4)


class ExportedProgramBackend(PortableBackend):
    """torch.export's program saved as it is (no compiler): a backend in a dozen lines."""

    name = "exported-program"
    model_file = "model.ep"

    def compiler_version(self) -> str:
        return f"torch.export {torch.__version__}"

    def trace(self, module, example, options):
        with torch.no_grad():
            return torch.export.export(module, example, strict=False)

    def compile(self, traced, example, options, model_path, workdir, model_kind="generic", data_parallel=False):
        torch.export.save(traced, str(model_path))

    def load(self, model_path, manifest):
        return torch.export.load(str(model_path)).module()


def test_a_backend_is_one_class(monkeypatch, tmp_path):
    monkeypatch.setitem(BACKENDS, ExportedProgramBackend.name, ExportedProgramBackend())

    result = export("demo:tiny-bert", tmp_path / "artifact",
                    ExportOptions(backend="exported-program", sequence_length=SEQUENCE_LENGTH))
    assert result.manifest.backend == "exported-program" and not result.manifest.is_neuron
    assert (result.artifact / "model.ep").is_file() and result.validation_passed is True
    folder = resolve_demo("demo:tiny-bert")
    inputs = _tokens(folder)
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = eager(**inputs).logits
    torch.testing.assert_close(load_artifact(result.artifact)(**inputs)["logits"], expected, rtol=0, atol=1e-4)
