"""AppTest of the Validation report, Playground and System pages on real artifacts in a temporary workspace.

Artifacts are tiny demo models (and the real MiniLM) exported once with the torchscript backend. The report
is checked against validation.json, the playground against transformers' eager model, the system page
against the job store's real subprocess and stand-in Neuron tools. Budget: < 60 s.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest
import streamlit as st
import torch
import transformers
from streamlit.testing.v1 import AppTest

from neuron_export import ExportOptions, export
from neuron_export.demo import minilm_path
from studio import system
from studio.jobs import JobStore
from studio.workspace import Workspace

PAGES = Path(__file__).resolve().parents[1] / "views"
TIMEOUT = 90


@pytest.fixture(scope="module")
def workspace_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis-workspace")
    artifacts = Workspace(root).artifacts_dir
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURON_EXPORT_DEMO_DIR", str(Workspace(root).demo_dir))  # where the pages look for demo sources
        export("demo:tiny-bert", artifacts / "tiny-bert", ExportOptions(backend="torchscript", sequence_length=16))
        export("demo:minilm", artifacts / "minilm", ExportOptions(backend="torchscript", sequence_length=32))
        export("demo:tiny-sd", artifacts / "tiny-sd", ExportOptions(backend="torchscript"))
        export("demo:tiny-bert", artifacts / "unvalidated",
               ExportOptions(backend="torchscript", sequence_length=8, disable_validation=True))
    return root


@pytest.fixture
def workspace(workspace_root, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_WORKSPACE", str(workspace_root))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield Workspace(workspace_root)
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def artifact_copy(workspace):
    """A copy of tiny-bert under another name, removed afterwards (for damaging it)."""
    copy = workspace.artifacts_dir / "copy-of-tiny-bert"
    shutil.copytree(workspace.artifacts_dir / "tiny-bert", copy)
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def open_page(name: str, artifact: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT)
    if artifact:
        at.query_params["artifact"] = artifact
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def submit(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click()
    return at.run()


# ---- validation report --------------------------------------------------------------------------


def test_report_table_has_the_values_of_validation_json(workspace):
    at = open_page("report.py", "tiny-bert")
    no_exception(at)
    report = json.loads((workspace.artifacts_dir / "tiny-bert" / "validation.json").read_text())
    runs, outputs = (frame.value for frame in at.dataframe)
    assert len(runs) == len(report["runs"]) and list(runs["input_ids"]) == ["1 × 16"] * len(report["runs"])
    assert list(outputs["Output"]) == [o["name"] for o in report["outputs"]]
    for row, expected in zip(outputs.to_dict("records"), report["outputs"]):
        assert row["Reference shape"] == " × ".join(map(str, expected["reference_shape"]))
        assert row["Compiled shape"] == " × ".join(map(str, expected["compiled_shape"]))
        assert row["Max abs diff"] == expected["max_abs_diff"] and row["Mean abs diff"] == expected["mean_abs_diff"]
        assert row["atol"] == expected["atol"] == report["atol"]
        assert row["Shape"] == row["Within atol"] == "✓"
    assert at.metric[0].value == f"{report['atol']:g}"
    assert any(report["atol_source"] in c.value for c in at.caption)
    assert any("badge" in m.value and "torchscript" in m.value and "not Neuron" in m.value for m in at.markdown)


def test_report_of_a_pipeline_has_a_tab_per_component(workspace):
    at = open_page("report.py", "tiny-sd")
    no_exception(at)
    components = json.loads((workspace.artifacts_dir / "tiny-sd" / "manifest.json").read_text())["components"]
    assert [tab.label.split()[0] for tab in at.tabs] == components
    for tab, name in zip(at.tabs, components):
        report = json.loads((workspace.artifacts_dir / "tiny-sd" / name / "validation.json").read_text())
        outputs = tab.dataframe[1].value
        assert list(outputs["Output"]) == [o["name"] for o in report["outputs"]]
        assert list(outputs["Max abs diff"]) == [o["max_abs_diff"] for o in report["outputs"]]


def test_report_says_why_validation_was_skipped(workspace):
    at = open_page("report.py", "unvalidated")
    no_exception(at)
    assert any("skipped" in i.value and "--disable-validation" in i.value for i in at.info)
    assert not at.dataframe


def test_report_with_a_damaged_validation_file_warns(workspace, artifact_copy):
    (artifact_copy / "validation.json").write_text("{not json")
    at = open_page("report.py", artifact_copy.name)
    no_exception(at)
    assert any("validation.json" in w.value for w in at.warning)


# ---- playground ---------------------------------------------------------------------------------


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


# ---- system -------------------------------------------------------------------------------------


@pytest.fixture
def no_neuron_tools(monkeypatch, tmp_path):
    monkeypatch.setattr(system, "NEURON_TOOLS_DIR", str(tmp_path / "no-sdk"))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))


def test_system_page_explains_a_host_without_neuron(workspace, no_neuron_tools):
    at = open_page("system.py")
    no_exception(at)
    assert any("No Neuron device or tools" in i.value and "portable backends" in i.value for i in at.info)
    memory, disk = (p.value for p in at.get("progress"))
    assert 0 < memory <= 100 and 0 < disk <= 100


def command_started(job) -> bool:
    """The job's worker runs and has started the job's command (its child)."""
    try:
        return job.status == "running" and job.pid is not None and bool(psutil.Process(job.pid).children())
    except psutil.Error:
        return False


def test_system_page_lists_a_running_job_with_its_processes(workspace, no_neuron_tools):
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    at = open_page("system.py")  # starts the workspace's dispatcher
    job = store.submit("test", [sys.executable, "-c", "import time; time.sleep(60)"], title="Sleeping job")
    try:
        deadline = time.monotonic() + 30
        while not command_started(store.get(job.id)) and time.monotonic() < deadline:
            time.sleep(0.2)
        running = store.get(job.id)
        at.run()
        no_exception(at)
        (row,) = at.dataframe[0].value.to_dict("records")
        assert row["Job"] == "Sleeping job" and row["PID"] == running.pid
        assert row["Processes"] >= 2  # the worker and the job's command, one process group
        assert row["Memory (RSS)"].endswith("MB")
    finally:
        store.cancel(job.id)
        deadline = time.monotonic() + 30
        while not store.get(job.id).is_finished and time.monotonic() < deadline:
            time.sleep(0.2)


def test_system_page_shows_neuroncores_from_the_tools(workspace, monkeypatch, tmp_path):
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    devices = [{"neuron_device": 0, "nc_count": 2, "memory_size": 32 * 1024**3, "neuroncore_ids": [0, 1], "neuron_processes": []}]
    report = {"neuron_runtime_data": [{"pid": 77, "report": {
        "neuroncore_counters": {"neuroncores_in_use": {"1": {"neuroncore_utilization": 64.0}}},
        "memory_used": {"neuron_runtime_used_bytes": {"usage_breakdown": {"neuroncore_memory_usage": {"1": {"tensors": 5_000_000}}}}},
    }}]}
    for name, body in {"neuron-ls": f"print({json.dumps(json.dumps(devices))})",
                       "neuron-monitor": f"import time\nprint({json.dumps(json.dumps(report))}, flush=True)\ntime.sleep(3)"}.items():
        (sdk / name).write_text(f"#!{sys.executable}\n{body}\n")
        (sdk / name).chmod(0o755)
    monkeypatch.setattr(system, "NEURON_TOOLS_DIR", str(sdk))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    at = open_page("system.py")
    time.sleep(1.0)  # neuron-monitor's first report
    at.run()
    no_exception(at)
    cores = at.dataframe[-1].value.to_dict("records")
    assert [(c["NeuronCore"], c["Utilization %"], c["Memory used MB"]) for c in cores] == [(0, 0.0, 0.0), (1, 64.0, 5.0)]
    assert any("1 Neuron device(s), 2 NeuronCores" in c.value for c in at.caption)
