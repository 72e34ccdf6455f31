"""Dense vision views: what is where in an image. Boxes (object detection), a class per pixel
(segmentation) and a depth per pixel (depth estimation), post-processed by the artifact's image
processor to the input image's size, as transformers' pipelines do."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .core import LoadedArtifact, RunStats, label_name, run_both
from .html import ENTITY_COLORS
from .vision import encode_image, read_image

MAX_BOXES = 50  # boxes kept per image, best first (the page's threshold slider filters them)
MASK_OPACITY = 0.55


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels


def detect_objects(loaded: LoadedArtifact, upload) -> tuple[object, list[Detection], RunStats]:
    """The detection view: the image and every box the model predicts, best first (no threshold yet)."""
    image = read_image(upload)
    (output,), stats = run_both(loaded, [encode_image(loaded, image)])
    found = loaded.processor.post_process_object_detection(output, threshold=0.0, target_sizes=[(image.height, image.width)])[0]
    detections = [Detection(label_name(loaded.model.config, int(label)), float(score), tuple(float(v) for v in box))
                  for score, label, box in zip(found["scores"], found["labels"], found["boxes"])]
    return image, sorted(detections, key=lambda d: -d.score)[:MAX_BOXES], stats


def draw_boxes(image, detections: list[Detection]):
    """A copy of the image with each box and its "label score" drawn, one colour per label."""
    from PIL import ImageDraw

    drawn = image.convert("RGB").copy()
    draw = ImageDraw.Draw(drawn)
    colors = label_colors(d.label for d in detections)
    width = max(1, round(min(image.size) / 150))
    for detection in detections:
        x0, y0, x1, y1 = detection.box
        draw.rectangle([x0, y0, x1, y1], outline=colors[detection.label], width=width)
        draw.text((x0 + width + 1, y0 + width), f"{detection.label} {detection.score:.0%}", fill=colors[detection.label])
    return drawn


def label_colors(labels) -> dict[str, str]:
    """A fixed colour per label, in sorted order."""
    return {label: ENTITY_COLORS[i % len(ENTITY_COLORS)] for i, label in enumerate(sorted(set(labels)))}


@dataclass(frozen=True)
class Segments:
    labels: np.ndarray  # class id per pixel of the input image
    legend: list[tuple[str, str, float]]  # (label, colour, share of the image), largest first


def segment(loaded: LoadedArtifact, upload) -> tuple[object, object, Segments, RunStats]:
    """The segmentation view: the image, the image with its class mask overlaid, and the legend."""
    image = read_image(upload)
    (output,), stats = run_both(loaded, [encode_image(loaded, image)])
    labels = loaded.processor.post_process_semantic_segmentation(output, target_sizes=[(image.height, image.width)])[0].numpy()
    ids, counts = np.unique(labels, return_counts=True)
    names = {int(i): label_name(loaded.model.config, int(i)) for i in ids}
    colors = label_colors(names.values())
    legend = sorted(((names[int(i)], colors[names[int(i)]], float(c) / labels.size) for i, c in zip(ids, counts)), key=lambda x: -x[2])
    return image, overlay(image, labels, {i: colors[n] for i, n in names.items()}), Segments(labels, legend), stats


def overlay(image, labels: np.ndarray, colors: dict[int, str]):
    """The image with each pixel tinted by its class colour."""
    from PIL import Image, ImageColor

    tint = np.zeros((*labels.shape, 3), dtype="float32")
    for label, color in colors.items():
        tint[labels == label] = ImageColor.getrgb(color)
    base = np.asarray(image.convert("RGB"), dtype="float32")
    return Image.fromarray((base * (1 - MASK_OPACITY) + tint * MASK_OPACITY).astype("uint8"))


def estimate_depth(loaded: LoadedArtifact, upload) -> tuple[object, np.ndarray, RunStats]:
    """The depth view: the image and its predicted depth per pixel (the model's units; larger is farther
    for metric models, closer for relative-inverse-depth ones such as DPT)."""
    image = read_image(upload)
    (output,), stats = run_both(loaded, [encode_image(loaded, image)])
    depth = loaded.processor.post_process_depth_estimation(output, target_sizes=[(image.height, image.width)])[0]["predicted_depth"]
    return image, depth.float().cpu().numpy(), stats
