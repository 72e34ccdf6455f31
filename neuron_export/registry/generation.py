"""Generative models: decoder LLMs and encoder-decoders (T5, Whisper), compiled as several graphs.

A decoder LLM compiles a prompt graph per prefill length and a one-token decode graph that keeps a
static KV cache as state; an encoder-decoder compiles its encoder (which also projects the encoder
states into every decoder layer's cross-attention keys and values) and a one-token decoder graph
(export/generation.py). Their tasks live in their own table: a task name such as
automatic-speech-recognition means an encoder-decoder for Whisper, whatever an encoder family
means by it. Adding an architecture of an existing family is one entry in GENERATIVE_ARCHITECTURES.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .architectures import Architecture, Family, config_value
from .inputs import PAD, BucketAxes, InputSpec
from .tasks import DemoSpec

DECODER = "decoder"  # prefill graph(s) + decode graph, sharing the KV cache
ENCODER_DECODER = "encoder-decoder"  # encoder graph + decoder graph, cross-attention K/V as state


@dataclass(frozen=True)
class GenerationTask:
    name: str
    auto_class: str  # the transformers Auto class of the eager model
    head_suffixes: tuple[str, ...]  # config.architectures suffixes that identify the task
    model_class: str  # the Neuron* class that runs an artifact of the task
    kind: str  # DECODER | ENCODER_DECODER
    pipeline: Optional[str]  # the transformers pipeline that runs it, when transformers has one
    views: dict[str, str] = field(default_factory=dict)  # modality -> playground view
    no_pipeline: str = "transformers has no pipeline for it"  # said when pipeline is None
    demo: Optional[DemoSpec] = None


GENERATION_TASKS: dict[str, GenerationTask] = {
    t.name: t
    for t in (
        GenerationTask(
            "text-generation", "AutoModelForCausalLM", ("ForCausalLM", "LMHeadModel"), "NeuronModelForCausalLM", DECODER,
            "text-generation", views={"text": "chat"},
            demo=DemoSpec("demo:tiny-llama", "llama", "Tiny Llama chat model (byte-fallback BPE tokenizer with a chat template)"),
        ),
        GenerationTask(
            "text2text-generation", "AutoModelForSeq2SeqLM", ("ForConditionalGeneration",), "NeuronModelForSeq2SeqLM",
            ENCODER_DECODER, None, views={"text": "text-to-text"},
            no_pipeline="transformers 5 removed the text2text-generation, summarization and translation pipelines",
            demo=DemoSpec("demo:tiny-t5", "t5", "Tiny T5 text-to-text model (summarize / translate prompts)"),
        ),
        GenerationTask(
            "automatic-speech-recognition", "AutoModelForSpeechSeq2Seq", ("ForConditionalGeneration",),
            "NeuronWhisperForConditionalGeneration", ENCODER_DECODER, "automatic-speech-recognition",
            views={"audio": "speech-to-text"},
            demo=DemoSpec("demo:tiny-whisper", "whisper", "Tiny Whisper speech recognizer (1-second clips, 16 mel bins)"),
        ),
    )
}
GENERATION_CLASSES: dict[str, GenerationTask] = {t.model_class: t for t in GENERATION_TASKS.values()}

_PROMPT = (
    InputSpec("input_ids", ("batch_size", "sequence_length"), "token_ids"),
    InputSpec("attention_mask", ("batch_size", "sequence_length"), "attention_mask"),
)

# What every generative family shares: logits within 1e-3 (optimum-neuron's default), neuronx-cc's transformer mode.
_GENERATIVE: dict[str, Any] = dict(atol=1e-3, neuron_model_type="transformer", generative=True)

DECODER_LM = Family(
    name="decoder-lm", modality="text", inputs=_PROMPT, tasks=("text-generation",), processor="AutoTokenizer",
    default_shapes={"batch_size": 1},
    # The KV cache holds the prompt and the generated tokens: at most the model's positions.
    shape_limits={"sequence_length": "max_position_embeddings"}, **_GENERATIVE,
    # --sequence_length 64,256: a prompt graph per length (a prompt runs on the smallest that holds it), a cache of the largest
    bucketable=(BucketAxes(("sequence_length",), PAD),),
)
TEXT_SEQ2SEQ = Family(
    name="text-seq2seq", modality="text", inputs=_PROMPT, tasks=("text2text-generation",), processor="AutoTokenizer",
    default_shapes={"batch_size": 1}, **_GENERATIVE,  # relative positions: no length limit
)
SPEECH_SEQ2SEQ = Family(
    name="speech-seq2seq", modality="audio", tasks=("automatic-speech-recognition",), processor="AutoProcessor",
    inputs=(InputSpec("input_features", ("batch_size", "num_mel_bins", "audio_frames"), "gaussian", "float32"),),
    default_shapes={"batch_size": 1, "sequence_length": config_value("max_target_positions", default=448)},
    shape_limits={"sequence_length": "max_target_positions"}, **_GENERATIVE,
)

# Tiny configs of the demo and test models: 2 layers, grouped-query attention where the architecture has it.
_LLAMA_LIKE: dict[str, Any] = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2)

GENERATIVE_ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        Architecture("gpt2", DECODER_LM, tiny=dict(n_embd=32, n_layer=2, n_head=2, n_inner=64)),
        Architecture("llama", DECODER_LM, tiny=_LLAMA_LIKE),
        Architecture("mistral", DECODER_LM, tiny=dict(_LLAMA_LIKE, sliding_window=None)),
        Architecture("qwen2", DECODER_LM, tiny=_LLAMA_LIKE),
        Architecture("qwen3", DECODER_LM, tiny=dict(_LLAMA_LIKE, head_dim=8)),
        Architecture("phi3", DECODER_LM, tiny=dict(_LLAMA_LIKE, sliding_window=None)),
        Architecture("gemma", DECODER_LM, tiny=dict(_LLAMA_LIKE, head_dim=8)),
        Architecture("t5", TEXT_SEQ2SEQ, tiny=dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                                                   relative_attention_num_buckets=8)),
        Architecture("whisper", SPEECH_SEQ2SEQ, tiny=dict(
            d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=50, max_target_positions=64,
        )),
    )
}


def sliding_window(config: Any) -> Optional[int]:
    """The attention window of a decoder whose layers use one (Mistral), else None: the compiled
    graphs attend to the whole cache, so the cache may not be longer than the window."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return window if isinstance(window, int) else None
