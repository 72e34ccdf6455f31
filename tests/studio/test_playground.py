"""studio/playground: each view's result equals what transformers / diffusers compute eagerly on the
source model, bad inputs are one-line errors, and a source that cannot be loaded leaves compiled latency only.

Artifacts: tiny demo models (and the real MiniLM) exported once with the torchscript backend. Budget: < 40 s.
"""

import dataclasses
import json
import os
import shutil

import pytest
import torch
import transformers

from neuron_export import ExportOptions, export, read_manifest
from neuron_export.demo import default_demo_root, minilm_path, resolve_demo
from neuron_export.errors import NeuronExportError
from studio import playground
from studio.playground import core

SEQUENCE_LENGTH = 32
EXPORTS = {
    "tiny-bert": {},
    "tiny-bert-ner": {},
    "tiny-bert-qa": {},
    "tiny-bert-mlm": {},
    "tiny-roberta-mc": {"num_choices": 4},
    "tiny-vit": {},
    "minilm": {"batch_size": 2},
    "tiny-sd": {},
}
TEXT_DEMOS = {"tiny-bert", "tiny-bert-ner", "tiny-bert-qa", "tiny-bert-mlm", "tiny-roberta-mc", "minilm"}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("playground")
    for name, shapes in EXPORTS.items():
        sequence = {"sequence_length": SEQUENCE_LENGTH} if name in TEXT_DEMOS else {}
        export(f"demo:{name}", folder / name, ExportOptions(backend="torchscript", **sequence, **shapes))
    return folder


@pytest.fixture(scope="module")
def loaded(artifacts):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = playground.load(artifacts / name, default_demo_root())
        return cache[name]

    return get


def eager(auto_class: str, demo: str):
    folder = resolve_demo(f"demo:{demo}")
    model = getattr(transformers, auto_class).from_pretrained(folder).eval()
    return model, folder


def tokenizer_of(folder):
    return transformers.AutoTokenizer.from_pretrained(folder)


def test_text_classification_matches_transformers(loaded):
    text = "I loved this movie, it was wonderful"
    scores, stats = playground.classify_text(loaded("tiny-bert"), text)
    model, folder = eager("AutoModelForSequenceClassification", "tiny-bert")
    with torch.no_grad():
        probabilities = model(**tokenizer_of(folder)(text, return_tensors="pt")).logits[0].softmax(-1)
    expected = sorted(((model.config.id2label[i], float(p)) for i, p in enumerate(probabilities)), key=lambda s: -s[1])
    assert [label for label, _ in scores] == [label for label, _ in expected]
    assert [p for _, p in scores] == pytest.approx([p for _, p in expected], abs=1e-5)
    assert stats.max_abs_diff < 1e-4 and stats.compiled_s is None  # timed afterwards, the benchmark's way
    assert stats.notes == []
    stats.measure()
    assert stats.compiled_s > 0 and stats.eager_s > 0


def test_long_text_is_cut_to_the_compiled_length_with_a_note(loaded):
    text = " ".join(["wonderful movie"] * 40)
    scores, stats = playground.classify_text(loaded("tiny-bert"), text)
    model, folder = eager("AutoModelForSequenceClassification", "tiny-bert")
    with torch.no_grad():
        cut = tokenizer_of(folder)(text, truncation=True, max_length=SEQUENCE_LENGTH, return_tensors="pt")
        best = model.config.id2label[int(model(**cut).logits[0].argmax())]
    assert scores[0][0] == best
    assert any(f"sequence length of {SEQUENCE_LENGTH}" in note for note in stats.notes)


def test_token_classification_colours_the_tokens_transformers_tags(loaded):
    text = "John Smith lives in Paris and works at Google."
    segments, _ = playground.tag_tokens(loaded("tiny-bert-ner"), text)
    assert "".join(s.text for s in segments) == text  # the segments cover the text exactly
    model, folder = eager("AutoModelForTokenClassification", "tiny-bert-ner")
    encoded = tokenizer_of(folder)(text, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        labels = model(**encoded).logits[0].argmax(-1).tolist()
    position, owner = 0, {}
    for segment in segments:  # character -> entity type of the segment holding it
        for char in range(position, position + len(segment.text)):
            owner[char] = segment.entity
        position += len(segment.text)
    for (start, end), label in zip(offsets, labels):
        if end > start:
            name = model.config.id2label[label]
            assert owner[start] == (None if name == "O" else name.split("-", 1)[-1]), text[start:end]


def test_question_answering_picks_transformers_best_span(loaded):
    question, context = "Where does John live?", "John lives in Paris. He works at Google in London."
    answer, _ = playground.answer_question(loaded("tiny-bert-qa"), question, context)
    model, folder = eager("AutoModelForQuestionAnswering", "tiny-bert-qa")
    encoded = tokenizer_of(folder)(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0].tolist()
    in_context = [i for i, s in enumerate(encoded.sequence_ids(0)) if s == 1]
    with torch.no_grad():
        output = model(**encoded)
    start_p = output.start_logits[0][in_context].softmax(-1).tolist()
    end_p = output.end_logits[0][in_context].softmax(-1).tolist()
    best = max(((start_p[i] * end_p[j], i, j) for i in range(len(in_context))
                for j in range(i, min(i + playground.MAX_ANSWER_TOKENS, len(in_context)))))
    start, end = offsets[in_context[best[1]]][0], offsets[in_context[best[2]]][1]
    assert (answer.start, answer.end, answer.text) == (start, end, context[start:end])
    assert answer.score == pytest.approx(best[0], rel=1e-4)
    assert context[answer.start: answer.end] in playground.highlight_html(context, answer.start, answer.end)


def test_fill_mask_top_tokens_match_transformers(loaded):
    text = "Paris is the [MASK] of France."
    tokens, _ = playground.fill_mask(loaded("tiny-bert-mlm"), text)
    model, folder = eager("AutoModelForMaskedLM", "tiny-bert-mlm")
    tokenizer = tokenizer_of(folder)
    encoded = tokenizer(text, return_tensors="pt")
    position = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0])
    with torch.no_grad():
        values, ids = model(**encoded).logits[0, position].softmax(-1).topk(playground.TOP_K)
    assert [t for t, _ in tokens] == [tokenizer.decode([i]).strip() for i in ids.tolist()]
    assert [p for _, p in tokens] == pytest.approx(values.tolist(), abs=1e-6)


def test_sentence_embeddings_match_transformers_minilm(loaded):
    lines = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    sentences, embeddings, similarity, stats = playground.embed_sentences(loaded("minilm"), "\n".join(lines) + "\n\n")
    assert sentences == lines
    folder = minilm_path()
    model = transformers.AutoModel.from_pretrained(folder).eval()
    encoded = tokenizer_of(folder)(lines, padding=True, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(embeddings, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(similarity, expected @ expected.T, atol=1e-4, rtol=1e-4)
    assert similarity[0, 1] > 0.5 > similarity[0, 2]  # real weights: the two eating sentences are close
    assert any("2 calls of the compiled batch size 2" in note for note in stats.notes)


class Recording:
    """A model that logs each call's side and input shapes before calling through."""

    def __init__(self, side, model, log):
        self.side, self.model, self.log = side, model, log

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **inputs):
        self.log.append((self.side, {name: tuple(tensor.shape) for name, tensor in inputs.items()}))
        return self.model(**inputs)


def test_speed_is_timed_alternating_both_models_on_the_compiled_shape(loaded, monkeypatch):
    minilm, log = loaded("minilm"), []
    monkeypatch.setattr(minilm.model, "compiled", Recording("compiled", minilm.model.compiled, log))
    monkeypatch.setattr(minilm, "eager", Recording("eager", minilm.eager, log))
    _, _, _, stats = playground.embed_sentences(minilm, "A man is eating.\nA girl is running.")
    log.clear()
    stats.measure()
    compiled_shape = {spec.name: tuple(spec.shape) for spec in minilm.manifest.inputs}
    assert compiled_shape["input_ids"] == (2, SEQUENCE_LENGTH)
    assert all(shapes == compiled_shape for _, shapes in log)  # eager too: not the sentences' few tokens
    warmup, timed = log[:4], [side for side, _ in log[4:]]
    assert [side for side, _ in warmup] == ["compiled", "eager"] * 2
    runs = [[timed[0], 0]]
    for side in timed:
        runs[-1][1] += side == runs[-1][0]
        if side != runs[-1][0]:
            runs.append([side, 1])
    # Rounds of turns (one untimed call, then the timed ones) in a rotating order: C E | E C | C E ...
    turn = runs[0][1]
    assert runs[0][0] == "compiled" and turn >= 2 and [n for _, n in runs[1:-1]] == [2 * turn] * (len(runs) - 2) and runs[-1][1] == turn
    rounds = len(runs) - 1  # a round boundary joins two turns of the same side into one run
    calls = rounds * (turn - 1)
    assert f"Median of {calls} call{'s' * (calls != 1)} per side, alternating in {rounds} round{'s' * (rounds != 1)}" in stats.method
    assert stats.compiled_s > 0 and stats.eager_s > 0


def test_a_busy_host_is_named_only_when_other_work_wants_the_cores_our_threads_use(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert core.busy_host_note(0.9) is None  # less than one other runnable task on average
    note = core.busy_host_note(4.6)
    assert "load 4.6 on 2 cores" in note and "with 2 threads every parallel step waits" in note


def test_multiple_choice_probabilities_match_transformers(loaded):
    prompt, choices = "The cat sat on the", ["mat", "moon", "computer"]
    scores, _ = playground.choose(loaded("tiny-roberta-mc"), prompt, "\n".join(choices))
    model, folder = eager("AutoModelForMultipleChoice", "tiny-roberta-mc")
    encoded = tokenizer_of(folder)([prompt] * 3, choices, padding=True, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**{k: v.unsqueeze(0) for k, v in encoded.items()}).logits[0].softmax(-1)
    assert [c for c, _ in scores] == choices
    assert [p for _, p in scores] == pytest.approx(probabilities.tolist(), abs=1e-5)


def test_image_classification_matches_transformers(loaded):
    image = playground.sample_image()
    labels, _ = playground.classify_image(loaded("tiny-vit"), image)
    model, folder = eager("AutoModelForImageClassification", "tiny-vit")
    pixels = transformers.AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**pixels).logits[0].softmax(-1)
    values, ids = probabilities.topk(len(labels))
    assert [label for label, _ in labels] == [model.config.id2label[i] for i in ids.tolist()]
    assert [p for _, p in labels] == pytest.approx(values.tolist(), abs=1e-5)


def test_stable_diffusion_images_match_diffusers(loaded):
    import diffusers
    import numpy

    request = {"prompt": "a photo of an astronaut riding a horse", "negative_prompt": "blurry", "steps": 3, "guidance": 7.5, "seed": 7}
    generation, stats = playground.generate_images(loaded("tiny-sd"), playground.ImageSettings(**request, num_images=1, compare_eager=False))
    images = generation.images
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(resolve_demo("demo:tiny-sd"), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(request["prompt"], negative_prompt="blurry", num_inference_steps=3, guidance_scale=7.5, height=64, width=64,
                    generator=torch.Generator().manual_seed(7)).images
    assert len(images) == 1 and images[0].size == (64, 64)
    difference = numpy.abs(numpy.asarray(images[0], dtype=float) - numpy.asarray(expected[0], dtype=float)).max()
    assert difference <= 2  # of 255
    assert stats.unit == "image" and stats.eager_s is None and stats.compiled_s > 0


@pytest.mark.parametrize("call, message", [
    (lambda l: playground.classify_text(l("tiny-bert"), "   "), "Enter some text"),
    (lambda l: playground.fill_mask(l("tiny-bert-mlm"), "Paris is the capital of France."), r"put \[MASK\]"),
    (lambda l: playground.fill_mask(l("tiny-bert-mlm"), "word " * 60 + "[MASK]"), "beyond the compiled sequence length"),
    (lambda l: playground.choose(l("tiny-roberta-mc"), "Pick", "a\nb\nc\nd\ne"), "at most 4 choices"),
    (lambda l: playground.embed_sentences(l("minilm"), "only one"), "at least two sentences"),
    (lambda l: playground.answer_question(l("tiny-bert-qa"), "why " * 40, "Because."), "shorten it"),
    (lambda l: playground.generate_images(l("tiny-sd"), playground.ImageSettings("a cat", num_images=2, steps=1)), "compiled for batch_size 1"),
])
def test_bad_input_is_a_one_line_error(loaded, call, message):
    with pytest.raises(NeuronExportError, match=message) as raised:
        call(loaded)
    assert "\n" not in str(raised.value)


def test_unloadable_source_leaves_compiled_latency_only(artifacts, tmp_path):
    copy = tmp_path / "hub-bert"
    shutil.copytree(artifacts / "tiny-bert", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["source"] = "someone/not-downloaded-bert"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    offline = playground.load(copy, default_demo_root())
    assert offline.eager is None and "someone/not-downloaded-bert" in offline.eager_note
    scores, stats = playground.classify_text(offline, "hello world")
    stats.measure()
    assert len(scores) == 2 and stats.compiled_s > 0 and stats.eager_s is None and stats.speedup is None


def test_missing_model_file_is_an_artifact_error(artifacts, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(artifacts / "tiny-bert", copy)
    (copy / "model.pt").unlink()
    with pytest.raises(NeuronExportError, match="model.pt is missing"):
        playground.load(copy, default_demo_root())


def test_playground_views_and_random_weight_flags(artifacts):
    views = {name: playground.artifact_view(read_manifest(artifacts / name)) for name in EXPORTS}
    assert views["tiny-sd"] == "image-generation" and views["minilm"] == "similarity"
    assert playground.random_weights_demo(read_manifest(artifacts / "tiny-bert"))
    assert not playground.random_weights_demo(read_manifest(artifacts / "minilm"))  # trained weights
    image_features = dataclasses.replace(read_manifest(artifacts / "tiny-vit"), task="feature-extraction")
    assert playground.artifact_view(image_features) is None


def test_every_view_the_registry_names_runs_in_the_playground():
    from neuron_export.registry import DIFFUSION_TASKS, SENTENCE_TRANSFORMERS, TASKS

    named = {view for spec in (*TASKS.values(), *DIFFUSION_TASKS.values(), SENTENCE_TRANSFORMERS) for view in spec.views.values()}
    assert named <= set(playground.VIEW_RUNNERS), named - set(playground.VIEW_RUNNERS)


def test_an_unreadable_upload_is_a_one_line_error(tmp_path):
    upload = tmp_path / "photo.png"
    upload.write_bytes(b"not an image")
    with pytest.raises(NeuronExportError, match="cannot read this image"):
        playground.read_image(upload)
    assert playground.read_image(None).size == playground.sample_image().size


def test_entity_html_escapes_user_text():
    segments = [playground.Segment("<script>alert(1)</script> "), playground.Segment("Paris & Co", "LOC", 0.9)]
    rendered = playground.entities_html(segments)
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered and "Paris &amp; Co" in rendered
    assert playground.entity_colors(segments)["LOC"] in rendered
