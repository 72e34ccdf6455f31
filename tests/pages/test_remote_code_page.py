"""A manifest is data, not consent: an artifact compiled with trust-remote-code never runs its source
model's own code in the Playground or a Benchmark job until the person at the dashboard agrees, for
that model, in this session. The "own code" here counts its runs in a marker file."""

import json
import shutil

import pytest
from page_helpers import no_exception, open_page, submit

from neuron_export import ExportOptions, export
from neuron_export.demo import resolve_demo
from studio.jobs import JobStore

MODELING = '''
import os
import pathlib

from transformers import BertForSequenceClassification


class MarkedBert(BertForSequenceClassification):
    """tiny BERT, and a mark of every time this code runs."""

    def __init__(self, config):
        super().__init__(config)
        marker = pathlib.Path(os.environ["REMOTE_CODE_MARKER"])
        marker.write_text(str(int(marker.read_text() or 0) + 1) if marker.exists() else "1")
'''


@pytest.fixture
def marker(tmp_path, monkeypatch):
    path = tmp_path / "remote-code-ran"
    monkeypatch.setenv("REMOTE_CODE_MARKER", str(path))
    return path


@pytest.fixture
def remote_code_artifact(workspace, tmp_path_factory, marker):
    source = shutil.copytree(resolve_demo("demo:tiny-bert"), workspace.root / "models" / "marked-bert")
    (source / "modeling_marked.py").write_text(MODELING)
    config = json.loads((source / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_marked.MarkedBert"}
    (source / "config.json").write_text(json.dumps(config))
    artifact = workspace.artifacts_dir / "remote-code"
    export(source, artifact, ExportOptions(backend="torchscript", sequence_length=8, trust_remote_code=True, use_cache=False))
    assert marker.exists()  # the export ran the code: the user asked for it with trust_remote_code
    marker.unlink()
    yield artifact
    shutil.rmtree(artifact, ignore_errors=True)
    shutil.rmtree(source, ignore_errors=True)


def test_the_playground_asks_before_running_the_models_code(remote_code_artifact, marker):
    at = open_page("playground.py", remote_code_artifact.name)
    no_exception(at)
    consent = at.checkbox[0]
    assert "Run the Python code shipped with" in consent.label and consent.value is False
    assert not marker.exists()
    assert any("runs code of its own; allow it above" in i.value for i in at.info)
    at = submit(at, "Classify")
    assert not marker.exists()  # the compiled model runs; the source's code does not
    assert not [m for m in at.metric if m.label == "Eager PyTorch" and m.value != "—"]

    at.checkbox[0].check()
    at = submit(at.run(), "Classify")
    no_exception(at)
    assert marker.exists()
    assert [m for m in at.metric if m.label == "Eager PyTorch" and m.value.endswith("ms")]


def test_a_benchmark_job_runs_the_models_code_only_with_consent(remote_code_artifact, workspace):
    store = JobStore(workspace.db_path, workspace.jobs_dir)

    def queued_argv(agree: bool) -> list[str]:
        earlier = {job.id for job in store.list(limit=None)}
        at = open_page("benchmark.py", remote_code_artifact.name)
        if agree:
            at.checkbox[0].check().run()
        at = submit(at, "Run benchmark")
        no_exception(at)
        (job,) = [j for j in store.list(limit=None) if j.id not in earlier]
        store.cancel(job.id)
        return job.argv

    assert "--trust-remote-code" not in queued_argv(agree=False)
    assert "--trust-remote-code" in queued_argv(agree=True)
