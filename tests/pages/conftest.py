"""Page tests (AppTest): a workspace of real artifacts shared by the session, and an empty one per test.

The shared artifacts are tiny demo models (and the real MiniLM) exported once with the torchscript
backend, one at least for each playground view; tests that damage or add to an artifact work on a copy. Helpers are in page_helpers.py.
"""

import shutil
import threading

import pytest
import streamlit as st

from neuron_export import ExportOptions, export
from studio.workspace import Workspace


# Demos of the playground views that tiny-bert, minilm and tiny-sd do not show, with their shapes.
VIEW_DEMOS = {
    "tiny-bert-ner": {"sequence_length": 16},
    "tiny-bert-qa": {"sequence_length": 32},
    "tiny-bert-mlm": {"sequence_length": 16},
    "tiny-roberta-mc": {"sequence_length": 16, "num_choices": 3},
    "tiny-vit": {},
    "tiny-t5": {"sequence_length": 64},
    "tiny-whisper": {},
    "tiny-wav2vec2-audio": {"audio_sequence_length": 8000},
    "tiny-wav2vec2-ctc": {"audio_sequence_length": 8000},
    "tiny-yolos": {},
    "tiny-beit-seg": {},
    "tiny-dpt": {},
    "tiny-clip": {"text_batch_size": 3, "sequence_length": 16},
}


def _clear_streamlit_caches() -> None:
    # Each test gets its own services (workspace, job store, dispatcher) and model caches.
    st.cache_resource.clear()
    st.cache_data.clear()



@pytest.fixture(autouse=True)
def warm_up_finished():
    """A page test leaves no dashboard warm-up thread importing transformers behind it: the next test
    (of any folder) would import it from a second thread, which transformers' lazy modules refuse."""
    yield
    for thread in threading.enumerate():
        if thread.name == "studio-warm-up":
            thread.join(timeout=600)

@pytest.fixture(scope="session")
def workspace_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages-workspace")
    artifacts = Workspace(root).artifacts_dir
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURON_EXPORT_DEMO_DIR", str(Workspace(root).demo_dir))  # where the pages look for demo sources
        export("demo:tiny-bert", artifacts / "tiny-bert", ExportOptions(backend="torchscript", sequence_length=16))
        export("demo:minilm", artifacts / "minilm", ExportOptions(backend="torchscript", sequence_length=32))
        export("demo:tiny-sd", artifacts / "tiny-sd", ExportOptions(backend="torchscript"))
        export("demo:tiny-llama", artifacts / "tiny-llama", ExportOptions(backend="torchscript", sequence_length=48))
        export("demo:tiny-bert", artifacts / "unvalidated",
               ExportOptions(backend="torchscript", sequence_length=8, disable_validation=True))
        for demo, shapes in VIEW_DEMOS.items():  # one artifact for each other playground view
            export(f"demo:{demo}", artifacts / demo, ExportOptions(backend="torchscript", disable_validation=True, **shapes))
    return root


@pytest.fixture
def workspace(workspace_root, monkeypatch):
    """The shared workspace of real artifacts (tiny-bert, minilm, tiny-sd, unvalidated)."""
    monkeypatch.setenv("NEURON_EXPORT_WORKSPACE", str(workspace_root))
    _clear_streamlit_caches()
    yield Workspace(workspace_root)
    _clear_streamlit_caches()


@pytest.fixture
def fresh_workspace(tmp_path, monkeypatch):
    """An empty workspace of this test's own, without the password gate."""
    monkeypatch.setenv("NEURON_EXPORT_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("NEURON_EXPORT_PASSWORD", raising=False)
    _clear_streamlit_caches()
    yield Workspace(tmp_path / "ws")
    st.cache_resource.clear()


@pytest.fixture
def artifact_copy(workspace):
    """A copy of tiny-bert under another name, removed afterwards (for damaging or benchmarking it)."""
    copy = workspace.artifacts_dir / "copy-of-tiny-bert"
    shutil.copytree(workspace.artifacts_dir / "tiny-bert", copy)
    yield copy
    shutil.rmtree(copy, ignore_errors=True)
