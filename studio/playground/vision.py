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


def encode_image(loaded: LoadedArtifact, image, **text) -> dict:
    """The artifact's image processor (fitted to the compiled size when loaded) on a PIL image; `text`:
    a CLIP processor's text arguments."""
    if image is None:
        raise NeuronExportError("Upload an image (or use the sample) first.")
    try:
        return dict(loaded.processor(images=image.convert("RGB"), return_tensors="pt", **text))
    except Exception as error:  # PIL / processor errors on odd images
        raise NeuronExportError(f"cannot prepare this image: {first_line(error)}") from None


def classify_image(loaded: LoadedArtifact, image, top_k: int = TOP_K) -> tuple[list[tuple[str, float]], RunStats]:
    """Top labels of a PIL image, resized by the artifact's image processor to the compiled size."""
    (output,), stats = run_both(loaded, [encode_image(loaded, image)])
    probabilities = output.logits[0].float().cpu().softmax(-1)
    values, ids = probabilities.topk(min(top_k, probabilities.numel()))
    return [(label_name(loaded.model.config, i), float(v)) for v, i in zip(values.tolist(), ids.tolist())], stats


def classify_upload(loaded: LoadedArtifact, upload) -> tuple[object, list[tuple[str, float]], RunStats]:
    """The image-labels view: the uploaded image (or the sample) and its top labels."""
    image = read_image(upload)
    return (image, *classify_image(loaded, image))


def candidate_labels(text: str, most: int) -> list[str]:
    """The labels typed (comma or line separated), at most the compiled text batch."""
    labels = list(dict.fromkeys(label.strip() for label in text.replace("\n", ",").split(",") if label.strip()))
    if len(labels) < 2:
        raise NeuronExportError("Type at least two labels, separated by commas.")
    if len(labels) > most:
        raise NeuronExportError(f"{len(labels)} labels: this model was compiled for at most {most} (text_batch_size); "
                                f"remove some, or export it again with a larger --text_batch_size")
    return labels


def zero_shot(loaded: LoadedArtifact, upload, labels_text: str) -> tuple[object, list[tuple[str, float]], RunStats]:
    """The zero-shot view: the image and the probability of each typed label (CLIP's softmax over them)."""
    image = read_image(upload)
    labels = candidate_labels(labels_text, int(loaded.shapes["text_batch_size"]))
    notes: list[str] = []
    length = int(loaded.shapes["sequence_length"])
    tokens = loaded.processor.tokenizer(labels)["input_ids"]
    if max(map(len, tokens)) > length:
        notes.append(f"Labels longer than the compiled {length} tokens were cut.")
    encoded = encode_image(loaded, image, text=labels, padding=True, truncation=True, max_length=length)
    (output,), stats = run_both(loaded, [encoded])
    stats.notes += notes
    probabilities = _label_logits(output, stats.notes).float().cpu().softmax(-1).tolist()
    return image, sorted(zip(labels, probabilities), key=lambda item: -item[1]), stats


# A sentence-transformers CLIP folder returns embeddings only: its labels are scored by cosine
# similarity (sentence-transformers' util.cos_sim) at the logit scale that trained CLIPs reach.
EMBEDDING_LOGIT_SCALE = 100.0


def _label_logits(output, notes: list[str]):
    """The image's logit for each label: CLIP's own, or those of a sentence-transformers CLIP's embeddings."""
    if output.get("logits_per_image") is not None:
        return output.logits_per_image[0]
    import torch

    image, texts = (torch.nn.functional.normalize(output[name].float(), dim=-1) for name in ("image_embeds", "text_embeds"))
    notes.append(f"Probabilities: softmax of {EMBEDDING_LOGIT_SCALE:g} × the cosine similarity of the image and label embeddings.")
    return EMBEDDING_LOGIT_SCALE * (texts @ image[0])
