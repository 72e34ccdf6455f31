"""NeuronModelForXXX: compile (or load) an artifact and call it like the transformers model.

    model = NeuronModelForSequenceClassification.from_pretrained("demo:tiny-bert", export=True, sequence_length=64)
    model.save_pretrained("compiled/")
    model = NeuronModelForSequenceClassification.from_pretrained("compiled/")
    logits = model(**tokenizer("Hello", return_tensors="pt")).logits

A compiled model has static shapes. Smaller inputs are padded up to them axis by axis (padding.py:
input_ids with the pad token, masks and token type ids with 0, audio with silence, the batch, and
CLIP's text and image batches, with padding rows) and the padding is cut from the outputs again
(audio: the frames of the padding too), so results equal transformers' on the unpadded input where
the model takes an attention mask. Larger inputs are a clear error naming the compiled shape, except
the batch of a model compiled with dynamic_batch_size=True.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import shutil
import weakref
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import torch
from transformers import AutoConfig, PreTrainedConfig
from transformers import modeling_outputs
from transformers.utils import ModelOutput

from .artifact import CompiledModel, Manifest, load_artifact
from .errors import ArtifactError, InputMismatchError, NeuronExportError
from .options import ExportOptions
from .pretrained_folders import artifact_path, copy_artifact, export_to_temporary
from .padding import default_input, input_sizes, pad_to, target_size
from .registry import (ARCHITECTURES, FAMILIES, GENERATION_CLASSES, GENERATIVE_ARCHITECTURES, SENTENCE_TRANSFORMERS, TASKS,
                       modality_of_inputs, task_model_class, task_output_type)

# Preprocessor outputs that an architecture may not take (distilbert: token_type_ids; YOLOS ignores
# the pixel mask of its image processor); dropped then.
TOKENIZER_EXTRAS = frozenset({"token_type_ids", "special_tokens_mask", "offset_mapping", "overflow_to_sample_mapping", "length",
                              "pixel_mask"})


@dataclasses.dataclass
class SentenceEmbeddingOutput(ModelOutput):
    """What a sentence-transformers model returns: per-token and pooled (normalized if it does) embeddings;
    a CLIP folder's: the embeddings of its texts and of its images."""

    token_embeddings: Optional[torch.Tensor] = None
    sentence_embedding: Optional[torch.Tensor] = None
    text_embeds: Optional[torch.Tensor] = None
    image_embeds: Optional[torch.Tensor] = None


class NeuronModel:
    """Base class: a loaded artifact with the transformers calling convention."""

    task: ClassVar[str] = ""
    sentence_transformers: ClassVar[bool] = False
    output_type: ClassVar[type[ModelOutput]] = ModelOutput
    output_axes: ClassVar[dict[str, tuple]] = {}  # axes of each output (the rest: batch only)
    hidden_batch_axes: ClassVar[tuple[str, ...]] = ("batch_size",)  # leading rows of hidden states, flattened

    def __init__(self, compiled: CompiledModel, temporary_dir: Optional[Path] = None):
        self.compiled = compiled
        self.path = compiled.path
        self.manifest = compiled.manifest
        self._check_artifact_kind()
        self.config_path = _config_folder(self.path)  # config.json and the tokenizer / image processor files
        self.config = _load_config(self.config_path)
        self.main_input_name = compiled.input_names[0]
        self._inputs = {name: (tuple(spec.shape), tuple(spec.axes)) for name, spec in compiled.inputs.items()}
        self._compiled_sizes = {axis: size for shape, axes in self._inputs.values() for axis, size in zip(axes, shape)}
        self._family = _family(self.manifest.model_type)
        if not self.sentence_transformers:
            self.output_type = _output_type(task_output_type(self.manifest.task, self.manifest.model_type))
        self._pad_values = {name: 0 for name in self._inputs}
        if "input_ids" in self._pad_values:
            self._pad_values["input_ids"] = self._pad_token_id()
        self._output_axes = {name: self._axes_of_output(name) for name in compiled.output_names}
        if temporary_dir is not None:
            # An exported-but-not-saved model lives in a temporary folder: gone with the object.
            weakref.finalize(self, shutil.rmtree, str(temporary_dir), True)

    # ---- loading and saving -----------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model: Union[str, Path], export: bool = False, **options: Any) -> "NeuronModel":
        """Load an artifact folder, or with export=True compile `model` (hub id, model folder or demo:NAME)
        first; `options` are ExportOptions fields (backend=, sequence_length=, auto_cast=, optlevel=, ...)."""
        if not export:
            if options:
                raise NeuronExportError(
                    f"{', '.join(sorted(options))}: compile options apply with export=True; a compiled artifact's shapes and options are fixed"
                )
            return cls(_load(model))
        return cls._export(model, _export_options(cls, options))

    @classmethod
    def _export(cls, model: Union[str, Path], options: ExportOptions) -> "NeuronModel":
        from .sources import resolve_model_source

        source = resolve_model_source(model, options)
        is_sentence = source.library == "sentence_transformers"
        expected = class_name_for(options.task, is_sentence, source.model_type)
        if expected != cls.__name__:
            described = _describe(is_sentence, options.task) + ("" if is_sentence else f" of a {source.model_type}")
            raise NeuronExportError(f"{model} is {described}; use {_class_for(options.task, is_sentence, source.model_type)}")
        artifact, temporary = export_to_temporary(model, options)
        return cls(load_artifact(artifact), temporary_dir=temporary)

    def save_pretrained(self, save_directory: Union[str, Path]) -> Path:
        """Copy the artifact (model, manifest, config, tokenizer files) into `save_directory`.
        An artifact already there is replaced; another non-empty folder is refused."""
        return copy_artifact(self.path, save_directory)

    def _check_artifact_kind(self) -> None:
        task, model_type = self.manifest.task, self.manifest.model_type
        is_sentence = self.manifest.library == "sentence_transformers"
        if class_name_for(task, is_sentence, model_type) != type(self).__name__:
            raise ArtifactError(
                f"{self.path} was compiled for {_describe(is_sentence, task)}, not for {type(self).__name__}; "
                f"load it with {_class_for(task, is_sentence, model_type)}"
            )

    def _pad_token_id(self) -> int:
        text_config = getattr(self.config, "text_config", None) or self.config  # CLIP: its text tower's
        if getattr(text_config, "pad_token_id", None) is not None:
            return int(text_config.pad_token_id)
        from transformers import AutoTokenizer

        try:
            pad = AutoTokenizer.from_pretrained(self.config_path).pad_token_id
        except (OSError, ValueError):
            pad = None
        return 0 if pad is None else int(pad)

    # ---- calling ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.compiled.device

    @property
    def buckets(self) -> list[dict[str, int]]:
        """The compiled shapes of a bucketed artifact, smallest first ([] for one static shape)."""
        return self.compiled.buckets

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # auto-cast happens inside the compiled graph; outputs are fp32

    def to(self, device: Union[str, torch.device]) -> "NeuronModel":
        if torch.device(device) != self.device:
            raise NeuronExportError(f"this model was compiled for {self.device}; export it again with device={torch.device(device).type!r}")
        return self

    def eval(self) -> "NeuronModel":
        return self  # always inference

    @property
    def input_modalities(self) -> tuple[str, ...]:
        modality = modality_of_inputs(list(self._inputs)) or "text"
        return {"vision": ("image",), "text-image": ("text", "image")}.get(modality, (modality,))

    def can_generate(self) -> bool:
        return False  # encoders only; transformers' pipelines ask

    def __call__(self, **inputs: Any):
        return self.forward(**inputs)

    def forward(self, **inputs: Any):
        """Named inputs as the tokenizer / image processor returns them -> the transformers output type."""
        return_dict = inputs.pop("return_dict", None) is not False
        for flag in ("output_hidden_states", "output_attentions"):
            kind = flag.removeprefix("output_")
            if inputs.pop(flag, None) and not any(n.startswith(kind + ".") for n in self.compiled.output_names):
                raise NeuronExportError(f"{flag}=True: this model was compiled without {kind}; export it with {flag}=True")
        padded, sizes = self.pad_inputs(inputs)
        outputs = self.unpad_outputs(self.compiled(**padded), sizes)
        return outputs if return_dict else outputs.to_tuple()

    def pad_inputs(self, inputs: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """The inputs padded to the compiled shapes, and the size of each axis before padding (plus the
        output axes derived from them, e.g. audio frames)."""
        given = self._known_inputs(inputs)
        main = given.get(self.main_input_name)
        if not isinstance(main, torch.Tensor):
            raise InputMismatchError(f"input {self.main_input_name!r} is missing or not a tensor (tokenize with return_tensors='pt')")
        sizes = input_sizes(given, self._inputs)
        free_axes = (("batch_size",) if self.compiled.dynamic_batch else ()) + self.compiled.bucketed_axes
        targets = {axis: target_size(axis, size, given, self._inputs, free_axes) for axis, size in sizes.items()}
        padded = {}
        for name, (_, axes) in self._inputs.items():
            tensor = given[name] if name in given else default_input(name, axes, sizes, main.device)
            target = tuple(targets[axis] for axis in axes)
            padded[name] = tensor if tuple(tensor.shape) == target else pad_to(tensor, target, self._pad_values[name])
        for axis, derive in (self._family.derived_axes.items() if self._family else ()):
            sizes[axis] = derive(self.config, sizes)
        if self._family and self._family.positions_axis in sizes:
            sizes["positions"] = sizes[self._family.positions_axis]
        return padded, sizes

    def _known_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs the compiled model takes; preprocessor extras it does not take are dropped."""
        given = {}
        for name, value in inputs.items():
            if value is None or (name not in self._inputs and name in TOKENIZER_EXTRAS):
                continue
            if name in self._inputs:
                given[name] = value
            elif name == "attention_mask" and isinstance(value, torch.Tensor) and bool(value.all()):
                continue  # attends to everything: the same as no mask (audio models compiled without one)
            elif name == "attention_mask":
                raise InputMismatchError("this model was compiled without an attention mask (its checkpoint is used without one): "
                                         "pass inputs without padding, one per call or all of the same length")
            else:
                raise InputMismatchError(f"unexpected input {name!r}; this model takes {', '.join(self._inputs)}")
        return given

    def unpad_outputs(self, outputs: dict[str, torch.Tensor], sizes: dict[str, int]) -> ModelOutput:
        """The compiled outputs without the padding rows / tokens, as the transformers output type."""
        fields: dict[str, Any] = {}
        for name, tensor in outputs.items():
            tensor = self._strip(tensor, self._output_axes[name], sizes)
            group, _, index = name.partition(".")
            if index:  # hidden_states.0, .1, ... -> the tuple transformers returns
                fields[group] = fields.get(group, ()) + (tensor,)
            else:
                fields[name] = tensor
        return self.output_type(**fields)

    def _strip(self, tensor: torch.Tensor, axes: tuple, sizes: dict[str, int]) -> torch.Tensor:
        if isinstance(axes[0], tuple) and len(axes[0]) > 1:
            # Rows of several axes flattened (multiple-choice: batch x choices): unflatten, cut, flatten again.
            inner = tuple(self._compiled_sizes[axis] for axis in axes[0][1:])
            rows = tensor.reshape(-1, *inner, *tensor.shape[1:])
            return self._strip(rows, axes[0] + axes[1:], sizes).flatten(0, len(axes[0]) - 1)
        index = [slice(None)] * len(axes)
        for dim, axis in enumerate(axes):
            if axis in sizes and sizes[axis] < tensor.shape[dim]:
                index[dim] = slice(0, sizes[axis])
        return tensor[tuple(index)] if any(s != slice(None) for s in index) else tensor

    def _axes_of_output(self, name: str) -> tuple:
        group = name.partition(".")[0]
        rows = self.hidden_batch_axes if len(self.hidden_batch_axes) > 1 else self.hidden_batch_axes[0]
        if group == "hidden_states":
            return (rows, "positions")
        if group == "attentions":
            return (rows, None, "positions", "positions")
        return self.output_axes.get(group, ("batch_size",))

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v}" for k, v in self.manifest.shapes.items())
        return f"{type(self).__name__}({self.path}, backend={self.manifest.backend}, {shapes})"


class SentenceTransformersModel(NeuronModel):
    """A CLIP folder's model also embeds texts alone or images alone, as SentenceTransformer.encode does
    (the other output is then absent)."""

    def forward(self, **inputs: Any):
        from .sentence_clip import placeholder_modality

        inputs, absent = placeholder_modality(inputs, self._inputs, self._pad_values.get("input_ids", 0))
        if not absent:
            return super().forward(**inputs)
        return_dict = inputs.pop("return_dict", None) is not False
        outputs = super().forward(**inputs)
        outputs = self.output_type(**{name: value for name, value in outputs.items() if name not in absent})
        return outputs if return_dict else outputs.to_tuple()


@functools.cache
def model_class(name: str) -> type[NeuronModel]:
    """The NeuronModelFor* class of that name, made from its registry entry (one per task, plus the
    sentence-transformers one) the first time it is asked for."""
    if name == SENTENCE_TRANSFORMERS.model_class:
        spec, output_type, sentence = SENTENCE_TRANSFORMERS, SentenceEmbeddingOutput, True
    else:
        spec = next((t for t in TASKS.values() if t.model_class == name), None)
        if spec is None:
            raise AttributeError(f"no NeuronModel class {name!r}")
        output_type, sentence = _output_type(spec.output_type), False
    doc = f"A compiled {spec.task if sentence else spec.name} model with the transformers calling convention; returns {output_type.__name__}."
    attributes = dict(task=spec.task if sentence else spec.name, output_type=output_type, output_axes=spec.output_axes,
                      hidden_batch_axes=("batch_size",) if sentence else spec.hidden_batch_axes,
                      sentence_transformers=sentence, __module__=__name__, __qualname__=name, __doc__=doc)
    return type(name, (SentenceTransformersModel if sentence else NeuronModel,), attributes)


def __getattr__(name: str):
    return model_class(name)  # NeuronModelForSequenceClassification, ...


def class_name_for(task: Optional[str], is_sentence: bool, model_type: Optional[str] = None) -> Optional[str]:
    """The name of the class that runs artifacts of a task and architecture (None when no class does)."""
    if is_sentence:
        return SENTENCE_TRANSFORMERS.model_class if task in (SENTENCE_TRANSFORMERS.task, *SENTENCE_TRANSFORMERS.task_aliases) else None
    return task_model_class(task, model_type) if task in TASKS or model_type in GENERATIVE_ARCHITECTURES else None


def model_class_for_artifact(path: Union[str, Path]) -> type:
    """The NeuronModel class that loads an artifact folder (by its manifest's task, architecture and
    library; a generative artifact names its class)."""
    manifest = Manifest.read(artifact_path(path))
    if manifest.pipeline_class in GENERATION_CLASSES:
        from . import generation

        return getattr(generation, manifest.pipeline_class)
    name = class_name_for(manifest.task, manifest.library == "sentence_transformers", manifest.model_type)
    if name is None:
        raise ArtifactError(f"{path} was compiled for {manifest.task}, which no NeuronModel class runs")
    return model_class(name)


def _class_for(task: Optional[str], is_sentence: bool, model_type: Optional[str] = None) -> str:
    return class_name_for(task, is_sentence, model_type) or "load_artifact() (no NeuronModel class for it)"


def _output_type(name: str) -> type[ModelOutput]:
    """A transformers output class: a name in transformers.modeling_outputs, or a dotted path to a model's own."""
    if "." not in name:
        return getattr(modeling_outputs, name)
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _family(model_type: Optional[str]):
    arch = ARCHITECTURES.get(model_type or "")
    return arch.family if arch else None


def _describe(is_sentence: bool, task: Optional[str]) -> str:
    return "a sentence-transformers model" if is_sentence else f"task {task}"


def _export_options(cls: type, options: dict[str, Any]) -> ExportOptions:
    known = {f.name for f in dataclasses.fields(ExportOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise NeuronExportError(f"unknown option(s) {', '.join(unknown)}; export options are: {', '.join(sorted(known - {'task'}))}")
    tasks = _class_tasks(cls)
    task = options.get("task", cls.task)
    if task not in tasks:
        raise NeuronExportError(f"task={task!r}: this class compiles for {' or '.join(tasks)}; use the class of that task")
    return ExportOptions(**{**options, "task": task})


def _class_tasks(cls: type) -> list[str]:
    """The tasks whose artifacts a class runs, for some architecture (NeuronCLIPModel: zero-shot and CLIP's
    features); a NeuronModel or a generative class (generation/modeling.py)."""
    if getattr(cls, "sentence_transformers", False):
        return [cls.task, *SENTENCE_TRANSFORMERS.task_aliases]
    by_family = [task for family in FAMILIES for task, name in family.model_classes.items() if name == cls.__name__]
    return list(dict.fromkeys([cls.task, *(t.name for t in TASKS.values() if t.model_class == cls.__name__), *by_family]))


def _load(path: Union[str, Path]) -> CompiledModel:
    return load_artifact(artifact_path(path))


def _load_config(path: Path) -> PreTrainedConfig:
    """The transformers config saved with the artifact (id2label, pad_token_id, ...)."""
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path} has no readable transformers config: {str(error).splitlines()[0]}") from None


def _config_folder(path: Path) -> Path:
    """A sentence-transformers artifact may keep its transformer in a sub-folder (modules.json)."""
    if (path / "modules.json").is_file() and not (path / "config.json").is_file():
        from .sources import sentence_transformers_modules

        return path / sentence_transformers_modules(path)[0].get("path", "")
    return path
