"""NeuronModelForCausalLM, NeuronModelForSeq2SeqLM, NeuronWhisperForConditionalGeneration: a
compiled generative artifact with transformers' generate().

    model = NeuronModelForCausalLM.from_pretrained("demo:tiny-llama", export=True, sequence_length=64)
    ids = tokenizer("Hello", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=20, do_sample=True, top_p=0.9, streamer=TextStreamer(tokenizer))

generate() takes transformers' arguments (max_new_tokens, do_sample, temperature, top_k, top_p,
repetition_penalty, eos_token_id, pad_token_id, streamer, generation_config, ...) on top of the
model's generation_config.json, and returns what transformers returns. Beam search and the rarer
logits processors are refused by name. A prompt plus the new tokens beyond the compiled
sequence_length is an error naming it.
"""

from __future__ import annotations

import shutil
import weakref
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import torch
from transformers import AutoConfig, GenerationConfig
from transformers.generation.utils import GenerateDecoderOnlyOutput, GenerateEncoderDecoderOutput

from ..artifact import Manifest
from ..errors import ArtifactError, NeuronExportError
from ..modeling import _export_options
from ..pretrained_folders import artifact_path, copy_artifact, export_to_temporary
from ..registry import GENERATION_CLASSES
from .decoding import Decoded, generation_settings
from .generate import generate_decoder, generate_encoder_decoder
from .runtime import DecoderRuntime, EncoderDecoderRuntime


class NeuronGenerativeModel:
    """Base class: a generative artifact (several compiled graphs) and its configs."""

    task: ClassVar[str] = ""
    main_input_name: ClassVar[str] = "input_ids"

    def __init__(self, path: Path, temporary_dir: Optional[Path] = None):
        self.path = Path(path)
        self.manifest = Manifest.read(self.path)
        if self.manifest.pipeline_class != type(self).__name__:
            owner = GENERATION_CLASSES.get(self.manifest.pipeline_class or "")
            use = owner.model_class if owner else f"the class of its task ({self.manifest.task})"
            raise ArtifactError(f"{self.path} was compiled for {self.manifest.task}, not for {type(self).__name__}; load it with {use}")
        self.config_path = self.path
        self.config = AutoConfig.from_pretrained(self.path)
        try:
            self.generation_config = GenerationConfig.from_pretrained(self.path)
        except OSError:  # no generation_config.json: transformers derives one from the model config
            self.generation_config = GenerationConfig.from_model_config(self.config)
        self.runtime = self._runtime()
        if temporary_dir is not None:
            # An exported-but-not-saved model lives in a temporary folder: gone with the object.
            weakref.finalize(self, shutil.rmtree, str(temporary_dir), True)

    def _runtime(self):
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, model: Union[str, Path], export: bool = False, **options: Any):
        """Load an artifact folder, or with export=True compile `model` (hub id, model folder or demo:NAME)
        first; `options` are ExportOptions fields (sequence_length=, batch_size=, backend=, ...)."""
        if not export:
            if options:
                raise NeuronExportError(
                    f"{', '.join(sorted(options))}: compile options apply with export=True; a compiled artifact's shapes and options are fixed"
                )
            return cls(artifact_path(model))
        artifact, temporary = export_to_temporary(model, _export_options(cls, options))
        return cls(artifact, temporary_dir=temporary)

    def save_pretrained(self, save_directory: Union[str, Path]) -> Path:
        return copy_artifact(self.path, save_directory)

    @property
    def device(self) -> torch.device:
        return torch.device(self.manifest.device)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def batch_size(self) -> int:
        return int(self.manifest.shapes["batch_size"])

    @property
    def sequence_length(self) -> int:
        return int(self.manifest.shapes["sequence_length"])

    def to(self, device: Union[str, torch.device]) -> "NeuronGenerativeModel":
        if torch.device(device) != self.device:
            raise NeuronExportError(f"this model was compiled for {self.device}; export it again with device={torch.device(device).type!r}")
        return self

    def eval(self) -> "NeuronGenerativeModel":
        return self

    def can_generate(self) -> bool:
        return True

    def _result(self, decoded: Decoded, config: GenerationConfig, output_type, sequences: torch.Tensor):
        if not config.return_dict_in_generate:
            return sequences
        return output_type(sequences=decoded.sequences, scores=tuple(decoded.scores) or None, logits=tuple(decoded.logits) or None)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v}" for k, v in self.manifest.shapes.items())
        return f"{type(self).__name__}({self.path}, backend={self.manifest.backend}, {shapes})"


class NeuronModelForCausalLM(NeuronGenerativeModel):
    """A decoder LLM compiled as prompt graph(s) and a decode graph with a static KV cache."""

    task = "text-generation"

    def _runtime(self) -> DecoderRuntime:
        pad = self.generation_config.pad_token_id if self.generation_config.pad_token_id is not None else self.config.pad_token_id
        return DecoderRuntime.load(self.path, self.manifest.components, int(pad or 0))

    def generate(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                 generation_config: Optional[GenerationConfig] = None, streamer: Any = None, **kwargs: Any):
        """transformers' generate for a decoder LM: the prompt as given, then the new tokens."""
        if input_ids is None:
            raise NeuronExportError("generate() needs input_ids (tokenize the prompt with return_tensors='pt')")
        config = generation_settings(self.generation_config, generation_config, kwargs)
        decoded = generate_decoder(self.runtime, input_ids, attention_mask, config, streamer)
        return self._result(decoded, config, GenerateDecoderOnlyOutput, decoded.sequences)


class NeuronModelForSeq2SeqLM(NeuronGenerativeModel):
    """An encoder-decoder (T5) compiled as its encoder graph and a one-token decoder graph."""

    task = "text2text-generation"

    def _runtime(self) -> EncoderDecoderRuntime:
        return EncoderDecoderRuntime.load(self.path, {"input_ids": int(self.config.pad_token_id or 0)})

    def generate(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                 generation_config: Optional[GenerationConfig] = None, streamer: Any = None, **kwargs: Any):
        """transformers' generate for an encoder-decoder: the decoder start token, then the new tokens."""
        if input_ids is None:
            raise NeuronExportError("generate() needs input_ids (tokenize the text with return_tensors='pt')")
        config = generation_settings(self.generation_config, generation_config, kwargs)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask if attention_mask is not None else torch.ones_like(input_ids)}
        start = torch.full((input_ids.shape[0], 1), int(config.decoder_start_token_id), dtype=torch.long)
        decoded = generate_encoder_decoder(self.runtime, inputs, start, config, streamer)
        return self._result(decoded, config, GenerateEncoderDecoderOutput, decoded.sequences)


class NeuronWhisperForConditionalGeneration(NeuronGenerativeModel):
    """Whisper compiled as its encoder graph and a one-token decoder graph; short-form transcription
    (and translation) with transformers' own choice of prompt tokens (language, task, no timestamps)."""

    task = "automatic-speech-recognition"
    main_input_name = "input_features"

    def _runtime(self) -> EncoderDecoderRuntime:
        return EncoderDecoderRuntime.load(self.path, {})

    def generate(self, input_features: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                 generation_config: Optional[GenerationConfig] = None, streamer: Any = None, language: Any = None,
                 task: Optional[str] = None, return_timestamps: Optional[bool] = None, **kwargs: Any):
        """transformers' WhisperForConditionalGeneration.generate for up to 30 s of audio: the new tokens
        (the prompt tokens too with return_dict_in_generate=True)."""
        from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

        if input_features is None:
            raise NeuronExportError("generate() needs input_features (from the model's processor, return_tensors='pt')")
        if return_timestamps:
            raise NeuronExportError("return_timestamps: the compiled Whisper transcribes without timestamps")
        config = generation_settings(self.generation_config, generation_config, kwargs)
        config.return_timestamps = False
        try:  # transformers' checks and defaults for language= and task=
            WhisperGenerationMixin._set_language_and_task(language, task, None, config)
            prompt_tokens = self._prompt_tokens(input_features, config)
        except ValueError as error:
            raise NeuronExportError(str(error).split(". ")[0]) from None
        decoded = generate_encoder_decoder(self.runtime, {"input_features": input_features}, prompt_tokens, config, streamer)
        return self._result(decoded, config, GenerateEncoderDecoderOutput, decoded.sequences[:, prompt_tokens.shape[1]:])

    def _prompt_tokens(self, input_features: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
        """transformers' own choice of the decoder prompt: start, language (detected when not given), task, no timestamps."""
        from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

        frames = int(self.runtime.encoder.inputs["input_features"].shape[-1])
        # It calls back detect_language (below) when the language is neither given nor in the config.
        return WhisperGenerationMixin._retrieve_init_tokens(self, input_features, batch_size=input_features.shape[0],
                                                            generation_config=config, config=self.config,
                                                            num_segment_frames=frames, kwargs={})

    def detect_language(self, input_features: torch.Tensor, encoder_outputs: Any = None,
                        generation_config: Optional[GenerationConfig] = None, num_segment_frames: int = 3000) -> torch.Tensor:
        """The most likely language token per row after the start token (transformers' rule)."""
        config = generation_config or self.generation_config
        self.runtime.start({"input_features": input_features})
        start = torch.full((input_features.shape[0],), int(config.decoder_start_token_id), dtype=torch.long)
        logits = self.runtime.step(start).float()
        languages = torch.tensor(list(config.lang_to_id.values()))
        blocked = torch.ones(logits.shape[-1], dtype=torch.bool)
        blocked[languages] = False
        return logits.masked_fill(blocked, -float("inf")).argmax(-1)
