"""Every NeuronModelFor* class (from the registry) and pipeline() on the NeuronCores, against transformers'
eager models: compiled with export=True and the default backend (auto: neuron here). Budget: ~60 s."""

import numpy as np
import pytest
import torch
import transformers

import neuron_export
from neuron_export.demo import minilm_path, resolve_demo
from neuron_export.registry import SENTENCE_TRANSFORMERS, TASKS

SENTENCES = ["the cat sat on the mat", "john smith lives in paris and works for google"]
# A demo per task (the registry's own, else a text demo exported as its base model).
DEMOS = {name: spec.demo.name if spec.demo else "demo:tiny-bert" for name, spec in TASKS.items()}
# The text and image tasks; the audio and CLIP families run the same neuron code path and are covered,
# per pair, by the export matrix on the portable backends (see the README's support matrix).
TEXT_AND_IMAGE_TASKS = [name for name, spec in TASKS.items()
                        if "text" in spec.views or ("vision" in spec.views and spec.demo)]


def inputs_for(task, folder, batch=2):
    """What the task's preprocessor makes of two sentences (or images); multiple-choice: 2 choices per question."""
    spec = TASKS[task]
    if spec.views.get("vision"):
        images = [np.random.RandomState(seed).randint(0, 255, (40, 48, 3), dtype=np.uint8) for seed in range(batch)]
        return dict(transformers.AutoImageProcessor.from_pretrained(folder)(images=images, return_tensors="pt"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    if spec.extra_axes:
        encoded = tokenizer(["where is the cat?"] * 2 * batch, ["on the mat", "in paris"] * batch, padding=True, return_tensors="pt")
        return {k: v.view(batch, 2, -1) for k, v in encoded.items()}
    return dict(tokenizer(SENTENCES[:batch], padding=True, return_tensors="pt"))


@pytest.mark.parametrize("task", TEXT_AND_IMAGE_TASKS)
def test_every_model_class_runs_on_the_neuroncores_like_transformers(task, runs):
    spec = TASKS[task]
    shapes = {"batch_size": 2} | ({} if spec.views.get("vision") else {"sequence_length": 32}) | {s: 3 for s in spec.required_shapes}
    model = getattr(neuron_export, spec.model_class).from_pretrained(DEMOS[task], export=True, **shapes)
    assert model.manifest.backend == "neuron" and model.manifest.validation.passed is True
    folder = resolve_demo(DEMOS[task])
    inputs = inputs_for(task, folder)
    eager = getattr(transformers, spec.auto_class).from_pretrained(folder).eval()
    with torch.no_grad():
        expected = eager(**inputs)
    ours = model(**inputs)
    for name in ours.keys():
        torch.testing.assert_close(ours[name], expected[name], atol=1e-5, rtol=1e-5, msg=lambda m: f"{task} {name}: {m}")
    assert {r["core"] for r in runs()} == {0}


def test_sentence_transformers_minilm():
    model = getattr(neuron_export, SENTENCE_TRANSFORMERS.model_class).from_pretrained("demo:minilm", export=True, batch_size=2, sequence_length=32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
    inputs = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    with torch.no_grad():
        tokens = transformers.AutoModel.from_pretrained(minilm_path()).eval()(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(model(**inputs).sentence_embedding, expected, atol=1e-4, rtol=0)
    assert model.manifest.backend == "neuron"


@pytest.mark.parametrize("task", [name for name in TEXT_AND_IMAGE_TASKS if TASKS[name].pipeline])
def test_pipeline_on_the_neuroncores_matches_transformers(task, tmp_path):
    spec = TASKS[task]
    shapes = {} if spec.views.get("vision") else {"sequence_length": 32}
    neuron_export.export(DEMOS[task], tmp_path / "artifact", neuron_export.ExportOptions(task=task, **shapes))
    folder = resolve_demo(DEMOS[task])
    if spec.views.get("vision"):
        from PIL import Image

        data = [Image.fromarray(np.random.RandomState(0).randint(0, 255, (40, 48, 3), dtype=np.uint8))]
    else:
        data = ["the cat sat on the [MASK]."] if task == "fill-mask" else SENTENCES[:1]
    ours = neuron_export.pipeline(spec.pipeline, str(tmp_path / "artifact"))(data)
    theirs = transformers.pipeline(spec.pipeline, model=str(folder))(data)
    assert np.allclose(_numbers(ours), _numbers(theirs), atol=1e-4)
    assert _labels(ours) == _labels(theirs)


def _numbers(result) -> list:
    if isinstance(result, dict):
        return [x for key in sorted(result) for x in _numbers(result[key])]
    if isinstance(result, (list, tuple)):
        return [x for item in result for x in _numbers(item)]
    return [float(result)] if isinstance(result, (int, float, np.floating)) else []


def _labels(result) -> list:
    if isinstance(result, dict):
        return [v for key in sorted(result) for v in ([result[key]] if isinstance(result[key], str) else _labels(result[key]))]
    if isinstance(result, (list, tuple)):
        return [x for item in result for x in _labels(item)]
    return []
