"""The images an image-generation request takes besides its prompt, by the role the registry gives them
(DiffusionPipelineSpec.images: "init", "mask", "control"): an upload or the example image of the role
(neuron_export.diffusion.requests.example_image), fitted to the size the pipeline was compiled for. A
mask is white where to repaint: the union of an uploaded mask, a rectangle and painted strokes.

Nothing here imports streamlit.
"""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np

from neuron_export.diffusion.requests import example_image
from neuron_export.errors import NeuronExportError

ROLE_NAMES = {"init": "init image", "mask": "mask", "control": "control image"}
# The middle half of the image, as fractions of its width and height (left, top, right, bottom): the example mask's.
DEFAULT_RECTANGLE = (0.25, 0.25, 0.75, 0.75)
OVERLAY_COLOR = (255, 40, 40)  # the mask drawn over the init image, half transparent


def role_name(role: str) -> str:
    """What a role's image is called on the page."""
    return ROLE_NAMES.get(role, f"{role} image")


def fit_image(image, role: str, height: int, width: int):
    """The image in the mode its role needs ("L" for a mask, RGB otherwise) at width x height (the compiled size)."""
    image = image.convert("L" if role == "mask" else "RGB")
    return image if image.size == (width, height) else image.resize((width, height))


def role_image(role: str, upload: Optional[Any], height: int, width: int, seed: int = 0):
    """The uploaded image of a role fitted to the size, or the role's example image without one."""
    if upload is None:
        return example_image(role, height, width, seed)
    return fit_image(upload, role, height, width)


def mask_image(height: int, width: int, upload=None, rectangle: Optional[Sequence[float]] = None, painted=None):
    """A mask ("L", white where to repaint) of height x width: the union of an uploaded mask (its bright
    pixels), a rectangle (left, top, right, bottom as fractions of the image) and painted strokes (an RGBA
    array of any size whose opaque pixels were painted). NeuronExportError when all three are empty."""
    from PIL import Image

    mask = np.zeros((height, width), dtype=bool)
    if upload is not None:
        mask |= np.asarray(fit_image(upload, "mask", height, width)) >= 128
    if rectangle is not None:
        left, top, right, bottom = rectangle
        mask[round(top * height):round(bottom * height), round(left * width):round(right * width)] = True
    if painted is not None and np.asarray(painted).ndim == 3:
        alpha = Image.fromarray(np.asarray(painted)[..., 3].astype(np.uint8)).resize((width, height), Image.BOX)  # area: no blur
        mask |= np.asarray(alpha) >= 128  # as for an upload: resizing blurs the edge, half-covered pixels count
    if not mask.any():
        raise NeuronExportError("The mask is empty: upload one, draw a rectangle or paint where the image should change.")
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


def mask_overlay(image, mask):
    """The image with the mask's area tinted (half transparent), to show what will be repainted."""
    from PIL import Image

    base = image.convert("RGB")
    mask = mask.convert("L").resize(base.size)
    tint = Image.new("RGB", base.size, OVERLAY_COLOR)
    return Image.composite(Image.blend(base, tint, 0.5), base, mask)


def read_upload(upload) -> Optional[Any]:
    """A PIL image from an uploaded file (None without one); a file that is no image is a one-line error."""
    if upload is None:
        return None
    from .vision import read_image

    return read_image(upload)


def png_bytes(image) -> bytes:
    """The image as a PNG file, for a download."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
