"""Tiny generative models (registry/generation.py) and their tokenizers, built offline.

Tokenizers are real BPE / unigram vocabularies trained here on a word list (deterministically):
byte-level BPE for GPT-2, Qwen2 and Whisper, a byte-fallback "▁" BPE for Llama-style models, a
unigram vocabulary for T5. Weights are random with a fixed seed, drawn wider than transformers'
initialisation so that logits are O(1) and greedy tokens vary (a near-zero head would make any
comparison pass). build_memorised_gpt2 instead trains a tiny GPT-2 for seconds on a few sentences,
so that its greedy continuations are meaningful (and far from ties).

TRAP (transformers 5): tokenizers take vocab= and merges= (a list of pairs); vocab_file= is ignored.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ..errors import NeuronExportError
from ..registry import GENERATIVE_ARCHITECTURES, head_class_name, supported_tasks
from .vocab import ENGLISH_WORDS, train_bpe_merges

WORDS = ENGLISH_WORDS
MAX_POSITIONS = 128
WEIGHT_STD = 0.2
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHAT_ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|fr|>", "<|translate|>", "<|transcribe|>",
                    "<|nocaptions|>", "<|notimestamps|>"]
STORY = ("the quick brown fox jumps over the lazy dog. the cat sat on the mat and saw the sun. "
         "paris is the capital of france. a man is riding a horse on the road.")


@functools.cache
def _merges(word_start: str, bare_words: bool) -> list[tuple[str, str]]:
    """BPE merges of WORDS marked with `word_start` (and unmarked too: a text's first word), trained once per process."""
    return train_bpe_merges([word_start + w for w in WORDS] + (WORDS if bare_words else []), end_of_word="")


def _byte_level(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2 style: the 256 byte symbols, word-start marker Ġ, merges that assemble every word."""
    from tokenizers.pre_tokenizers import ByteLevel

    merges = _merges("Ġ", True)
    tokens = sorted(ByteLevel.alphabet()) + [a + b for a, b in merges] + specials
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}, merges


def _metaspace(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Llama style: <unk> <s> </s>, byte fallback <0x00>..<0xFF>, then ▁-prefixed pieces."""
    merges = _merges("▁", False)
    letters = sorted({c for w in WORDS for c in "▁" + w})
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + letters + [a + b for a, b in merges] + specials
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}, merges


def _unigram() -> list[tuple[str, float]]:
    """T5 style: <pad> </s> <unk>, whole words (likelier), then single characters."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -2.0 - 0.01 * i) for i, w in enumerate(dict.fromkeys(WORDS))]
    pieces += [(c, -10.0) for c in sorted({c for w in WORDS for c in w} | set(".,!?'"))] + [("▁", -5.0)]
    return pieces


def make_generative_tokenizer(model_type: str):
    """The tokenizer (Whisper: the processor) of a generative architecture's tiny model."""
    import transformers

    if model_type in ("gpt2", "qwen2", "qwen3"):
        vocab, merges = _byte_level(["<|endoftext|>", *CHAT_ROLES])
        tokenizer = getattr(transformers, "GPT2Tokenizer" if model_type == "gpt2" else "Qwen2Tokenizer")(vocab=vocab, merges=merges)
        tokenizer.pad_token = tokenizer.eos_token
    elif model_type == "t5":
        tokenizer = transformers.T5Tokenizer(vocab=_unigram(), extra_ids=0)
    elif model_type == "whisper":
        return _whisper_processor()
    else:
        vocab, merges = _metaspace(CHAT_ROLES)
        tokenizer = transformers.LlamaTokenizer(vocab=vocab, merges=merges)
        tokenizer.pad_token = tokenizer.eos_token
    if model_type != "t5":
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.add_special_tokens({"additional_special_tokens": CHAT_ROLES})
    probe = tokenizer.tokenize("the quick brown fox")
    if tokenizer.unk_token in probe or len(probe) > 6:  # pragma: no cover - guards against the vocab_file= trap
        raise NeuronExportError(f"internal error: demo {model_type} tokenizer does not tokenize words: {probe}")
    tokenizer.model_max_length = MAX_POSITIONS
    return tokenizer


def _whisper_processor():
    import transformers

    vocab, merges = _byte_level(WHISPER_SPECIALS)
    tokenizer = transformers.WhisperTokenizer(vocab=vocab, merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": WHISPER_SPECIALS[1:]})
    # 16 mel bins over 1-second clips: 100 frames, the tiny config's 2 x max_source_positions.
    features = transformers.WhisperFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, chunk_length=1, n_fft=400)
    return transformers.WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)


def _ids(tokenizer, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(token) for token in tokens]


def _config_values(model_type: str, processor) -> dict[str, Any]:
    tokenizer = getattr(processor, "tokenizer", processor)
    values: dict[str, Any] = dict(vocab_size=len(tokenizer))
    if model_type == "t5":
        return dict(values, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    if model_type == "whisper":
        start, end = _ids(tokenizer, "<|startoftranscript|>", "<|endoftext|>")
        return dict(values, decoder_start_token_id=start, bos_token_id=end, eos_token_id=end, pad_token_id=end,
                    begin_suppress_tokens=None, suppress_tokens=None)
    values.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    key = "n_positions" if model_type == "gpt2" else "max_position_embeddings"
    return dict(values, **{key: MAX_POSITIONS})


def _whisper_generation(processor, config) -> Any:
    """What a real Whisper checkpoint's generation_config.json holds for short-form transcription."""
    from transformers import GenerationConfig

    tokenizer = processor.tokenizer
    en, fr, translate, transcribe, no_timestamps = _ids(tokenizer, "<|en|>", "<|fr|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>")
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id, max_length=config.max_target_positions, is_multilingual=True,
        lang_to_id={"<|en|>": en, "<|fr|>": fr}, task_to_id={"translate": translate, "transcribe": transcribe},
        no_timestamps_token_id=no_timestamps, begin_suppress_tokens=[config.eos_token_id], suppress_tokens=[_ids(tokenizer, "<|nocaptions|>")[0]],
    )


def make_tiny_generative_model(model_type: str, seed: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer or processor) of a generative architecture, random weights drawn from `seed`."""
    import torch
    import transformers

    arch = GENERATIVE_ARCHITECTURES.get(model_type)
    if arch is None:
        raise NeuronExportError(f"unknown tiny generative architecture {model_type!r}; choose one of: {', '.join(GENERATIVE_ARCHITECTURES)}")
    processor = make_generative_tokenizer(model_type)
    config = transformers.AutoConfig.for_model(model_type, **_config_values(model_type, processor), **arch.tiny)
    torch.manual_seed(seed)
    model = getattr(transformers, head_class_name(model_type, supported_tasks(model_type)[0]))(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, WEIGHT_STD)
    if model_type == "whisper":
        model.generation_config = _whisper_generation(processor, config)
    return model, processor


def build_tiny_generative_model(model_type: str, out_dir, seed: int = 0) -> Path:
    model, processor = make_tiny_generative_model(model_type, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def build_memorised_gpt2(out_dir, seed: int = 0, steps: int = 150) -> Path:
    """A tiny GPT-2 trained for `steps` steps (seconds on a CPU core) to recite each sentence of
    STORY from its first words, ending it with the end-of-text token."""
    import torch
    import transformers

    tokenizer = make_generative_tokenizer("gpt2")
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=MAX_POSITIONS, n_embd=64, n_layer=2, n_head=4,
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config)
    # One row per sentence, each starting at position 0 (GPT-2's positions are learned), padded.
    sentences = [sentence.strip() + "." + tokenizer.eos_token for sentence in STORY.split(".") if sentence.strip()]
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
