"""A sentence-transformers CLIP folder (as clip-ViT-B-32 is saved) exports for feature-extraction:
text_embeds and image_embeds equal sentence-transformers' own `SentenceTransformer(folder).encode`
of texts and of PIL images (the package is the reference, not this tool's code).

A tiny CLIP built offline from its config with a fixed seed (weights re-drawn: embeddings of order 1,
asserted), wrapped in sentence-transformers' CLIPModel module and saved by sentence-transformers;
also in the hub's older layout (a 0_CLIPModel folder). Torchscript exports. Budget: about 40 s.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor

from fresh_inputs import CLIP_LABELS, images
from neuron_export import ExportOptions, NeuronModelForSentenceTransformers, export
from neuron_export.errors import InputMismatchError, NeuronExportError
from support import run_cli, sentence_transformers_clip

st = pytest.importorskip("sentence_transformers")

ATOL = 1e-4
SHAPES = dict(text_batch_size=3, image_batch_size=2, sequence_length=16)


@pytest.fixture(scope="module")
def st_clip(tmp_path_factory) -> Path:
    return sentence_transformers_clip(tmp_path_factory.mktemp("st-clip") / "st")


def hub_layout(folder: Path, target: Path, normalize: bool = False) -> Path:
    """The layout of sentence-transformers/clip-ViT-B-32 on the hub: the CLIP checkpoint in 0_CLIPModel,
    the module named sentence_transformers.models.CLIPModel (optionally followed by a Normalize)."""
    (target / "0_CLIPModel").mkdir(parents=True)
    for file in folder.iterdir():
        if file.name not in ("README.md", "sentence_bert_config.json"):  # the hub's folder has neither
            shutil.copy(file, target / (file.name if file.name in ("modules.json", "config_sentence_transformers.json") else f"0_CLIPModel/{file.name}"))
    modules = [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]
    if normalize:
        modules.append({"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"})
        (target / "1_Normalize").mkdir()
    (target / "modules.json").write_text(json.dumps(modules))
    return target


def encode(folder: Path, items: list) -> torch.Tensor:
    """sentence-transformers' own embeddings (eager), checked to be of order 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embeddings = st.SentenceTransformer(str(folder), device="cpu").encode(items, convert_to_tensor=True)
    assert 0.1 < float(embeddings.abs().max()) < 20, "embeddings near 0 would make the comparison meaningless"
    return embeddings


def test_cli_export_validates_and_both_towers_match_encode(st_clip, tmp_path):
    artifact = tmp_path / "artifact"
    shapes = [arg for axis, size in SHAPES.items() for arg in (f"--{axis}", str(size))]
    # optimum-neuron's task name for it; feature-extraction (or auto) exports the same.
    result = run_cli("export", "--model", str(st_clip), "--task", "sentence-similarity", "--backend", "torchscript", *shapes,
                     "--no-cache", str(artifact))
    assert result.returncode == 0, result.stderr
    assert "Compiled model output names match reference model (text_embeds, image_embeds)" in result.stdout
    model = NeuronModelForSentenceTransformers.from_pretrained(artifact)
    assert model.manifest.library == "sentence_transformers" and model.manifest.model_type == "clip"
    processor = AutoProcessor.from_pretrained(artifact)
    # Both batches in one call, each smaller than compiled (2 texts of 3, 1 image of 2): padded, then cut.
    outputs = model(**processor(text=list(CLIP_LABELS[:2]), images=images(1), padding=True, return_tensors="pt"))
    torch.testing.assert_close(outputs.text_embeds, encode(st_clip, list(CLIP_LABELS[:2])), rtol=0, atol=ATOL)
    torch.testing.assert_close(outputs.image_embeds, encode(st_clip, images(1)), rtol=0, atol=ATOL)


def test_the_class_encodes_texts_alone_and_images_alone_in_the_hub_layout(st_clip, tmp_path):
    folder = hub_layout(st_clip, tmp_path / "hub", normalize=True)
    model = NeuronModelForSentenceTransformers.from_pretrained(folder, export=True, backend="torchscript", use_cache=False, **SHAPES)
    processor = AutoProcessor.from_pretrained(model.config_path)
    texts = model(**processor(text=list(CLIP_LABELS), padding=True, return_tensors="pt"))
    assert texts.image_embeds is None
    expected_texts = encode(folder, list(CLIP_LABELS))
    torch.testing.assert_close(expected_texts.norm(dim=-1), torch.ones(3))  # the Normalize module ran in the reference
    torch.testing.assert_close(texts.text_embeds, expected_texts, rtol=0, atol=ATOL)
    (image_embeds,) = model(**processor(images=images(2, seed=8), return_tensors="pt"), return_dict=False)
    torch.testing.assert_close(image_embeds, encode(folder, images(2, seed=8)), rtol=0, atol=ATOL)
    with pytest.raises(InputMismatchError, match="text_batch_size 4 > 3"):
        model(**processor(text=[*CLIP_LABELS, "a tree"], padding=True, return_tensors="pt"))


def test_a_module_after_clip_other_than_normalize_is_refused_before_anything_is_written(st_clip, tmp_path):
    folder = hub_layout(st_clip, tmp_path / "hub")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 1, "name": "1", "path": "1_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(NeuronExportError, match="modules CLIPModel, Dense are not supported here"):
        export(folder, tmp_path / "artifact", ExportOptions(backend="torchscript", use_cache=False, **SHAPES))
    assert not (tmp_path / "artifact").exists()
