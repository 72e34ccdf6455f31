"""pipeline(): a transformers pipeline that runs a compiled artifact.

transformers' Pipeline needs of its model only `config`, `device`, `dtype` and a call returning
the transformers output types, which a NeuronModel provides; the tokenizer, image processor or
feature extractor comes from the artifact folder (processors.py), fitted to the compiled image size.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

from .errors import NeuronExportError
from .modeling import NeuronModel, model_class_for_artifact
from .processors import load_processor, pipeline_parts
from .registry import TASKS

# transformers pipeline -> the tasks whose artifacts it runs (registry: TaskSpec.pipeline).
PIPELINE_TASKS: dict[str, tuple[str, ...]] = {}
for _name, _spec in TASKS.items():
    if _spec.pipeline:
        PIPELINE_TASKS[_spec.pipeline] = PIPELINE_TASKS.get(_spec.pipeline, ()) + (_name,)


def pipeline(task: str, model: Union[str, Path, NeuronModel], **pipeline_kwargs: Any):
    """transformers.pipeline(task) on a compiled model: `model` is an artifact folder or a loaded NeuronModel;
    `pipeline_kwargs` go to transformers.pipeline (e.g. top_k=, aggregation_strategy=)."""
    if task not in PIPELINE_TASKS:
        if task in TASKS:
            spec = TASKS[task]
            raise NeuronExportError(f"{spec.no_pipeline}; call {spec.model_class} directly")
        raise NeuronExportError(f"pipeline task {task!r} is not supported; one of: {', '.join(PIPELINE_TASKS)}")
    if not isinstance(model, NeuronModel):
        model = model_class_for_artifact(model).from_pretrained(model)
    if model.manifest.task not in PIPELINE_TASKS[task]:
        raise NeuronExportError(f"{model.path} was compiled for {model.manifest.task}, not for {task}")

    import transformers

    shapes = model.manifest.shapes
    preprocessors = pipeline_parts(load_processor(model.config_path, model.manifest.model_type, shapes))
    tokenizer = preprocessors.get("tokenizer")
    if tokenizer is not None and "sequence_length" in shapes:
        # Pipelines that truncate (token-classification) then stop at the compiled length.
        tokenizer.model_max_length = min(tokenizer.model_max_length, shapes["sequence_length"])
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
