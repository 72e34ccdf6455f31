"""A compiled model refuses inputs eager PyTorch would reject (or misread) with one InputMismatchError
naming the input: ids beyond the vocabulary or the token types (ranges written in the manifest at
export from the model's config), meta and sparse tensors, complex, bool and unsigned masks.

Budget: about 15 s (one torchscript export of a tiny BERT, one of a tiny SD text encoder's config read).
"""

from __future__ import annotations

import pytest
import torch
import transformers

from neuron_export import ExportOptions, export, load_artifact, read_manifest
from neuron_export.demo import resolve_demo
from neuron_export.errors import InputMismatchError

SEQUENCE_LENGTH = 8


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    output = tmp_path_factory.mktemp("values") / "bert"
    export("demo:tiny-bert", output, ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH, use_cache=False))
    return output


@pytest.fixture(scope="module")
def config():
    return transformers.AutoConfig.from_pretrained(resolve_demo("demo:tiny-bert"))


def inputs(config, **changes) -> dict[str, torch.Tensor]:
    values = {
        "input_ids": torch.randint(5, config.vocab_size, (1, SEQUENCE_LENGTH)),
        "attention_mask": torch.ones(1, SEQUENCE_LENGTH, dtype=torch.int64),
        "token_type_ids": torch.zeros(1, SEQUENCE_LENGTH, dtype=torch.int64),
    }
    return {**values, **changes}


def test_the_manifest_carries_the_ranges_of_the_config(artifact, config):
    ranges = {spec.name: spec.value_range for spec in read_manifest(artifact).inputs}
    assert ranges == {"input_ids": [0, config.vocab_size - 1], "attention_mask": [0, 1],
                      "token_type_ids": [0, config.type_vocab_size - 1]}


def test_in_range_inputs_run_like_eager(artifact, config):
    batch = inputs(config, input_ids=torch.tensor([[0] + [config.vocab_size - 1] * (SEQUENCE_LENGTH - 1)]),
                   token_type_ids=torch.tensor([[0] * 4 + [config.type_vocab_size - 1] * 4]))
    eager = transformers.AutoModelForSequenceClassification.from_pretrained(resolve_demo("demo:tiny-bert")).eval()
    with torch.no_grad():
        expected = eager(**batch).logits
    torch.testing.assert_close(load_artifact(artifact)(**batch)["logits"], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name, bad, words", [
    ("input_ids", "vocab", r"holds values from \d+ to {vocab}; the model takes 0 to {last}"),
    ("input_ids", "negative", r"holds values from -1 to \d+; the model takes 0 to {last}"),
    ("token_type_ids", "types", r"holds values from 0 to {types}; the model takes 0 to {last_type}"),
    ("attention_mask", "two", r"holds values from 1 to 2; the model takes 0 to 1"),
])
def test_out_of_range_values_are_refused_like_eager_refuses_them(artifact, config, name, bad, words):
    value = {"vocab": config.vocab_size, "negative": -1, "types": config.type_vocab_size, "two": 2}[bad]
    tensor = inputs(config)[name].clone()
    tensor[0, -1] = value
    batch = inputs(config, **{name: tensor})
    if name != "attention_mask":  # eager transformers fails too (an index error), only less readably
        eager = transformers.AutoModelForSequenceClassification.from_pretrained(resolve_demo("demo:tiny-bert")).eval()
        with pytest.raises(IndexError):
            eager(**batch)
    message = words.format(vocab=config.vocab_size, last=config.vocab_size - 1, types=config.type_vocab_size,
                           last_type=config.type_vocab_size - 1)
    with pytest.raises(InputMismatchError, match=rf"input '{name}' " + message):
        load_artifact(artifact)(**batch)


@pytest.mark.parametrize("kind, expected", [
    ("meta", "input 'attention_mask' is a meta tensor"),
    ("sparse", "input 'attention_mask' is a torch.sparse_coo tensor"),
    ("complex", "input 'attention_mask' has dtype torch.complex64"),
    ("uint8", "input 'attention_mask' has dtype torch.uint8"),
    ("bool", "input 'attention_mask' has dtype torch.bool"),
    ("float", "input 'attention_mask' has dtype torch.float32"),
])
def test_tensors_of_the_wrong_kind_are_refused(artifact, config, kind, expected):
    mask = torch.ones(1, SEQUENCE_LENGTH, dtype=torch.int64)
    mask = {
        "meta": lambda: torch.empty(1, SEQUENCE_LENGTH, dtype=torch.int64, device="meta"),
        "sparse": lambda: mask.to_sparse(),
        "complex": lambda: mask.to(torch.complex64),
        "uint8": lambda: mask.to(torch.uint8),
        "bool": lambda: mask.bool(),
        "float": lambda: mask.float(),
    }[kind]()
    with pytest.raises(InputMismatchError, match=expected):
        load_artifact(artifact)(**inputs(config, attention_mask=mask))


def test_int32_ids_are_still_accepted(artifact, config):
    batch = inputs(config)
    as_int32 = {name: tensor.to(torch.int32) for name, tensor in batch.items()}
    model = load_artifact(artifact)
    torch.testing.assert_close(model(**as_int32)["logits"], model(**batch)["logits"])
