"""The Playground's logic: run a compiled artifact on a person's input next to eager PyTorch.

`load(path, demo_root)` gives a LoadedArtifact whose `view` is the registry's view kind of its task
and modality (neuron_export.registry.task_view); VIEW_RUNNERS maps each view kind to the function
that runs it on the page's inputs and returns the result with RunStats (compiled and eager latency,
how far apart their outputs are). One module per modality; html.py renders results. Nothing here
imports streamlit.
"""

from typing import Any, Callable

from .core import (
    TIMED_CALLS,
    TOP_K,
    LoadedArtifact,
    RunStats,
    artifact_view,
    load,
    placement,
    random_weights_demo,
    run_both,
)
from .diffusion import Generation, ImageSettings, generate_images, max_images
from .generation import T5_TASKS, Generated, chat, text_to_text, transcribe_speech
from .html import entities_html, entity_colors, highlight_html
from .text import (
    MAX_ANSWER_TOKENS,
    Answer,
    Segment,
    answer_question,
    choose,
    classify_text,
    embed_sentences,
    fill_mask,
    tag_tokens,
)
from .vision import candidate_labels, classify_image, classify_upload, encode_image, read_image, sample_image, zero_shot
from .audio import Clip, classify_audio, read_audio, read_wav, sample_audio, transcribe
from .scenes import Detection, Segments, detect_objects, draw_boxes, estimate_depth, segment

# View kind (registry TaskSpec.views) -> what runs it: (LoadedArtifact, *the page's inputs) -> (result..., RunStats).
# A new kind of output adds its runner here (run_both runs and compares the compiled and eager models;
# the RunStats it returns times them the benchmark's way when the page calls measure()) and its
# renderer to views/playground.py's VIEWS.
VIEW_RUNNERS: dict[str, Callable[..., Any]] = {
    "text-labels": classify_text,
    "entities": tag_tokens,
    "answer-span": answer_question,
    "masked-word": fill_mask,
    "similarity": embed_sentences,
    "choices": choose,
    "image-labels": classify_upload,
    "image-generation": generate_images,
    "chat": chat,
    "text-to-text": text_to_text,
    "speech-to-text": transcribe_speech,
    "audio-labels": classify_audio,
    "transcript": transcribe,
    "detection": detect_objects,
    "segmentation": segment,
    "depth": estimate_depth,
    "zero-shot": zero_shot,
}


def run_view(loaded: LoadedArtifact, *inputs: Any) -> Any:
    """Run the artifact's view on the page's inputs."""
    return VIEW_RUNNERS[loaded.view](loaded, *inputs)


__all__ = [
    "load", "LoadedArtifact", "RunStats", "placement", "artifact_view", "random_weights_demo", "run_both", "VIEW_RUNNERS", "run_view",
    "TIMED_CALLS", "TOP_K", "MAX_ANSWER_TOKENS", "classify_text", "tag_tokens", "Segment", "answer_question", "Answer",
    "fill_mask", "embed_sentences", "choose", "sample_image", "read_image", "classify_image", "classify_upload",
    "max_images", "generate_images", "ImageSettings", "Generation", "entities_html", "entity_colors", "highlight_html", "chat", "text_to_text",
    "transcribe_speech", "Generated", "T5_TASKS",
    "encode_image", "candidate_labels", "zero_shot", "Clip", "read_audio", "read_wav", "sample_audio", "classify_audio", "transcribe",
    "Detection", "Segments", "detect_objects", "draw_boxes", "segment", "estimate_depth",
]
