"""AppTest of the dashboard's compile flow: Compile -> job -> Jobs -> Artifacts, bad inputs, password gate.

The compile is a real job: the dispatcher started by the app runs the real CLI in a subprocess."""

import json
import time
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from neuron_export import load_artifact
from studio.jobs import JobStore
from studio.workspace import Workspace

TIMEOUT = 120
APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("NEURON_EXPORT_PASSWORD", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield Workspace(tmp_path / "ws")
    st.cache_resource.clear()


def compile_form(at: AppTest, demo: str, name: str, sequence_length: int = 16) -> None:
    at.selectbox(key="demo").set_value(demo)
    at.run()
    at.selectbox(key="backend").set_value("torchscript")
    at.number_input(key=f"shape-sequence_length-{demo}").set_value(sequence_length)
    at.text_input(key="artifact_name").set_value(name)
    at.run()


def wait_for_job(store: JobStore, job_id: str):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job.is_finished:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {TIMEOUT} s")


def test_compile_form_runs_a_real_job_to_success(workspace):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    compile_form(at, "demo:tiny-bert", "tiny-bert-ts")
    next(b for b in at.button if b.label == "Compile").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    job_id = at.query_params["job"][0] if isinstance(at.query_params["job"], list) else at.query_params["job"]
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    job = wait_for_job(store, job_id)
    assert str(job.status) == "succeeded", store.log_tail(job_id)
    assert job.validation_passed is True

    artifact = workspace.artifacts_dir / "tiny-bert-ts"
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["backend"] == "torchscript" and manifest["shapes"]["sequence_length"] == 16
    # The artifact the form made answers like transformers' eager model on the demo source.
    source = workspace.demo_dir / "tiny-bert"
    tokenizer = AutoTokenizer.from_pretrained(artifact)
    batch = tokenizer(["the cat sat on the mat"], padding="max_length", max_length=16, return_tensors="pt")
    eager = AutoModelForSequenceClassification.from_pretrained(source).eval()
    with torch.no_grad():
        expected = eager(**batch).logits
    compiled = load_artifact(artifact)(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    torch.testing.assert_close(compiled["logits"], expected, atol=1e-4, rtol=0)

    at.run()  # the live panel now shows the finished job
    assert not at.exception and len(at.success) == 1 and not at.error

    at.switch_page("views/jobs.py").run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["status"]) == ["succeeded"] and list(frame["job"]) == [job_id]

    at.switch_page("views/artifacts.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    row = table[table["name"] == "tiny-bert-ts"].iloc[0]
    assert row["task"] == "text-classification"
    assert "not Neuron" in row["backend · runs on"] and row["validation"].startswith("validated")


@pytest.mark.parametrize(
    "name, message",
    [("../escape", "Invalid output name"), ("/abs/path", "Invalid output name"), ("", "Invalid output name")],
)
def test_bad_artifact_names_show_an_error_and_submit_nothing(workspace, name, message):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    compile_form(at, "demo:tiny-bert", name)
    next(b for b in at.button if b.label == "Compile").click()
    at.run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert JobStore(workspace.db_path, workspace.jobs_dir).list() == []


def test_existing_artifact_needs_replace(workspace):
    (workspace.artifacts_dir / "taken").mkdir(parents=True)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    compile_form(at, "demo:tiny-bert", "taken")
    next(b for b in at.button if b.label == "Compile").click()
    at.run()
    assert any("already exists" in e.value for e in at.error)
    assert JobStore(workspace.db_path, workspace.jobs_dir).list() == []


def test_missing_local_folder_is_a_readable_error(workspace, tmp_path):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.segmented_control(key="source_kind").set_value("Local folder").run()
    at.text_input(key="folder").set_value(str(tmp_path / "nope")).run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_password_gate(workspace, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_PASSWORD", "s3cret")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not [t for t in at.title if t.value == "Compile a model"]
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error)
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert [t for t in at.title if t.value == "Compile a model"]
