"""pipeline(): a transformers pipeline that runs a compiled artifact.

transformers' Pipeline needs of its model only `config`, `device`, `dtype` and a call returning
the transformers output types, which a NeuronModel provides; the tokenizer or image processor
comes from the artifact folder.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

from .errors import NeuronExportError
from .modeling import NeuronModel, model_class_for_artifact

# Each runs an artifact compiled for the task of the same name.
PIPELINE_TASKS = ("feature-extraction", "fill-mask", "text-classification", "token-classification", "image-classification")
VISION_TASKS = ("image-classification",)


def pipeline(task: str, model: Union[str, Path, NeuronModel], **pipeline_kwargs: Any):
    """transformers.pipeline(task) on a compiled model: `model` is an artifact folder or a loaded NeuronModel;
    `pipeline_kwargs` go to transformers.pipeline (e.g. top_k=, aggregation_strategy=)."""
    if task == "question-answering":
        raise NeuronExportError(
            "transformers 5 removed the question-answering pipeline; call NeuronModelForQuestionAnswering directly "
            "and take the argmax of start_logits / end_logits"
        )
    if task not in PIPELINE_TASKS:
        raise NeuronExportError(f"pipeline task {task!r} is not supported; one of: {', '.join(PIPELINE_TASKS)}")
    if not isinstance(model, NeuronModel):
        model = model_class_for_artifact(model).from_pretrained(model)
    if model.task != task:
        raise NeuronExportError(f"{model.path} was compiled for {model.task}, not for {task}")

    import transformers

    if task in VISION_TASKS:
        preprocessors = {"image_processor": transformers.AutoImageProcessor.from_pretrained(model.config_path)}
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model.config_path)
        if "sequence_length" in model.manifest.get("shapes", {}):
            # Pipelines that truncate (token-classification) then stop at the compiled length.
            tokenizer.model_max_length = min(tokenizer.model_max_length, model.manifest["shapes"]["sequence_length"])
        preprocessors = {"tokenizer": tokenizer}
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
