"""sentence-transformers folders: every pooling mode, Dense and Normalize give the embeddings that
sentence-transformers' own `encode` gives (the package is the reference, not this tool's code);
a module this tool does not support is refused, never dropped.

Tiny folders built offline with sentence-transformers' own module classes around a tiny BERT, each
exported with the torchscript backend. Budget: about 1 minute.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from neuron_export import ExportOptions, NeuronModelForSentenceTransformers, export
from neuron_export.demo import build_tiny_text_model
from neuron_export.errors import NeuronExportError

st = pytest.importorskip("sentence_transformers")
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer  # noqa: E402

SENTENCES = ["the cat sat on the mat", "hello", "a much longer sentence about the weather in the mountains today"]
SEQUENCE_LENGTH = 24


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    return build_tiny_text_model("bert", "feature-extraction", tmp_path_factory.mktemp("encoder") / "bert", seed=3)


def st_folder(encoder: Path, folder: Path, pooling, dense=None, normalize=False) -> Path:
    """A sentence-transformers folder saved by sentence-transformers itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformer = Transformer(str(encoder))
        width = transformer.get_embedding_dimension()
        modules = [transformer, Pooling(width, pooling_mode=pooling)]
        if dense is not None:
            torch.manual_seed(7)
            modes = 1 if isinstance(pooling, str) else len(pooling)
            modules.append(Dense(width * modes, 6, activation_function=dense))
        if normalize:
            modules.append(Normalize())
        st.SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


def compare_with_encode(folder: Path, artifact: Path) -> torch.Tensor:
    """Compiled sentence embeddings (one sentence per call, padded to the compiled length) minus encode's."""
    export(folder, artifact, ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH, use_cache=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = st.SentenceTransformer(str(folder), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    model = NeuronModelForSentenceTransformers.from_pretrained(artifact)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(artifact)
    compiled = torch.cat([model(**tokenizer([sentence], return_tensors="pt")).sentence_embedding for sentence in SENTENCES])
    assert compiled.shape == expected.shape
    assert expected.abs().max() > 0.05, "a reference near zero would make the comparison meaningless"
    return (compiled - expected).abs().max()


@pytest.mark.parametrize("mode", ["cls", "mean", "max", "lasttoken", "weightedmean", "mean_sqrt_len_tokens"])
def test_each_pooling_mode_matches_sentence_transformers(mode, encoder, tmp_path):
    folder = st_folder(encoder, tmp_path / "st", mode)
    assert compare_with_encode(folder, tmp_path / "artifact") < 1e-5


def test_several_modes_dense_and_normalize_match_sentence_transformers(encoder, tmp_path):
    folder = st_folder(encoder, tmp_path / "st", ("cls", "max"), dense=torch.nn.Tanh(), normalize=True)
    assert [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())] == \
        ["Transformer", "Pooling", "Dense", "Normalize"]
    assert compare_with_encode(folder, tmp_path / "artifact") < 1e-5


def test_dense_without_activation_matches(encoder, tmp_path):
    folder = st_folder(encoder, tmp_path / "st", "mean", dense=torch.nn.Identity())
    assert compare_with_encode(folder, tmp_path / "artifact") < 1e-5


def test_legacy_pooling_config_is_read(encoder, tmp_path):
    folder = st_folder(encoder, tmp_path / "st", "max")
    config = tmp_path / "st" / "1_Pooling" / "config.json"
    config.write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                                  "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}))
    assert compare_with_encode(folder, tmp_path / "artifact") < 1e-5


def add_module(folder: Path, type_name: str, path: str = "") -> None:
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": path, "type": type_name})
    (folder / "modules.json").write_text(json.dumps(modules))


def test_an_unsupported_module_is_refused_before_anything_is_written(encoder, tmp_path):
    folder = st_folder(encoder, tmp_path / "st", "mean")
    add_module(folder, "sentence_transformers.models.LayerNorm", "2_LayerNorm")
    with pytest.raises(NeuronExportError, match="module 'sentence_transformers.models.LayerNorm' is not supported"):
        export(folder, tmp_path / "artifact", ExportOptions(backend="torchscript", sequence_length=8, use_cache=False))
    assert not (tmp_path / "artifact").exists()


def test_code_named_as_an_activation_is_refused(encoder, tmp_path):
    folder = st_folder(encoder, tmp_path / "st", "mean", dense=torch.nn.Tanh())
    config = folder / "2_Dense" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "activation_function": "os.system"}))
    with pytest.raises(NeuronExportError, match="activation 'os.system' is not a torch.nn module"):
        export(folder, tmp_path / "artifact", ExportOptions(backend="torchscript", sequence_length=8, use_cache=False))


def test_pooling_without_the_prompt_is_refused(encoder, tmp_path):
    folder = st_folder(encoder, tmp_path / "st", "mean")
    config = folder / "1_Pooling" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "include_prompt": False}))
    with pytest.raises(NeuronExportError, match="include_prompt: false"):
        export(folder, tmp_path / "artifact", ExportOptions(backend="torchscript", sequence_length=8, use_cache=False))
