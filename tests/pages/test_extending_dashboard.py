"""The README's dashboard recipes, each done here in a few lines: a page is a file in views/ and one
line in app.py's PAGES; a task with a new kind of output is its registry entry plus one playground
runner (studio.playground.VIEW_RUNNERS) and one renderer (views/playground.py's VIEWS)."""

import dataclasses
import re
import shutil

import torch
import transformers
from page_helpers import APP, PAGES, no_exception, submit
from streamlit.testing.v1 import AppTest

from neuron_export import ExportOptions, export
from neuron_export.demo import build_tiny_model
from neuron_export.registry import ARCHITECTURES, TASKS, TEXT_ENCODER, TaskSpec
from studio import playground

SEQUENCE_LENGTH = 16
NEW_RENDERER = '''

def sentence_pair(loaded):
    form(loaded, "Compare", lambda: (st.text_input("First", "The cat sat on the mat."), st.text_input("Second", "It purred.")))
    if result := last_result(loaded):
        probability, stats = result
        st.metric("Is next", f"{probability:.1%}")
        latency_row(loaded, stats)


VIEWS["sentence-pair"] = sentence_pair
'''


def test_a_page_is_a_file_in_views_and_a_line_in_app(fresh_workspace, tmp_path):
    shutil.copytree(PAGES, tmp_path / "views")
    (tmp_path / "views" / "hello.py").write_text('import streamlit as st\n\nst.title("Hello")\n')
    app = re.sub(r"(PAGES = \[\n(?:    .*\n)*)\]", r'\1    ("views/hello.py", "Hello", ":material/waving_hand:"),\n]', APP.read_text())
    (tmp_path / "app.py").write_text(app)

    at = AppTest.from_file(str(tmp_path / "app.py"), default_timeout=60).run()
    at.switch_page("views/hello.py").run()
    no_exception(at)
    assert [title.value for title in at.title] == ["Hello"]


def is_next_sentence(loaded, first: str, second: str):
    """The runner of the new view: P(second follows first), with the compiled and eager latencies."""
    encoded = loaded.processor(first, second, truncation=True, max_length=SEQUENCE_LENGTH, return_tensors="pt")
    (output,), stats = playground.run_both(loaded, [dict(encoded)])
    return float(output.logits[0].softmax(-1)[0]), stats


def test_a_new_kind_of_output_is_one_runner_and_one_renderer(fresh_workspace, monkeypatch, tmp_path):
    task = TaskSpec("next-sentence-prediction", "AutoModelForNextSentencePrediction", ("logits",), ("ForNextSentencePrediction",),
                    "NeuronModelForNextSentencePrediction", "NextSentencePredictorOutput", views={"text": "sentence-pair"})
    monkeypatch.setitem(TASKS, task.name, task)
    family = dataclasses.replace(TEXT_ENCODER, tasks=TEXT_ENCODER.tasks + (task.name,))
    monkeypatch.setitem(ARCHITECTURES, "bert", dataclasses.replace(ARCHITECTURES["bert"], family=family))
    monkeypatch.setitem(playground.VIEW_RUNNERS, "sentence-pair", is_next_sentence)
    page = tmp_path / "playground.py"
    page.write_text((PAGES / "playground.py").read_text().replace("\n\nmain()\n", NEW_RENDERER + "\n\nmain()\n"))
    folder = build_tiny_model("bert", task.name, tmp_path / "bert-nsp")
    export(folder, fresh_workspace.artifacts_dir / "bert-nsp", ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH))

    at = submit(AppTest.from_file(str(page), default_timeout=60).run(), "Compare")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    eager = transformers.AutoModelForNextSentencePrediction.from_pretrained(folder).eval()
    with torch.no_grad():
        encoded = transformers.AutoTokenizer.from_pretrained(folder)("The cat sat on the mat.", "It purred.", truncation=True,
                                                                     max_length=SEQUENCE_LENGTH, return_tensors="pt")
        expected = float(eager(**encoded).logits[0].softmax(-1)[0])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Is next"] == f"{expected:.1%}"
    assert metrics["Compiled (torchscript)"].endswith("ms") and metrics["Eager PyTorch"].endswith("ms")
