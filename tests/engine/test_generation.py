"""Compiled text generation against transformers: decoder LLMs, T5 and Whisper.

Tiny random-weight models (fixed seed, tokenizers built offline by neuron_export.demo) are compared
with the same folder loaded by transformers' Auto classes and run by transformers' own generate():
tokens must be identical, logits within atol. The graphs are checked for every decoder family
without compiling; compiled artifacts for gpt2, llama, qwen2, t5 and whisper on torchscript, and
llama on inductor (gpt2, qwen2, t5 and whisper on inductor under -m slow).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from neuron_export import (
    ExportOptions, NeuronModelForCausalLM, NeuronModelForSeq2SeqLM, NeuronWhisperForConditionalGeneration, export, read_manifest,
)
from neuron_export.demo.generative import build_tiny_generative_model
from neuron_export.errors import InputMismatchError, NeuronExportError
from neuron_export.generation.graphs import DecodeGraph, DecoderStepGraph, EncoderGraph, PrefillGraph

DECODERS = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma")
LENGTH = 32  # compiled sequence_length of the decoder LMs
PROMPTS = ["the", "the quick brown fox jumps", "paris is the capital of france and the people of the city love music and art"]
TEXTS = ["the cat sat on the mat", "hello world", "the quick brown fox jumped over the lazy dog in the morning"]
ATOL = 1e-4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """model_type -> folder of its tiny model (built on first use)."""
    root = tmp_path_factory.mktemp("generative")
    built = {}

    def folder(model_type: str):
        if model_type not in built:
            built[model_type] = build_tiny_generative_model(model_type, root / model_type)
        return built[model_type]

    return folder


def eager(folder, auto=transformers.AutoModelForCausalLM):
    return auto.from_pretrained(folder).eval()


def greedy(model, **inputs):
    with torch.no_grad():
        return model.generate(**inputs, do_sample=False, output_logits=True, return_dict_in_generate=True)


# ---- the graphs, uncompiled, for every decoder family ---------------------------------------------


@pytest.mark.parametrize("model_type", DECODERS)
def test_prefill_and_decode_graphs_follow_transformers(folders, model_type):
    model = eager(folders(model_type))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders(model_type))
    prompt = tokenizer(PROMPTS[1], return_tensors="pt")
    expected = greedy(model, **prompt, max_new_tokens=6)
    assert expected.logits[0].abs().max() > 0.5, "logits of O(1): a near-zero head would make this pass whatever"
    length = prompt.input_ids.shape[1]
    padded = torch.zeros(1, 12, dtype=torch.long)
    padded[0, :length] = prompt.input_ids[0]
    mask = (torch.arange(12) < length).long()[None]
    with torch.no_grad():
        logits, *caches = PrefillGraph(model, LENGTH)(padded, mask)
        got = [logits]
        for step in range(5):
            token = got[-1].argmax(-1, keepdim=True)
            got.append(DecodeGraph(model)(token, torch.tensor([[length + step]]), *caches)[0])
    for mine, theirs in zip(got, expected.logits):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=ATOL)
    assert [int(t.argmax()) for t in got] == expected.sequences[0, length:].tolist()


@pytest.mark.parametrize("model_type", ["t5", "whisper"])
def test_encoder_and_decoder_step_graphs_follow_transformers(folders, model_type):
    model = eager(folders(model_type), transformers.AutoModelForSeq2SeqLM if model_type == "t5" else transformers.AutoModelForSpeechSeq2Seq)
    if model_type == "t5":
        inputs = dict(transformers.AutoTokenizer.from_pretrained(folders(model_type))(TEXTS[2], return_tensors="pt"))
    else:
        inputs = {"input_features": torch.randn(1, 16, 100, generator=torch.Generator().manual_seed(0))}
    with torch.no_grad():
        expected = transformers.GenerationMixin.generate(model, **inputs, max_new_tokens=6, do_sample=False, output_logits=True,
                                                         return_dict_in_generate=True)
        cross = EncoderGraph(model, list(inputs))(*inputs.values())
        past = [torch.zeros(t.shape[0], t.shape[1], 16, t.shape[3]) for t in cross]
        step = DecoderStepGraph(model, encoder_mask="attention_mask" in inputs)
        mask = [inputs["attention_mask"]] if "attention_mask" in inputs else []
        token, got = torch.tensor([[model.config.decoder_start_token_id]]), []
        for position in range(6):
            got.append(step(token, torch.tensor([[position]]), *mask, *past, *cross)[0])
            token = got[-1].argmax(-1, keepdim=True)
    for mine, theirs in zip(got, expected.logits):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=ATOL)


# ---- compiled decoder LMs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled(folders, tmp_path_factory):
    """(model_type, backend, batch) -> a loaded NeuronModelForCausalLM (exported once per module)."""
    made = {}

    def get(model_type: str, backend: str = "torchscript", batch_size: int = 1):
        key = (model_type, backend, batch_size)
        if key not in made:
            out = tmp_path_factory.mktemp("artifact") / f"{model_type}-{backend}-{batch_size}"
            result = export(folders(model_type), out, ExportOptions(backend=backend, sequence_length=LENGTH, batch_size=batch_size))
            assert result.validation_passed is True
            assert result.manifest.components == [f"prefill_{LENGTH}", "decode"]
            made[key] = NeuronModelForCausalLM.from_pretrained(out)
        return made[key]

    return get


def assert_same_greedy_tokens(neuron, folder, prompts, **settings):
    model, tokenizer = eager(folder), transformers.AutoTokenizer.from_pretrained(folder)
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt")
        want = greedy(model, **inputs, **settings)
        got = neuron.generate(**inputs, do_sample=False, output_logits=True, return_dict_in_generate=True, **settings)
        assert got.sequences.tolist() == want.sequences.tolist(), prompt
        for mine, theirs in zip(got.logits, want.logits):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=ATOL)


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "qwen2"])
def test_compiled_decoder_generates_like_transformers_torchscript(compiled, folders, model_type):
    assert_same_greedy_tokens(compiled(model_type), folders(model_type), PROMPTS, max_new_tokens=8)


def test_compiled_decoder_generates_like_transformers_inductor(compiled, folders):
    assert_same_greedy_tokens(compiled("llama", "inductor"), folders("llama"), PROMPTS, max_new_tokens=8)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["gpt2", "qwen2"])
def test_compiled_decoder_generates_like_transformers_inductor_more(compiled, folders, model_type):
    assert_same_greedy_tokens(compiled(model_type, "inductor"), folders(model_type), PROMPTS, max_new_tokens=8)


def test_prompt_length_buckets_run_each_prompt_on_the_smallest_graph(compiled, folders, tmp_path):
    """--sequence_length 8,32: prompt graphs of 8 and 32 tokens sharing the decode graph's cache of 32
    (and not the compile cache's entry of the same model at the single length 32)."""
    compiled("llama")
    out = tmp_path / "llama-buckets"
    result = export(folders("llama"), out, ExportOptions(backend="torchscript", sequence_length=(8, LENGTH)))
    assert result.validation_passed is True
    assert result.manifest.components == ["prefill_8", f"prefill_{LENGTH}", "decode"]
    assert result.manifest.shapes["sequence_length"] == LENGTH
    neuron = NeuronModelForCausalLM.from_pretrained(out)
    used = []
    for graph in neuron.runtime.prefills:  # record which prompt graph each prompt runs on
        graph._runner = _recording(graph._runner, used, graph.inputs["input_ids"].shape[1])
    assert_same_greedy_tokens(neuron, folders("llama"), [PROMPTS[0], PROMPTS[2]], max_new_tokens=8)
    assert used == [8, LENGTH]


def _recording(runner, used, length):
    def run(*tensors):
        used.append(length)
        return runner(*tensors)

    return run


def test_left_padded_batch_generates_like_transformers(compiled, folders):
    """Prompts of different lengths in one batch, padded as transformers pads for generation."""
    neuron, folder = compiled("llama", batch_size=2), folders("llama")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, padding_side="left")
    inputs = tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)
    want = greedy(eager(folder), **inputs, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
    got = neuron.generate(**inputs, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
    assert got.tolist() == want.sequences.tolist()
    # a single prompt runs in a compiled batch of 2 (the spare row is dropped)
    single = {k: v[1:] for k, v in inputs.items()}
    assert neuron.generate(**single, max_new_tokens=6).tolist() == want.sequences[1:].tolist()


def test_sampling_matches_transformers_with_the_same_seed(compiled, folders):
    neuron, folder = compiled("llama"), folders("llama")
    inputs = transformers.AutoTokenizer.from_pretrained(folder)(PROMPTS[1], return_tensors="pt")
    settings = dict(max_new_tokens=10, do_sample=True, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.3)
    torch.manual_seed(7)
    want = eager(folder).generate(**inputs, **settings)
    torch.manual_seed(7)
    assert neuron.generate(**inputs, **settings).tolist() == want.tolist()


def test_eos_stops_and_the_streamer_sees_every_token(compiled, folders):
    neuron, folder = compiled("llama"), folders("llama")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(PROMPTS[0], return_tensors="pt")
    free = neuron.generate(**inputs, max_new_tokens=6)
    stop_at = int(free[0, inputs.input_ids.shape[1] + 2])  # make the third new token the end of the text
    streamer = transformers.TextIteratorStreamer(tokenizer, skip_prompt=True)
    got = neuron.generate(**inputs, max_new_tokens=6, eos_token_id=stop_at, streamer=streamer)
    assert got.tolist() == eager(folder).generate(**inputs, max_new_tokens=6, eos_token_id=stop_at).tolist()
    assert got.shape[1] == inputs.input_ids.shape[1] + 3
    assert "".join(streamer) == tokenizer.decode(got[0, inputs.input_ids.shape[1]:])


def test_limits_of_the_compiled_shapes_are_errors_naming_them(compiled, folders):
    neuron = compiled("llama")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders("llama"))
    inputs = tokenizer(PROMPTS[2], return_tensors="pt")
    length = inputs.input_ids.shape[1]
    with pytest.raises(InputMismatchError, match=rf"{length} tokens \+ max_new_tokens 30 = {length + 30} .*sequence_length {LENGTH}"):
        neuron.generate(**inputs, max_new_tokens=30)
    too_long = torch.ones(1, LENGTH + 3, dtype=torch.long) * 5
    with pytest.raises(InputMismatchError, match=f"the prompt has {LENGTH + 3} tokens; the compiled prompt graph takes at most {LENGTH}"):
        neuron.generate(input_ids=too_long, max_new_tokens=1)
    vocab = transformers.AutoConfig.from_pretrained(folders("llama")).vocab_size
    with pytest.raises(InputMismatchError, match=rf"input 'input_ids' holds values from \d+ to {vocab}; the model takes 0 to {vocab - 1}"):
        neuron.generate(input_ids=torch.full((1, 3), vocab), max_new_tokens=1)
    with pytest.raises(InputMismatchError, match="2 prompts: the model was compiled for batch_size 1"):
        neuron.generate(input_ids=torch.ones(2, 3, dtype=torch.long), max_new_tokens=1)
    with pytest.raises(NeuronExportError, match="num_beams is not supported"):
        neuron.generate(**inputs, max_new_tokens=2, num_beams=3)
    with pytest.raises(NeuronExportError, match="unexpected arguments"):
        neuron.generate(**inputs, max_new_tokens=2, not_an_option=1)


@pytest.mark.parametrize("options,message", [
    (dict(), "missing --sequence_length: text-generation needs it"),
    (dict(sequence_length=4096), r"--sequence_length 4096 is beyond the model's max_position_embeddings \(128\)"),
    (dict(sequence_length=16, dynamic_batch_size=True), "--dynamic-batch-size: text-generation keeps a KV cache per batch row"),
    (dict(sequence_length=16, auto_cast="all"), "--auto_cast all is not available for text-generation"),
])
def test_export_refuses_what_it_cannot_build(folders, tmp_path, options, message):
    with pytest.raises(NeuronExportError, match=message):
        export(folders("llama"), tmp_path / "out", ExportOptions(backend="torchscript", **options))
    assert not (tmp_path / "out").exists()


def test_seq2seq_takes_one_sequence_length(folders, tmp_path):
    with pytest.raises(NeuronExportError, match="--sequence_length takes one value for text2text-generation"):
        export(folders("t5"), tmp_path / "out", ExportOptions(backend="torchscript", sequence_length=(8, 16)))
    assert not (tmp_path / "out").exists()


def _without(folder, tmp_path, name: str, dropped: str):
    """A copy of the model folder whose checkpoint lacks the weight `dropped`."""
    copy = shutil.copytree(folder, tmp_path / name)
    weights = load_file(copy / "model.safetensors")
    save_file({k: v for k, v in weights.items() if k != dropped}, copy / "model.safetensors", metadata={"format": "pt"})
    return copy


def test_a_checkpoint_without_its_lm_head_is_recorded_and_one_without_body_weights_refused(folders, tmp_path):
    """The reliability rules for generative artifacts: what transformers reports as newly initialized
    is named in every graph's manifest and the root's; a missing weight of the body is an error and
    nothing is written."""
    headless = _without(folders("llama"), tmp_path, "headless", "lm_head.weight")
    _, info = transformers.AutoModelForCausalLM.from_pretrained(headless, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["lm_head.weight"]
    result = export(headless, tmp_path / "out", ExportOptions(backend="torchscript", sequence_length=16, use_cache=False))
    assert result.manifest.untrained_weights == ["prefill_16/lm_head.weight", "decode/lm_head.weight"]
    assert any("no trained text-generation head: lm_head.weight" in w for w in read_manifest(tmp_path / "out" / "decode").warnings)

    bodiless = _without(folders("llama"), tmp_path, "bodiless", "model.layers.0.self_attn.q_proj.weight")
    with pytest.raises(NeuronExportError, match=r"lacks 1 weights of the model itself \(model.layers.0.self_attn.q_proj.weight\)"):
        export(bodiless, tmp_path / "refused", ExportOptions(backend="torchscript", sequence_length=16, use_cache=False))
    assert not (tmp_path / "refused").exists()


def test_pipeline_text_generation(compiled, folders):
    from neuron_export import pipeline

    folder = folders("llama")
    generator = pipeline("text-generation", model=compiled("llama").path)
    reference = transformers.pipeline("text-generation", model=eager(folder), tokenizer=transformers.AutoTokenizer.from_pretrained(folder))
    for prompt in (PROMPTS[1], [{"role": "user", "content": "hello there"}]):
        assert generator(prompt, max_new_tokens=5, do_sample=False) == reference(prompt, max_new_tokens=5, do_sample=False)


# ---- T5 and Whisper -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seq2seq(folders):
    made = {}

    def get(model_type: str, backend: str = "torchscript"):
        if (model_type, backend) not in made:
            cls = NeuronModelForSeq2SeqLM if model_type == "t5" else NeuronWhisperForConditionalGeneration
            made[model_type, backend] = cls.from_pretrained(folders(model_type), export=True, backend=backend,
                                                            sequence_length=24 if model_type == "t5" else None)
            assert made[model_type, backend].manifest.components == ["encoder", "decoder"]
        return made[model_type, backend]

    return get


@pytest.mark.parametrize("backend", ["torchscript", pytest.param("inductor", marks=pytest.mark.slow)])
def test_t5_generates_like_transformers(seq2seq, folders, backend):
    neuron, folder = seq2seq("t5", backend), folders("t5")
    model, tokenizer = eager(folder, transformers.AutoModelForSeq2SeqLM), transformers.AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        inputs = tokenizer(text, return_tensors="pt")
        want = greedy(model, **inputs, max_new_tokens=8)
        got = neuron.generate(**inputs, max_new_tokens=8, output_logits=True, return_dict_in_generate=True)
        assert got.sequences.tolist() == want.sequences.tolist(), text
        for mine, theirs in zip(got.logits, want.logits):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=ATOL)
    with pytest.raises(InputMismatchError, match="the input has 30 tokens; the encoder was compiled for sequence_length 24"):
        neuron.generate(input_ids=torch.ones(1, 30, dtype=torch.long), max_new_tokens=2)
    with pytest.raises(InputMismatchError, match=r"31 decoder tokens \(decoder prompt \+ max_new_tokens\): the model was compiled for sequence_length 24"):
        neuron.generate(**tokenizer(TEXTS[0], return_tensors="pt"), max_new_tokens=30)


def _audio_features(folder, seed: int):
    processor = transformers.AutoProcessor.from_pretrained(folder)
    rng = np.random.RandomState(seed)
    audio = (np.sin(np.linspace(0, 300 + 100 * seed, 16000)) + 0.3 * rng.randn(16000)).astype("float32")
    return processor(audio, sampling_rate=16000, return_tensors="pt").input_features


@pytest.mark.parametrize("settings", [dict(), dict(language="fr", task="translate"), dict(language="en"), dict(return_dict_in_generate=True)])
def test_whisper_transcribes_like_transformers(seq2seq, folders, settings):
    """transformers' Whisper generate: language detection or given, task and no-timestamps tokens, suppressed tokens."""
    neuron, model = seq2seq("whisper"), eager(folders("whisper"), transformers.AutoModelForSpeechSeq2Seq)
    for seed in range(2):
        features = _audio_features(folders("whisper"), seed)
        with torch.no_grad():
            want = model.generate(features, max_new_tokens=8, **settings)
        got = neuron.generate(features, max_new_tokens=8, **settings)
        if settings.get("return_dict_in_generate"):
            got, want = got.sequences, want.sequences
        assert got.tolist() == want.tolist()


def test_whisper_pipeline_and_errors(seq2seq, folders):
    from neuron_export import pipeline

    folder = folders("whisper")
    audio = np.sin(np.linspace(0, 400, 16000)).astype("float32")
    processor = transformers.AutoProcessor.from_pretrained(folder)
    reference = transformers.pipeline("automatic-speech-recognition", model=eager(folder, transformers.AutoModelForSpeechSeq2Seq),
                                      tokenizer=processor.tokenizer, feature_extractor=processor.feature_extractor)
    transcribe = pipeline("automatic-speech-recognition", model=seq2seq("whisper").path)
    settings = {"generate_kwargs": {"max_new_tokens": 6, "num_beams": 1}}
    assert transcribe(audio, **settings) == reference(audio, **settings)
    with pytest.raises(NeuronExportError, match="without timestamps"):
        seq2seq("whisper").generate(_audio_features(folder, 0), return_timestamps=True)
    with pytest.raises(NeuronExportError, match="transformers 5 removed the text2text-generation.*NeuronModelForSeq2SeqLM"):
        pipeline("text2text-generation", model=seq2seq("whisper").path)


@pytest.mark.slow
def test_whisper_inductor(seq2seq, folders):
    neuron, model = seq2seq("whisper", "inductor"), eager(folders("whisper"), transformers.AutoModelForSpeechSeq2Seq)
    features = _audio_features(folders("whisper"), 0)
    assert neuron.generate(features, max_new_tokens=8).tolist() == model.generate(features, max_new_tokens=8).tolist()


def test_memorised_demo_recites_through_the_compiled_model(tmp_path):
    """demo:memorised-gpt2 is trained at build time: its greedy continuation is meaningful, and the
    compiled model must give exactly transformers' tokens."""
    from neuron_export.demo import resolve_demo

    folder = resolve_demo("demo:memorised-gpt2")
    neuron = NeuronModelForCausalLM.from_pretrained("demo:memorised-gpt2", export=True, backend="torchscript", sequence_length=LENGTH)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer("paris is the", return_tensors="pt")
    got = neuron.generate(**inputs, max_new_tokens=10)
    assert got.tolist() == eager(folder).generate(**inputs, max_new_tokens=10).tolist()
    assert tokenizer.decode(got[0], skip_special_tokens=True) == "paris is the capital of france."
