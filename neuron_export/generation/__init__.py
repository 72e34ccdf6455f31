"""Compiled text generation: decoder LLMs (prefill + decode graphs with a static KV cache) and
encoder-decoders (T5, Whisper), with transformers' generate().

graphs.py: the traced modules; runtime.py: driving the compiled graphs; decoding.py: the token loop;
generate.py: generate() on a runtime; check.py: validation against transformers; modeling.py: the classes.
Importing this package imports transformers.
"""

from .modeling import NeuronGenerativeModel, NeuronModelForCausalLM, NeuronModelForSeq2SeqLM, NeuronWhisperForConditionalGeneration

__all__ = ["NeuronGenerativeModel", "NeuronModelForCausalLM", "NeuronModelForSeq2SeqLM", "NeuronWhisperForConditionalGeneration"]
