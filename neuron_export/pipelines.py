"""pipeline(): a transformers pipeline that runs a compiled artifact.

transformers' Pipeline needs of its model only `config`, `device`, `dtype` and a call returning
the transformers output types, which a NeuronModel provides (generation pipelines: `generate()`
and `generation_config`, which the generative classes provide); the tokenizer, image processor or
feature extractor comes from the artifact folder.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

from .errors import NeuronExportError
from .modeling import model_class_for_artifact
from .registry import GENERATION_TASKS, TASKS, get_architecture

# transformers pipeline -> the task whose artifacts it runs (registry: TaskSpec.pipeline, GenerationTask.pipeline).
PIPELINE_TASKS = {spec.pipeline: name for name, spec in (*TASKS.items(), *GENERATION_TASKS.items()) if spec.pipeline}


def pipeline(task: str, model: Union[str, Path, Any], **pipeline_kwargs: Any):
    """transformers.pipeline(task) on a compiled model: `model` is an artifact folder or a loaded model class;
    `pipeline_kwargs` go to transformers.pipeline (e.g. top_k=, aggregation_strategy=)."""
    if task not in PIPELINE_TASKS:
        spec = TASKS.get(task) or GENERATION_TASKS.get(task)
        if spec is not None:
            raise NeuronExportError(f"{spec.no_pipeline}; call {spec.model_class} directly")
        raise NeuronExportError(f"pipeline task {task!r} is not supported; one of: {', '.join(PIPELINE_TASKS)}")
    if isinstance(model, (str, Path)):
        model = model_class_for_artifact(model).from_pretrained(model)
    if model.task != PIPELINE_TASKS[task]:
        raise NeuronExportError(f"{model.path} was compiled for {model.task}, not for {task}")

    import transformers

    processor = get_architecture(model.manifest.model_type).family.processor
    if processor == "AutoProcessor":  # speech: a tokenizer and a feature extractor
        loaded = transformers.AutoProcessor.from_pretrained(model.config_path)
        preprocessors = {"tokenizer": loaded.tokenizer, "feature_extractor": loaded.feature_extractor}
    elif processor != "AutoTokenizer":
        preprocessors = {"image_processor": getattr(transformers, processor).from_pretrained(model.config_path)}
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model.config_path)
        if "sequence_length" in model.manifest.shapes:
            # Pipelines that truncate (token-classification) then stop at the compiled length.
            tokenizer.model_max_length = min(tokenizer.model_max_length, model.manifest.shapes["sequence_length"])
        preprocessors = {"tokenizer": tokenizer}
    if model.can_generate():
        # The speech pipeline defaults to 5-beam search; the compiled models decode greedily or by sampling.
        pipeline_kwargs.setdefault("num_beams", 1)
    with _accepting(type(model).__name__):
        return transformers.pipeline(task, model=model, device=model.device, **preprocessors, **pipeline_kwargs)


@contextmanager
def _accepting(model_class_name: str) -> Iterator[None]:
    """Pipelines log an error for model classes outside transformers' own mappings; ours run the same outputs."""
    refusal = f"The model '{model_class_name}' is not supported"
    base_logger = logging.getLogger("transformers.pipelines.base")
    quiet = _DropMessagesStartingWith(refusal)
    base_logger.addFilter(quiet)
    try:
        yield
    finally:
        base_logger.removeFilter(quiet)


class _DropMessagesStartingWith(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)
