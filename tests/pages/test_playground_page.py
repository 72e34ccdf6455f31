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
        logits = model(**transformers.AutoTokenizer.from_pretrained(source)(text, return_tensors="pt")).logits[0]
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
    assert len(at.get("image")) == 1
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Compiled (torchscript)"].endswith(" s") and metrics["Eager PyTorch"].endswith(" s")


@pytest.mark.parametrize("artifact, button, shown", [
    ("tiny-bert-ner", "Tag entities", lambda at: at.get("html")),
    ("tiny-bert-qa", "Answer", lambda at: [m for m in at.metric if m.label == "Answer"] and at.get("html")),
    ("tiny-bert-mlm", "Fill the mask", lambda at: [m for m in at.markdown if m.value.startswith("**Best fill:**")]),
    ("tiny-roberta-mc", "Choose", lambda at: [m for m in at.metric if m.label == "Most likely choice"]),
    ("tiny-vit", "Classify", lambda at: at.get("image") and [m for m in at.metric if m.label == "Label"]),
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
