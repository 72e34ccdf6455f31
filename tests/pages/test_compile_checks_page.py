"""AppTest of the Compile form's checks before anything is queued (#18): Compile is disabled while the
form shows a problem (a missing folder, bad buckets, a backend this host cannot compile with, a hub id
the Hub will not give), `auto` is said in words as the engine resolves it, and jobs and artifacts are
named by the backend that will run, never "auto".

No job runs here (NEURON_EXPORT_MAX_JOBS=0: the dispatcher claims none); the tests read what was queued.
No request leaves the host: HF_HUB_OFFLINE is set for the suite, and the Hub probe is replaced where a
test needs another answer (tests/engine/test_hub_reach.py tests the probe against a stand-in Hub)."""

import shutil

import pytest
from page_helpers import open_in_app
from streamlit.testing.v1 import AppTest

import neuron_export.backends
from neuron_export import ExportOptions, hub_reach
from neuron_export.backends import BACKENDS, auto_pick
from neuron_export.cli import build_parser
from neuron_export.demo import resolve_demo
from studio.jobs import JobStore

NEURON = next(backend for backend in BACKENDS.values() if backend.is_neuron)


@pytest.fixture
def workspace(fresh_workspace, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_MAX_JOBS", "0")  # queued jobs stay queued
    return fresh_workspace


def open_form() -> AppTest:
    at = open_in_app("compile.py")  # Start here is the first page
    assert not at.exception, [e.value for e in at.exception]
    return at


def compile_button(at: AppTest):
    return next(b for b in at.button if b.label == "Compile")


def queued(workspace) -> list:
    return JobStore(workspace.db_path, workspace.jobs_dir).list()


def click_compile(at: AppTest, workspace) -> list:
    """Click Compile; the jobs queued."""
    compile_button(at).click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return queued(workspace)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_a_missing_model_folder_disables_compile_until_it_exists(workspace):
    folder = workspace.root / "models" / "bert"
    at = open_form()
    at.segmented_control(key="source_kind").set_value("Local folder").run()
    at.text_input(key="folder").set_value(str(folder)).run()
    assert errors(at) and compile_button(at).disabled
    assert queued(workspace) == []
    shutil.copytree(resolve_demo("demo:tiny-bert"), folder)
    at.run()
    assert not errors(at) and not compile_button(at).disabled


def test_bad_buckets_disable_compile(workspace):
    at = open_form()
    at.selectbox(key="demo").set_value("demo:tiny-bert").run()
    at.text_input(key="buckets-sequence_length-demo:tiny-bert").set_value("8,x").run()
    assert any("--sequence_length" in e for e in errors(at)) and compile_button(at).disabled
    at.text_input(key="buckets-sequence_length-demo:tiny-bert").set_value("8,16").run()
    assert not errors(at) and not compile_button(at).disabled


def test_a_backend_this_host_cannot_compile_with_is_refused_before_queueing(workspace):
    at = open_form()
    at.selectbox(key="backend").set_value(NEURON.name).run()
    problem = NEURON.unavailable_reason(ExportOptions(backend=NEURON.name))
    if problem is None:
        pytest.skip("this host compiles for Neuron")
    assert problem in errors(at) and compile_button(at).disabled
    assert queued(workspace) == []


def hub_id(at: AppTest, repo_id: str) -> AppTest:
    at.segmented_control(key="source_kind").set_value("Hugging Face Hub").run()
    return at.text_input(key="hub_id").set_value(repo_id).run()


def test_a_hub_id_on_an_offline_host_is_an_error_and_queues_nothing(workspace):
    """The suite's HF_HUB_OFFLINE: the real probe answers "offline" without a request."""
    at = hub_id(open_form(), "distilbert/distilbert-base-uncased")
    assert any("offline for the Hugging Face Hub" in e for e in errors(at)), errors(at)
    assert compile_button(at).disabled and any(c.value.startswith("Compile is available once") for c in at.caption)
    assert queued(workspace) == []


class ProbeStandIn:
    """hub_reach.hub_model_problem's answers by id, and the ids it was asked for."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def __call__(self, repo_id, timeout=hub_reach.PROBE_TIMEOUT_S):
        self.asked.append(repo_id)
        return self.answers[repo_id]


@pytest.mark.parametrize("answer", ["no model 'acme/nothing' on the Hugging Face Hub (or it is private ...)",
                                    "acme/nothing is gated on the Hugging Face Hub: accept its terms ..."])
def test_the_hub_probe_answer_is_shown_and_queues_nothing(workspace, monkeypatch, answer):
    probe = ProbeStandIn({"acme/nothing": answer})
    monkeypatch.setattr(hub_reach, "hub_model_problem", probe)
    at = hub_id(open_form(), "acme/nothing")
    assert errors(at) == [answer] and compile_button(at).disabled
    assert queued(workspace) == []


def test_a_reachable_hub_id_is_asked_once_and_named_by_the_resolved_backend(workspace, monkeypatch):
    probe = ProbeStandIn({"acme/tiny-model": None})
    monkeypatch.setattr(hub_reach, "hub_model_problem", probe)
    at = hub_id(open_form(), "acme/tiny-model")
    assert not errors(at) and not compile_button(at).disabled
    at.number_input(key="shape-sequence_length-acme/tiny-model").set_value(64).run()
    assert probe.asked == ["acme/tiny-model"]  # other changes rerun the page, not the probe
    picked = auto_pick(ExportOptions())[0].name
    assert at.text_input(key="artifact_name").value == f"tiny-model-{picked}"  # the task is detected by the job
    (job,) = click_compile(at, workspace)
    assert job.title == f"tiny-model-{picked} (the task its config names, {picked})"


def auto_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("auto will use")]


def test_the_auto_sentence_is_the_engines_choice_on_this_host(workspace):
    at = open_form()
    backend, why = auto_pick(ExportOptions())
    assert auto_captions(at) == [f"auto will use **{backend.name}** (CPU): {why}."]


def test_the_auto_sentence_follows_the_host(workspace, monkeypatch):
    """On a host with torch-neuronx and a Neuron device (as the engine sees them), auto says Neuron."""
    monkeypatch.setattr(neuron_export.backends, "torch_neuronx_importable", lambda: True)
    monkeypatch.setattr(neuron_export.backends, "neuron_device_present", lambda: True)
    at = open_form()
    assert auto_captions(at) == [f"auto will use **{NEURON.name}** (Neuron): torch-neuronx and a Neuron device are present."]


def test_jobs_and_artifacts_are_named_by_the_backend_auto_resolves_to(workspace):
    at = open_form()
    at.selectbox(key="demo").set_value("demo:tiny-bert").run()
    picked = auto_pick(ExportOptions())[0].name
    name = at.text_input(key="artifact_name").value
    assert name == f"tiny-bert-text-classification-{picked}" and "auto" not in name
    assert any(c.value.endswith(f"with {picked} into {name}.") for c in at.caption)
    at.selectbox(key="auto_cast").set_value("matmul").run()
    assert at.text_input(key="artifact_name").value == f"{name}-matmul-bf16"
    (job,) = click_compile(at, workspace)
    assert job.title == f"{name}-matmul-bf16 (text-classification, {picked})" and job.metadata["backend"] == picked
    args = build_parser().parse_args(job.argv[3:])
    assert (args.backend, args.output) == ("auto", str(workspace.artifacts_dir / f"{name}-matmul-bf16"))  # the job resolves it


def test_a_neuron_artifact_is_named_by_its_target(workspace, monkeypatch):
    """Cross-compiling for inf2 (as on a host whose Neuron SDK compiles): the name says neuron-inf2."""
    monkeypatch.setattr(NEURON, "unavailable_reason", lambda options: None)
    at = open_form()
    at.selectbox(key="demo").set_value("demo:tiny-bert").run()
    at.selectbox(key="backend").set_value(NEURON.name).run()
    at.selectbox(key="instance_type").set_value("inf2 (cross-compile)").run()
    assert at.text_input(key="artifact_name").value == f"tiny-bert-text-classification-{NEURON.name}-inf2"
