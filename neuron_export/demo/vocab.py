"""Tokenizers of the tiny demo models, built offline: an English WordPiece vocabulary for the text
encoders and a small CLIP BPE (trained here, deterministically) for the diffusion pipelines.

TRAP (transformers 5): tokenizers take their vocabulary as vocab= (and CLIP also merges= as a list
of pairs); vocab_file= / merges_file= are silently ignored and map every word to the unknown token.
Each builder checks its tokenizer on a probe sentence.
"""

from __future__ import annotations

from ..errors import NeuronExportError
from ..registry import ARCHITECTURES

TEXT_MAX_LENGTH = 128  # tokenizer model_max_length; position tables are at least this long


_ENGLISH_WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this
from or had by hot but some what there we can out other were all your when up use word how
said an each she which do their time if will way about many then them would write like so
these her long make thing see him two has look more day could go come did my sound no most
number who over know water than call first people may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form much great think say help low line before
turn cause same mean differ move right boy old too does tell sentence set three want air well
also play small end put home read hand port large spell add even land here must big high such
follow act why ask men change went light kind off need house picture try us again animal point
mother world near build self earth father head stand own page should country found answer
school grow study still learn plant cover food sun four thought let keep eye never last door
between city tree cross since hard start might story saw far sea draw left late run while press
close night real life few stop open seem together next white children begin got walk example
ease paper often always music those both mark book letter until mile river car feet care second
group carry took rain eat room friend began idea fish mountain north once base hear horse cut
sure watch color face wood main enough plain girl usual young ready above ever red list though
feel talk bird soon body dog family direct pose leave song measure state product black short
numeral class wind question happen complete ship area half rock order fire south problem piece
told knew pass farm top whole king size heard best hour better true during hundred am remember
step early hold west ground interest reach fast five sing listen six table travel less morning
ten simple several toward war lay against pattern slow center love person money serve appear
road map science rule govern pull cold notice voice fall power town fine certain fly unit lead
cry dark machine note wait plan figure star box noun field rest correct able pound done beauty
drive stood contain front teach week final gave green oh quick develop sleep warm free minute
strong special mind behind clear tail produce fact street inch lot nothing course stay wheel
full force blue object decide surface deep moon island foot yet busy test record boat common
gold possible plane age dry wonder laugh thousand ago ran check game shape yes cool miss brought
heat snow bed bring sit perhaps fill east weight language among cat mat sat movie film great
terrible awful wonderful amazing bad happy sad hate loved enjoyed boring fantastic excellent
poor worst paris london france england america york berlin germany john mary smith apple
google amazon microsoft company born lives capital hello world today tomorrow yesterday what's
photo astronaut riding computer phone model fast slower faster text image neuron compile
quick brown fox jump jumped lazy sentence embedding question answer
""".split()

_SUFFIXES = ("s", "es", "ed", "ing", "er", "est", "ly", "'s", "n't")
_PUNCTUATION = list(".,!?;:'\"()[]{}-_/\\@#$%&*+=<>|~`^")


def special_tokens(model_type: str) -> dict[str, str]:
    """Special token strings and their order (ids 0..4) for an architecture family."""
    if roberta_style(model_type):
        # RoBERTa layout: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4 (MPNet hard-codes padding_idx 1).
        return {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}
    return {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


def _text_vocab(model_type: str) -> dict[str, int]:
    tokens: list[str] = list(special_tokens(model_type).values())
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    tokens += chars + _PUNCTUATION
    tokens += ["##" + c for c in chars]
    tokens += ["##" + s for s in _SUFFIXES if s.isalpha()]
    tokens += _ENGLISH_WORDS
    vocab: dict[str, int] = {}
    for tok in tokens:
        if tok not in vocab:
            vocab[tok] = len(vocab)
    return vocab


def roberta_style(model_type: str) -> bool:
    """RoBERTa-style models number positions after the padding id (registry: reserved_positions)."""
    return ARCHITECTURES[model_type].reserved_positions is not None


def _model_input_names(model_type: str) -> list[str]:
    """The tokenizer's outputs: the architecture's inputs, in the tokenizer's usual order."""
    names = [spec.name for spec in ARCHITECTURES[model_type].inputs]
    return [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in names]


def make_wordpiece_tokenizer(model_type: str):
    from transformers import BertTokenizer  # tokenizers-backed in transformers 5

    special = special_tokens(model_type)
    # TRAP (transformers 5): the vocabulary must be passed as vocab=, vocab_file= is ignored.
    tok = BertTokenizer(
        vocab=_text_vocab(model_type),
        do_lower_case=True,
        unk_token=special["unk"],
        sep_token=special["sep"],
        pad_token=special["pad"],
        cls_token=special["cls"],
        mask_token=special["mask"],
        model_max_length=TEXT_MAX_LENGTH,
        model_input_names=_model_input_names(model_type),
    )
    # tokens that would be [UNK] mean the vocabulary was not picked up
    probe = tok.tokenize("the cat sat on the mat")
    if tok.unk_token in probe:  # pragma: no cover - guards against the vocab_file= trap
        raise NeuronExportError(f"internal error: demo tokenizer maps words to {tok.unk_token}: {probe}")
    return tok


_CLIP_WORDS = """
a an the of and with in on at by for to from photo picture painting drawing image portrait
cat dog bird horse cow fish astronaut robot man woman person child girl boy people riding
sitting standing running walking flying eating red blue green yellow black white orange purple
pink brown gray gold silver big small tiny large beautiful cute happy sad old new dark bright
city street house tree forest mountain river sea ocean beach sky sun moon star space planet
night day morning sunset snow rain cloud field garden flower car bike boat ship train plane
road bridge castle tower room table chair window door book cup food apple style art artist
oil watercolor digital realistic detailed highly high quality resolution 4k 8k hd render
cinematic lighting light shadow background landscape close up view top side front fantasy
sci fi futuristic vintage studio professional camera lens sharp focus trending masterpiece
""".split()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte -> a printable unicode character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _train_bpe_merges(words) -> list[tuple[str, str]]:
    """Plain BPE training (deterministic: ties broken by the pair itself) until every word is one
    symbol. Applying these merges by rank re-assembles each training word into a single token."""
    from collections import Counter

    segs = [[*w[:-1], w[-1] + "</w>"] for w in dict.fromkeys(words)]
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter = Counter()
        for seg in segs:
            counts.update(zip(seg, seg[1:]))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        a, b = best
        for i, seg in enumerate(segs):
            out, j = [], 0
            while j < len(seg):
                if j + 1 < len(seg) and seg[j] == a and seg[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(seg[j])
                    j += 1
            segs[i] = out


def _clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A tiny CLIP BPE vocabulary: the byte alphabet (plain and with </w>), the tokens produced by
    BPE merges trained on _CLIP_WORDS, then <|startoftext|> / <|endoftext|> last (as in CLIP).
    Every token a merge produces is in the vocabulary, so nothing maps to the unknown token, and
    every word of _CLIP_WORDS is a single token."""
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges = _train_bpe_merges(_CLIP_WORDS)
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def make_clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    # TRAP (transformers 5): vocab= / merges= (list of tuples); vocab_file= / merges_file= are ignored.
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    probe = tok.tokenize("a photo of a cat")
    if tok.unk_token in probe or len(probe) != 5:  # pragma: no cover - guards against the trap
        raise NeuronExportError(f"internal error: demo CLIP tokenizer does not tokenize words: {probe}")
    return tok


CTC_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"


def make_ctc_tokenizer():
    """A letter-level CTC tokenizer like wav2vec2-base-960h's: <pad> (the CTC blank), <s>, </s>, <unk>,
    "|" between words, then the letters."""
    import json
    import tempfile
    from pathlib import Path

    from transformers import Wav2Vec2CTCTokenizer  # Python-only: it reads its vocabulary from a file

    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *CTC_LETTERS])}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "vocab.json"
        path.write_text(json.dumps(vocab))
        tok = Wav2Vec2CTCTokenizer(str(path))
    if tok.decode(tok("HELLO WORLD")["input_ids"], group_tokens=False) != "HELLO WORLD":  # pragma: no cover - vocabulary check
        raise NeuronExportError("internal error: demo CTC tokenizer does not round-trip letters")
    return tok
