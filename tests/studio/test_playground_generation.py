"""studio/playground generation views: the chat, text-to-text and transcript results equal what
transformers' generate gives on the source model, tokens stream as they come, timings are reported,
and bad input is a one-line error.

Artifacts: the tiny Llama, T5 and Whisper demos exported once with the torchscript backend.
"""

import dataclasses

import numpy as np
import pytest
import torch
import transformers

from neuron_export import ExportOptions, export
from neuron_export.demo import default_demo_root, resolve_demo
from neuron_export.errors import NeuronExportError
from studio import playground
from support import Upload, wav_bytes

EXPORTS = {"tiny-llama": {"sequence_length": 48}, "tiny-t5": {"sequence_length": 24}, "tiny-whisper": {}}
GREEDY = {"max_new_tokens": 6, "do_sample": False}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generation-playground")
    for name, shapes in EXPORTS.items():
        export(f"demo:{name}", folder / name, ExportOptions(backend="torchscript", disable_validation=True, **shapes))
    return {name: playground.load(folder / name, default_demo_root()) for name in EXPORTS}


def test_views_of_generative_artifacts(loaded):
    assert {name: item.view for name, item in loaded.items()} == {"tiny-llama": "chat", "tiny-t5": "text-to-text", "tiny-whisper": "speech-to-text"}
    assert all(playground.random_weights_demo(item.manifest) for item in loaded.values())
    assert all(item.eager is not None for item in loaded.values())


def test_chat_streams_the_reply_transformers_gives(loaded):
    item = loaded["tiny-llama"]
    messages = [{"role": "user", "content": "the quick brown fox"}]
    streamed = []
    result = playground.chat(item, messages, GREEDY, compare=True, on_text=streamed.append)
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_demo("demo:tiny-llama"))
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(resolve_demo("demo:tiny-llama")).eval()
    expected = model.generate(**prompt, **GREEDY)[0, prompt["input_ids"].shape[1]:].tolist()
    assert result.tokens == expected and result.text == tokenizer.decode(expected, skip_special_tokens=True)
    assert result.tokens_match is True and result.first_difference is None
    assert len(streamed) == len(expected) and streamed[-1] == result.text  # one update per token, the text so far
    timing = result.compiled
    assert timing.tokens == 6 and 0 < timing.first_token_s <= timing.seconds and timing.per_token_s > 0 and timing.tokens_per_s > 0
    assert result.eager.tokens == 6


def test_chat_sampling_is_compared_with_the_same_seed(loaded):
    settings = {"max_new_tokens": 8, "do_sample": True, "temperature": 1.2, "top_k": 0, "top_p": 1.0}
    result = playground.chat(loaded["tiny-llama"], [{"role": "user", "content": "hello"}], settings)
    assert result.tokens_match is True  # same sampling, same draws


def test_chat_without_a_template_continues_the_text(loaded):
    item = loaded["tiny-llama"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_demo("demo:tiny-llama"))
    tokenizer.chat_template = None
    plain = dataclasses.replace(item, processor=tokenizer)
    result = playground.chat(plain, [{"role": "user", "content": "the quick brown fox"}], GREEDY, compare=False)
    assert any("no chat template" in note for note in result.notes) and result.eager is None and result.tokens_match is None
    with pytest.raises(NeuronExportError, match="Enter a message first"):
        playground.chat(item, [{"role": "user", "content": "  "}], GREEDY)
    with pytest.raises(NeuronExportError, match="sequence_length 48"):
        playground.chat(item, [{"role": "user", "content": "the quick brown fox"}], {"max_new_tokens": 48})


def test_text_to_text_is_what_transformers_generates(loaded):
    result = playground.text_to_text(loaded["tiny-t5"], "the cat sat on the mat", "summarize", GREEDY)
    folder = resolve_demo("demo:tiny-t5")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    expected = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval().generate(
        **tokenizer("summarize: the cat sat on the mat", return_tensors="pt"), **GREEDY)
    assert result.tokens == expected[0, 1:].tolist() and result.tokens_match is True
    with pytest.raises(NeuronExportError, match="Enter some text"):
        playground.text_to_text(loaded["tiny-t5"], " ", "summarize", GREEDY)


def test_transcript_is_what_transformers_generates(loaded):
    clip, result = playground.transcribe_speech(loaded["tiny-whisper"], None, None, GREEDY)  # the generated sample
    folder = resolve_demo("demo:tiny-whisper")
    processor = transformers.AutoProcessor.from_pretrained(folder)
    model = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model.generate(processor(clip.samples, sampling_rate=clip.sampling_rate, return_tensors="pt").input_features, **GREEDY)
    assert result.tokens == expected[0].tolist() and result.tokens_match is True
    long_clip = Upload(wav_bytes(np.zeros(32000, dtype=np.float32), 16000))
    _, result = playground.transcribe_speech(loaded["tiny-whisper"], None, long_clip, GREEDY, compare=False)
    assert any("only its first 1 s" in note for note in result.notes)
