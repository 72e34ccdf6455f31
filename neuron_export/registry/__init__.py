"""The one registry of architectures, tasks and diffusion components.

Model classes, pipeline(), demo models, the playground's views and the test matrix are all derived
from the tables in this package; nothing else lists tasks. Importing it is cheap (no torch).
"""

from __future__ import annotations

from typing import Optional

from ..errors import NeuronExportError
from .architectures import ARCHITECTURES, TINY_IMAGE_SIZE, VISION_ENCODER, TEXT_ENCODER, Architecture, Family, config_value
from .architectures import AUDIO_ENCODER, FAMILIES, SPECTROGRAM_ENCODER, TEXT_IMAGE_ENCODER, config_attr, processor_image_size
from .diffusion import (
    DIFFUSERS_PIPELINES,
    DIFFUSION_TASKS,
    PIPELINE_CLASSES,
    DiffusionComponent,
    DiffusionPipelineSpec,
    DiffusionTask,
    diffusers_task,
    pipeline_task_of,
)
from .generation import (
    DECODER,
    DECODER_LM,
    ENCODER_DECODER,
    GENERATION_CLASSES,
    GENERATION_TASKS,
    GENERATIVE_ARCHITECTURES,
    SPEECH_SEQ2SEQ,
    TEXT_SEQ2SEQ,
    GenerationTask,
    sliding_window,
)
from .inputs import EXACT, PAD, BucketAxes, InputSpec
from .tasks import SENTENCE_TRANSFORMERS, TASKS, UNSERVED_TASKS, DemoSpec, SentenceTransformersSpec, TaskSpec


def get_architecture(model_type: str) -> Architecture:
    arch = ARCHITECTURES.get(model_type) or GENERATIVE_ARCHITECTURES.get(model_type)
    if arch is None:
        supported = sorted({*ARCHITECTURES, *GENERATIVE_ARCHITECTURES})
        raise NeuronExportError(f"architecture {model_type!r} is not supported; supported: {', '.join(supported)}")
    return arch


def task_spec(model_type: str, task: str) -> TaskSpec | GenerationTask:
    """The spec of `task` for an architecture: generative families read the generation table."""
    return (GENERATION_TASKS if get_architecture(model_type).family.generative else TASKS)[task]


def is_diffusion_task(task: Optional[str]) -> bool:
    return task in DIFFUSION_TASKS


def supported_tasks(model_type: str) -> list[str]:
    """Tasks an architecture can be exported for, e.g. supported_tasks("distilbert")."""
    if is_diffusion_task(model_type):
        return [model_type]
    arch = get_architecture(model_type)
    return sorted(t for t in arch.family.tasks if head_class_name(model_type, t))


def auto_class(task: str, model_type: Optional[str] = None):
    """The transformers Auto class of a task (of an architecture's family when given), imported from
    its module directly: the package's lazy attribute lookup is not safe while another thread (a
    dashboard rerun) is importing it."""
    from transformers.models.auto import modeling_auto

    spec = task_spec(model_type, task) if model_type else TASKS[task]
    return getattr(modeling_auto, spec.auto_class)


def head_class_name(model_type: str, task: str) -> Optional[str]:
    """Name of transformers' head class for (architecture, task), or None when it has none."""
    # The Auto class's lazy mapping is keyed by model_type; reading keys imports nothing.
    name = auto_class(task, model_type)._model_mapping._model_mapping.get(model_type)
    return name[0] if isinstance(name, (tuple, list)) else name


def check_task(model_type: str, task: str) -> TaskSpec | GenerationTask:
    tasks = supported_tasks(model_type)
    if task not in tasks:
        if task in UNSERVED_TASKS:
            why, example = UNSERVED_TASKS[task]
            raise NeuronExportError(f"task {task!r} is not exported by this tool ({why}); transformers runs it with e.g. {example}. "
                                    f"{model_type}'s tasks: {', '.join(tasks)}")
        serving = architectures_for(task)
        named = ", ".join(serving) if len(serving) <= 3 else "e.g. " + ", ".join(serving[:3])
        elsewhere = f"; {task} is exported for {named}" if serving else ""
        raise NeuronExportError(f"{model_type} does not support task {task!r}; its tasks: {', '.join(tasks)}{elsewhere}")
    return task_spec(model_type, task)


def architectures_for(task: str) -> list[str]:
    """The architectures that can be exported for `task` (encoders first, then generative ones)."""
    encoders = [m for m, arch in ARCHITECTURES.items() if task in arch.family.tasks and task in TASKS and head_class_name(m, task)]
    return encoders + [m for m, arch in GENERATIVE_ARCHITECTURES.items() if task in arch.family.tasks]


def task_model_class(task: str, model_type: Optional[str]) -> str:
    """The NeuronModelFor* class that runs artifacts of (task, architecture): the family's own, else the task's."""
    if model_type in GENERATIVE_ARCHITECTURES:  # automatic-speech-recognition: CTC encoders and Whisper
        return GENERATION_TASKS[task].model_class
    arch = ARCHITECTURES.get(model_type or "")
    return (arch.family.model_classes.get(task) if arch else None) or TASKS[task].model_class


def task_output_type(task: str, model_type: Optional[str]) -> str:
    """The transformers output type an architecture returns for a task (its own, its family's, else the task's)."""
    arch = ARCHITECTURES.get(model_type or "")
    own = (arch.output_types.get(task) or arch.family.output_types.get(task)) if arch else None
    return own or TASKS[task].output_type


def detect_task(model_type: str, architectures: Optional[list[str]]) -> str:
    """The task a checkpoint was saved for, from its config's `architectures` (head class name)."""
    tasks = supported_tasks(model_type)
    if architectures:
        head = architectures[0]
        # Longest suffix first: "ForImageClassificationWithTeacher" before "Model".
        candidates = sorted(((s, t) for t in tasks for s in task_spec(model_type, t).head_suffixes), key=lambda pair: -len(pair[0]))
        for suffix, task in candidates:
            if head.endswith(suffix):
                return task
    found = f"architectures {architectures}" if architectures else "no 'architectures' in config.json"
    raise NeuronExportError(f"cannot infer the task ({found}); pass --task, one of: {', '.join(tasks)}")


def task_view(task: Optional[str], modality: Optional[str], library: Optional[str] = None,
              model_class: Optional[str] = None) -> Optional[str]:
    """The playground view of an artifact of `task` and input modality (or of the generative model
    class that runs it: the artifact's pipeline_class), or None when there is none."""
    if model_class in GENERATION_CLASSES:
        return next(iter(GENERATION_CLASSES[model_class].views.values()))
    if is_diffusion_task(task):
        return DIFFUSION_TASKS[task].views.get("diffusion")
    if library == "sentence_transformers":
        return SENTENCE_TRANSFORMERS.views.get(modality or "")
    spec = TASKS.get(task or "")
    return spec.views.get(modality or "") if spec else None


def modality_of_inputs(input_names: list[str]) -> Optional[str]:
    """The modality of a compiled model, from its input names (the first family that takes them all)."""
    for family in FAMILIES:
        if input_names and set(input_names) <= {spec.name for spec in family.inputs}:
            return family.modality
    return None


__all__ = [
    "ARCHITECTURES", "TASKS", "DIFFUSION_TASKS", "DIFFUSERS_PIPELINES", "PIPELINE_CLASSES", "SENTENCE_TRANSFORMERS",
    "TEXT_ENCODER", "VISION_ENCODER", "AUDIO_ENCODER", "SPECTROGRAM_ENCODER", "TEXT_IMAGE_ENCODER", "FAMILIES", "UNSERVED_TASKS",
    "TINY_IMAGE_SIZE", "config_attr", "processor_image_size", "architectures_for", "task_model_class", "task_output_type", "Architecture", "Family", "InputSpec", "TaskSpec", "DemoSpec",
    "DiffusionComponent", "DiffusionPipelineSpec", "DiffusionTask", "SentenceTransformersSpec", "config_value",
    "get_architecture", "supported_tasks", "auto_class", "head_class_name", "check_task", "detect_task",
    "is_diffusion_task", "task_view", "modality_of_inputs", "pipeline_task_of", "BucketAxes", "PAD", "EXACT",
    "task_spec", "GENERATION_TASKS", "GENERATION_CLASSES", "GENERATIVE_ARCHITECTURES", "GenerationTask", "DECODER",
    "ENCODER_DECODER", "DECODER_LM", "TEXT_SEQ2SEQ", "SPEECH_SEQ2SEQ", "sliding_window",
    "diffusers_task",
]
