"""The preprocessor saved with an artifact (tokenizer, image processor, feature extractor or a processor
holding several), made to produce the compiled shapes, and handed to transformers' pipelines.

A compiled vision model takes one image size. An image processor that keeps the aspect ratio (YOLOS)
or was configured for another size would make images the model refuses, so the image processor is
set to the compiled height x width when it would not make it already.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from .errors import NeuronExportError, first_line
from .registry import ARCHITECTURES, processor_image_size

# The parts of a processor, under the keyword transformers' pipelines take them by.
PIPELINE_PARTS = ("tokenizer", "image_processor", "feature_extractor")


def load_processor(folder: Path, model_type: str, shapes: Optional[dict[str, int]] = None):
    """The preprocessor of an artifact (its family's Auto class), fitted to the compiled image size."""
    arch = ARCHITECTURES.get(model_type)
    auto_name = arch.family.processor if arch else "AutoTokenizer"
    try:
        processor = open_preprocessor(folder, auto_name)
    except Exception as error:  # transformers raises many types for missing / broken files
        kind = " ".join(re.findall("[A-Z][a-z]+", auto_name.removeprefix("Auto"))).lower() or "processor"  # "image processor"
        raise NeuronExportError(f"the artifact's {kind} files cannot be loaded: {first_line(error)}") from None
    if shapes and {"height", "width"} <= set(shapes):
        fit_image_processor(getattr(processor, "image_processor", processor), int(shapes["height"]), int(shapes["width"]))
    return processor


def open_preprocessor(folder: Path, auto_name: str, **keywords: Any):
    """`transformers.<auto_name>.from_pretrained(folder)`; an audio classifier's folder has a feature
    extractor and no tokenizer, which AutoProcessor wants for its model type (Wav2Vec2Processor): the
    feature extractor then. Raises the processor's own error when neither loads."""
    import transformers

    try:
        return getattr(transformers, auto_name).from_pretrained(folder, **keywords)
    except Exception as error:  # transformers raises many types for missing / broken files
        if auto_name != "AutoProcessor":
            raise
        processor_error = error
    try:
        return transformers.AutoFeatureExtractor.from_pretrained(folder, **keywords)
    except Exception:  # not one either: the processor's error says more
        raise processor_error from None


def fit_image_processor(image_processor, height: int, width: int) -> None:
    """Make `image_processor` produce height x width images (in place), or say why it cannot."""
    if not hasattr(image_processor, "to_dict") or processor_image_size(image_processor.to_dict()) == (height, width):
        return
    size = dict(image_processor.to_dict().get("size") or {})
    if set(k for k, v in size.items() if v is not None) == {"shortest_edge"} and height == width:
        image_processor.size = {"shortest_edge": height}  # processors that resize by the shortest edge only
    else:
        image_processor.size = {"height": height, "width": width}
    if getattr(image_processor, "do_center_crop", False):
        image_processor.crop_size = {"height": height, "width": width}
    from PIL import Image

    made = tuple(image_processor(Image.new("RGB", (width + 3, height + 5)), return_tensors="pt")["pixel_values"].shape[-2:])
    if made != (height, width):
        raise NeuronExportError(f"the image processor makes {made[0]}x{made[1]} images, not the compiled {height}x{width}")


def pipeline_parts(processor) -> dict[str, Any]:
    """The keywords of transformers.pipeline for a preprocessor: tokenizer=, image_processor=, feature_extractor=."""
    parts = {name: getattr(processor, name) for name in PIPELINE_PARTS if getattr(processor, name, None) is not None}
    if parts:
        return parts  # a processor holding several
    from transformers import FeatureExtractionMixin, ImageProcessingMixin

    if isinstance(processor, ImageProcessingMixin):
        return {"image_processor": processor}
    if isinstance(processor, FeatureExtractionMixin):
        return {"feature_extractor": processor}
    return {"tokenizer": processor}
