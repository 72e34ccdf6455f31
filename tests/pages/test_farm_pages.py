"""AppTests of the farm's parts of the Jobs and System pages, without Ray: the state source
(studio.jobs.farm.task_rows / describe) is replaced by a fake."""

import sys
import time

import pytest
from page_helpers import no_exception, open_page, submit

from neuron_export.errors import NeuronExportError
from studio.jobs import EXPORT, JobStatus, JobStore, farm

ADDRESS = "10.1.2.3:6379"


def farm_job(workspace, finished: bool) -> str:
    """A farm job: running (claimed, its Ray job submitted, no worker yet) or finished."""
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    job = store.submit(EXPORT, [sys.executable, "-c", "pass"], title="Farm export")
    assert store.claim_next(1).id == job.id
    tagged = farm.tag_farm_job(job, ADDRESS)
    # a beat from the future: the page's dispatcher does not start a worker to follow it (to a cluster that is not there)
    store.update(job.id, metadata={**tagged, farm.FARM: {**tagged[farm.FARM], "submitted": True}},
                 heartbeat_at=time.time() + 3600)
    if finished:
        store.finish(job.id, JobStatus.SUCCEEDED)
    return job.id


def test_jobs_page_shows_a_farm_jobs_ray_tasks_with_their_node_and_state(fresh_workspace, monkeypatch):
    job_id = farm_job(fresh_workspace, finished=False)
    rows = [farm.TaskRow("unet", "RUNNING", "10.1.2.7", 0), farm.TaskRow("vae_decoder", "FINISHED", "10.1.2.8", 1)]
    monkeypatch.setattr(farm, "task_rows", lambda job: rows if job.id == job_id else [])
    at = open_page("jobs.py")
    no_exception(at)
    assert any(f"neuron-export-{job_id}" in m.value and ADDRESS in m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "node" in d.value.columns)
    assert table.to_dict("records") == [{"task": "unet", "state": "RUNNING", "node": "10.1.2.7", "attempt": 0},
                                        {"task": "vae_decoder", "state": "FINISHED", "node": "10.1.2.8", "attempt": 1}]


def test_jobs_page_does_not_ask_the_farm_about_a_finished_job(fresh_workspace, monkeypatch):
    farm_job(fresh_workspace, finished=True)
    asked = []
    monkeypatch.setattr(farm, "task_rows", lambda job: asked.append(job.id) or [])
    at = open_page("jobs.py")
    no_exception(at)
    assert not asked
    assert any("no longer followed" in c.value for c in at.caption)


def test_jobs_page_says_in_one_line_when_the_farm_does_not_answer(fresh_workspace, monkeypatch):
    farm_job(fresh_workspace, finished=False)

    def unreachable(job):
        raise NeuronExportError(f"cannot reach the Ray cluster at {ADDRESS}: Connection refused")

    monkeypatch.setattr(farm, "task_rows", unreachable)
    at = open_page("jobs.py")
    no_exception(at)
    assert [w.value for w in at.warning] == [f"cannot reach the Ray cluster at {ADDRESS}: Connection refused"]


def farm_form(at, address: str, button: str):
    next(t for t in at.text_input if t.label == "Ray cluster address").set_value(address)
    return submit(at, button)


@pytest.mark.parametrize("env", [None, "10.9.9.9:6379"])
def test_system_page_saves_tests_and_clears_the_farm(fresh_workspace, monkeypatch, env):
    if env:
        monkeypatch.setenv("NEURON_EXPORT_RAY_ADDRESS", env)
    else:
        monkeypatch.delenv("NEURON_EXPORT_RAY_ADDRESS", raising=False)
    store = JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir)
    asked = []
    monkeypatch.setattr(farm, "describe", lambda address: asked.append(address) or "2 node(s) alive: 10.1.2.3 (8 CPU, 30.0 GiB)")
    at = open_page("system.py")
    no_exception(at)
    where = "from $NEURON_EXPORT_RAY_ADDRESS" if env else "as local processes (the default)"
    assert any(where in c.value for c in at.caption)

    at = farm_form(at, "not an address", "Save")
    assert [e.value for e in at.error] == ["'not an address' is not a Ray address: give HOST:PORT of the head node "
                                           "(its GCS, e.g. 10.0.0.5:6379) or its dashboard (http://10.0.0.5:8265)"]
    assert farm.farm_address(store) == env  # nothing saved

    at = farm_form(at, "http://10.1.2.3:8265", "Test connection")
    assert asked == ["http://10.1.2.3:8265"] and at.success[0].value == "2 node(s) alive: 10.1.2.3 (8 CPU, 30.0 GiB)"

    at = farm_form(at, f" {ADDRESS} ", "Save")
    assert farm.farm_address(store) == ADDRESS and not at.error
    assert f"at {ADDRESS}, as set on this page" in at.success[0].value

    at = submit(at, "Run jobs here")
    assert farm.farm_address(store) is None  # also over the environment's address
    assert "run here, as local processes, as set on this page" in at.success[0].value


def test_system_page_shows_the_connection_tests_error_in_one_line(fresh_workspace, monkeypatch):
    def refused(address):
        raise NeuronExportError(f"cannot reach the Ray cluster at {address}: Connection refused")

    monkeypatch.setattr(farm, "describe", refused)
    at = farm_form(open_page("system.py"), ADDRESS, "Test connection")
    no_exception(at)
    assert [e.value for e in at.error] == [f"cannot reach the Ray cluster at {ADDRESS}: Connection refused"]
