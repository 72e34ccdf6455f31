"""Vision views: an uploaded image (or a generated sample picture) classified by the artifact."""

from __future__ import annotations

from neuron_export.errors import NeuronExportError, first_line

from .core import TOP_K, LoadedArtifact, RunStats, label_name, run_both

MAX_IMAGE_PIXELS = 40_000_000  # an upload larger than this is refused (a 40 MP photo is 120 MB decoded)
KEPT_SIDE = 1024  # the image kept in the session is at most this many pixels a side


def sample_image(size: int = 224):
    """A generated picture (sky, sun, hills, a house) to try an image classifier without an upload."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):  # sky gradient
        draw.line([(0, y), (size, y)], fill=(90 + y * 100 // size, 150 + y * 60 // size, 235))
    s = size / 224
    draw.ellipse([160 * s, 20 * s, 200 * s, 60 * s], fill=(255, 214, 64))
    draw.ellipse([-60 * s, 140 * s, 150 * s, 300 * s], fill=(76, 153, 0))
    draw.ellipse([90 * s, 150 * s, 300 * s, 300 * s], fill=(56, 130, 20))
    draw.rectangle([70 * s, 120 * s, 130 * s, 175 * s], fill=(200, 80, 60))
    draw.polygon([(62 * s, 122 * s), (100 * s, 88 * s), (138 * s, 122 * s)], fill=(120, 50, 40))
    draw.rectangle([92 * s, 145 * s, 108 * s, 175 * s], fill=(90, 60, 30))
    return image


def read_image(upload):
    """An uploaded image file (anything PIL opens) as RGB, at most KEPT_SIDE pixels a side, or the
    sample picture when there is none. A file of more than MAX_IMAGE_PIXELS is refused before it is
    decoded: a small PNG can hold a huge image (a 164 KB file of 13000x13000 pixels is 500 MB decoded)."""
    if upload is None:
        return sample_image()
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(upload) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > MAX_IMAGE_PIXELS:
                raise NeuronExportError(f"this image has {width}×{height} pixels; the playground takes at most "
                                        f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels")
            image.draft("RGB", (KEPT_SIDE, KEPT_SIDE))  # JPEG decodes straight at a smaller scale
            picture = image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise NeuronExportError(f"cannot read this image: {first_line(error)}") from None
    picture.thumbnail((KEPT_SIDE, KEPT_SIDE))  # what is kept (and shown) is the small copy only
    return picture


def classify_image(loaded: LoadedArtifact, image, top_k: int = TOP_K) -> tuple[list[tuple[str, float]], RunStats]:
    """Top labels of a PIL image, resized by the artifact's image processor to the compiled size."""
    if image is None:
        raise NeuronExportError("Upload an image (or use the sample) first.")
    size = getattr(loaded.processor, "size", None) or {}
    options = {}
    if {"height", "width"} <= set(size) and {"height", "width"} <= set(loaded.shapes):
        options["size"] = {"height": int(loaded.shapes["height"]), "width": int(loaded.shapes["width"])}
    try:
        encoded = loaded.processor(images=image.convert("RGB"), return_tensors="pt", **options)
    except Exception as error:  # PIL / processor errors on odd images
        raise NeuronExportError(f"cannot prepare this image: {first_line(error)}") from None
    (output,), stats = run_both(loaded, [dict(encoded)])
    probabilities = output.logits[0].float().cpu().softmax(-1)
    values, ids = probabilities.topk(min(top_k, probabilities.numel()))
    return [(label_name(loaded.model.config, i), float(v)) for v, i in zip(values.tolist(), ids.tolist())], stats


def classify_upload(loaded: LoadedArtifact, upload) -> tuple[object, list[tuple[str, float]], RunStats]:
    """The image-labels view: the uploaded image (or the sample) and its top labels."""
    image = read_image(upload)
    return (image, *classify_image(loaded, image))
