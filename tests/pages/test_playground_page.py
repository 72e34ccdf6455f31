"""AppTest of the Playground page on real artifacts: results match transformers / diffusers eager
models, bad input is an error that leaves the page usable, an artifact that cannot run says why."""

import pytest
import torch
import transformers
from page_helpers import no_exception, open_page, submit

from neuron_export.demo import minilm_path


def test_playground_label_matches_transformers(workspace):
    at = open_page("playground.py", "tiny-bert")
    no_exception(at)
    assert any("random weights" in w.value for w in at.warning)
    text = "Hamilton is considered to be the best musical of human history."
    at.text_area[0].set_value(text)
    at = submit(at, "Classify")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    source = workspace.demo_dir / "tiny-bert"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(source).eval()
    with torch.no_grad():
        # The artifact takes 16 tokens: the page cuts the text to them (and says so), as does this reference.
        tokens = transformers.AutoTokenizer.from_pretrained(source)(text, truncation=True, max_length=16, return_tensors="pt")
        logits = model(**tokens).logits[0]
    assert float(logits.softmax(-1).max()) > 0.55  # a head of order 1, not a constant 50 %
    metrics = {m.label: m for m in at.metric}
    assert metrics["Label"].value == model.config.id2label[int(logits.argmax())]
    assert metrics["Label"].delta == f"{float(logits.softmax(-1).max()):.1%}"
    assert metrics["Compiled (torchscript)"].value.endswith("ms") and metrics["Eager PyTorch"].value.endswith("ms")


def test_playground_similarity_matches_transformers_minilm(workspace):
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    at = open_page("playground.py", "minilm")
    assert not any("random weights" in w.value for w in at.warning)  # MiniLM is trained
    at.text_area[0].set_value("\n".join(sentences))
    at = submit(at, "Embed and compare")
    no_exception(at)
    shown = at.dataframe[0].value
    model = transformers.AutoModel.from_pretrained(minilm_path()).eval()
    encoded = transformers.AutoTokenizer.from_pretrained(minilm_path())(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    embeddings = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)
    expected = embeddings @ embeddings.T
    assert list(shown["Sentence"]) == sentences
    torch.testing.assert_close(torch.tensor(shown[["1", "2", "3"]].to_numpy(), dtype=torch.float32), expected, atol=1e-4, rtol=0)


def test_playground_empty_text_is_an_error_and_the_page_stays_usable(workspace):
    at = open_page("playground.py", "tiny-bert")
    at.text_area[0].set_value("   ")
    at = submit(at, "Classify")
    no_exception(at)
    assert any("Enter some text" in e.value for e in at.error)
    at.text_area[0].set_value("a fine day")
    at = submit(at, "Classify")
    assert not at.error and any(m.label == "Label" for m in at.metric)


def test_playground_artifact_without_its_model_file_shows_an_error(workspace, artifact_copy):
    (artifact_copy / "model.pt").unlink()
    at = open_page("playground.py", artifact_copy.name)
    no_exception(at)
    assert any("model.pt is missing" in e.value for e in at.error)


def test_playground_stable_diffusion_image_grid(workspace):
    at = open_page("playground.py", "tiny-sd")
    no_exception(at)
    at.slider[0].set_value(2)  # steps
    at = submit(at, "Generate")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("image")) == 3  # the compiled image, eager diffusers' beside it, and the gallery's copy
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Compiled (torchscript)"].endswith(" s") and metrics["Eager PyTorch"].endswith(" s")


@pytest.mark.parametrize("artifact, button, shown", [
    ("tiny-bert-ner", "Tag entities", lambda at: at.get("html")),
    ("tiny-bert-qa", "Answer", lambda at: [m for m in at.metric if m.label == "Answer"] and at.get("html")),
    ("tiny-bert-mlm", "Fill the mask", lambda at: [m for m in at.markdown if m.value.startswith("**Best fill:**")]),
    ("tiny-roberta-mc", "Choose", lambda at: [m for m in at.metric if m.label == "Most likely choice"]),
    ("tiny-vit", "Classify", lambda at: at.get("image") and [m for m in at.metric if m.label == "Label"]),
    ("tiny-wav2vec2-audio", "Classify", lambda at: _waveform_shown(at) and [m for m in at.metric if m.label == "Label"]),
    ("tiny-wav2vec2-ctc", "Transcribe", lambda at: _waveform_shown(at) and at.code),
    ("tiny-yolos", "Detect", lambda at: at.get("image") and at.slider),
    ("tiny-beit-seg", "Segment", lambda at: len(at.get("image")) == 2 and at.get("html")),
    ("tiny-dpt", "Estimate depth", lambda at: at.get("image") and len(at.get("plotly_chart")) == 1),
    ("tiny-clip", "Classify", lambda at: at.get("image") and [m for m in at.metric if m.label == "Best label"]),
])
def test_every_view_shows_its_result_with_both_latencies(workspace, artifact, button, shown):
    at = submit(open_page("playground.py", artifact), button)  # the form's own example input
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert shown(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Compiled (torchscript)"].endswith("ms") and metrics["Eager PyTorch"].endswith("ms")


def test_playground_chat_streams_transformers_reply(workspace):
    at = open_page("playground.py", "tiny-llama")
    no_exception(at)
    assert any("random weights" in w.value for w in at.warning)
    at.chat_input[0].set_value("the quick brown fox").run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    source = workspace.demo_dir / "tiny-llama"
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    messages = [{"role": "user", "content": "the quick brown fox"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
    new = model.generate(**prompt, max_new_tokens=24, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    reply = [m for m in at.chat_message if m.name == "assistant"]
    assert reply and reply[-1].markdown[0].value == (tokenizer.decode(new, skip_special_tokens=True) or "*(no text)*")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tokens match eager"] == "yes"
    assert metrics["Time to first token"].endswith("ms") and metrics["Per token"].endswith("ms") and float(metrics["Tokens/s"]) > 0


@pytest.mark.parametrize("artifact, button, shown", [
    ("tiny-t5", "Generate", "Output"),
    ("tiny-whisper", "Transcribe", "Transcript"),
])
def test_text_to_text_and_transcript_views(workspace, artifact, button, shown):
    at = submit(open_page("playground.py", artifact), button)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any(t.label == shown for t in at.text_area)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tokens match eager"] == "yes" and metrics["Time to first token"].endswith("ms")


@pytest.mark.parametrize("repo_id, message", [
    ("aws-neuron/bert-base-uncased-finetuned-sst2-neuron", "offline for the Hugging Face Hub (HF_HUB_OFFLINE is set)"),
    ("not an id", "is not a Hugging Face Hub id"),
])
def test_hub_field_downloads_only_when_asked_and_says_why_not(workspace, repo_id, message):
    from studio.jobs import JobStore

    at = open_page("playground.py", "tiny-bert")
    assert not at.error  # nothing is fetched before the button
    at.text_input(key="hub_repo_id").set_value(repo_id)
    at = submit(at, "Download")
    no_exception(at)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not [job for job in JobStore(workspace.db_path, workspace.jobs_dir).list() if job.kind == "download"]


def _waveform_shown(at) -> bool:
    return any("Waveform of the generated sample" in chart.proto.spec for chart in at.get("plotly_chart"))


def test_detection_threshold_slider_filters_the_boxes(workspace):
    at = submit(open_page("playground.py", "tiny-yolos"), "Detect")
    no_exception(at)
    at.slider[0].set_value(0.0).run()
    assert "5 of 5 boxes above 0%" in _captions(at)  # YOLOS' 5 detection tokens
    assert len(at.dataframe[0].value) == 5
    at.slider[0].set_value(1.0).run()
    assert "0 of 5 boxes above 100%" in _captions(at) and not at.dataframe


def _captions(at) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]


def _labels_field(at):
    return next(field for field in at.text_input if field.label.startswith("Labels"))


def test_zero_shot_shows_transformers_best_label_and_refuses_too_many_labels(workspace):
    at = open_page("playground.py", "tiny-clip")
    labels = ["a photo of a cat", "a dog", "the sea"]
    _labels_field(at).set_value(", ".join(labels))
    at = submit(at, "Classify")
    no_exception(at)
    source = workspace.demo_dir / "tiny-clip"
    model = transformers.AutoModelForZeroShotImageClassification.from_pretrained(source).eval()
    processor = transformers.AutoProcessor.from_pretrained(source)
    from studio.playground import sample_image

    with torch.no_grad():
        probabilities = model(**processor(text=labels, images=sample_image(), padding=True, return_tensors="pt")).logits_per_image[0].softmax(-1)
    best = int(probabilities.argmax())
    metric = next(m for m in at.metric if m.label == "Best label")
    assert (metric.value, metric.delta) == (labels[best], f"{float(probabilities[best]):.1%}")
    _labels_field(at).set_value(", ".join(labels + ["a tree"]))
    at = submit(at, "Classify")
    no_exception(at)
    assert any("compiled for at most 3" in e.value for e in at.error)
