"""Text generation on an inf2 host: the decoder's KV cache is state of the traced decode graph
(torch_neuronx.trace's input_output_aliases), held on the NeuronCore and updated in place by every call.
Tiny random-weight llama and gpt2 (built from configs with a fixed seed) exported with --backend neuron;
greedy tokens equal transformers' generate(). Budget: ~60 s."""

import json

import pytest
import torch
import torch_neuronx
import transformers

from neuron_export import NeuronModelForCausalLM, NeuronModelForSeq2SeqLM, NeuronWhisperForConditionalGeneration
from neuron_export.demo.generative import build_tiny_generative_model
from neuron_export.errors import InputMismatchError
from support import run_cli

LENGTH = 24
PROMPTS = ["the", "the quick brown fox jumps", "paris is the capital of france and the people love music"]
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """model_type -> (model folder, artifact folder), exported by the CLI with --backend neuron."""
    root = tmp_path_factory.mktemp("generation")
    made = {}

    def get(model_type: str):
        if model_type not in made:
            folder = build_tiny_generative_model(model_type, root / model_type)
            done = run_cli("export", "--model", str(folder), "--task", "text-generation", "--backend", "neuron",
                           "--sequence_length", str(LENGTH), "--no-cache", str(root / f"{model_type}-neuron"))
            assert done.returncode == 0, done.stderr
            made[model_type] = folder, root / f"{model_type}-neuron"
        return made[model_type]

    return get


def eager_tokens(folder, prompt, **settings):
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        want = transformers.AutoModelForCausalLM.from_pretrained(folder).eval().generate(**inputs, do_sample=False, **settings)
    return inputs, want


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_the_compiled_decoder_generates_like_transformers(artifacts, model_type, runs):
    folder, artifact = artifacts(model_type)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert (manifest["backend"], manifest["validation"]["passed"]) == ("neuron", True)
    model = NeuronModelForCausalLM.from_pretrained(artifact)
    for prompt in PROMPTS:
        inputs, want = eager_tokens(folder, prompt, max_new_tokens=NEW_TOKENS)
        assert model.generate(**inputs, max_new_tokens=NEW_TOKENS).tolist() == want.tolist(), prompt
    decode_runs = [r for r in runs() if r["graph"] == "StateAsParameters"]
    layers = transformers.AutoConfig.from_pretrained(folder).num_hidden_layers
    assert len(decode_runs) == len(PROMPTS) * (NEW_TOKENS - 1), "one decode graph run per token after the first"
    assert all(len(r["shapes"]) == 2 + 2 * layers for r in decode_runs), "token, position and every cache tensor on the core"


def test_the_cache_is_state_held_by_the_traced_decode_graph(artifacts):
    folder, artifact = artifacts("llama")
    decode = torch.jit.load(str(artifact / "decode" / "model.neuron"))
    header = torch_neuronx.standin.describe(decode)
    layers = transformers.AutoConfig.from_pretrained(folder).num_hidden_layers
    assert len(list(decode.parameters())) == 2 * layers == len(header["aliases"]), "a key and a value state per layer"
    assert [spec["shape"] for spec in header["inputs"][:2]] == [[1, 1], [1, 1]], "the caller passes a token and its position only"


def test_cache_overflow_is_one_line_naming_the_limit(artifacts):
    folder, artifact = artifacts("llama")
    model = NeuronModelForCausalLM.from_pretrained(artifact)
    inputs = transformers.AutoTokenizer.from_pretrained(folder)(PROMPTS[2], return_tensors="pt")
    length = inputs.input_ids.shape[1]
    with pytest.raises(InputMismatchError, match=rf"{length} tokens \+ max_new_tokens 30 = {length + 30} .*sequence_length {LENGTH}") as error:
        model.generate(**inputs, max_new_tokens=30)
    assert "\n" not in str(error.value)


def test_without_the_aliased_write_back_the_tokens_go_wrong(artifacts, monkeypatch):
    """The test above can fail: a runtime that leaves the state as it was (no input_output_aliases
    write-back) decodes every token against the prompt's cache alone, and the tokens differ."""
    import _neuron_standin_runtime as runtime

    folder, artifact = artifacts("llama")
    model = NeuronModelForCausalLM.from_pretrained(artifact)
    real_read = runtime.read_header
    monkeypatch.setattr(runtime, "read_header", lambda neff: {**real_read(neff), "aliases": {}})
    inputs, want = eager_tokens(folder, PROMPTS[1], max_new_tokens=NEW_TOKENS)
    assert model.generate(**inputs, max_new_tokens=NEW_TOKENS).tolist() != want.tolist()


def test_t5_and_whisper_decoders_hold_their_cache_and_generate_like_transformers(tmp_path):
    for model_type, neuron_class, eager_class in (("t5", NeuronModelForSeq2SeqLM, transformers.AutoModelForSeq2SeqLM),
                                                   ("whisper", NeuronWhisperForConditionalGeneration, transformers.AutoModelForSpeechSeq2Seq)):
        folder = build_tiny_generative_model(model_type, tmp_path / model_type)
        model = neuron_class.from_pretrained(folder, export=True, backend="neuron", sequence_length=LENGTH if model_type == "t5" else None)
        assert (model.manifest.backend, model.manifest.validation.passed) == ("neuron", True)
        if model_type == "t5":
            inputs = dict(transformers.AutoTokenizer.from_pretrained(folder)("the cat sat on the mat", return_tensors="pt"))
        else:
            audio = torch.sin(torch.linspace(0, 300, 16000)).numpy()
            inputs = {"input_features": transformers.AutoProcessor.from_pretrained(folder)(
                audio, sampling_rate=16000, return_tensors="pt").input_features}
        with torch.no_grad():
            want = eager_class.from_pretrained(folder).eval().generate(**inputs, max_new_tokens=NEW_TOKENS)
        assert model.generate(**inputs, max_new_tokens=NEW_TOKENS).tolist() == want.tolist(), model_type
