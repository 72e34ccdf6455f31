"""The dashboard's jobs on the compile farm, on the session's local Ray cluster on loopback
(tests/conftest.py): with the farm set (the System page's setting), an export job runs as a Ray job whose
components and buckets are Ray tasks listed for the job; Cancel stops the Ray job and its tasks;
a restarted server (a new Dispatcher, the old workers killed) follows a running farm job again, and
records the final state and logs of one that finished while no server was there.

Marker `ray` (needs requirements-ray.txt), run by .ci/run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time

import pytest

from support import assert_buckets_equal_transformers, build_o1_classifier

from neuron_export import ExportOptions, load_artifact
from studio.jobs import EXPORT, Dispatcher, JobStatus, JobStore, export_command, farm

pytestmark = pytest.mark.ray
pytest.importorskip("ray")

WAIT_S = 300


@pytest.fixture
def cluster(ray_cluster):
    return ray_cluster[0]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return build_o1_classifier(tmp_path_factory.mktemp("farm-bert") / "bert")


@pytest.fixture
def store(tmp_path, cluster):
    store = JobStore(tmp_path / "ws" / "jobs.db")
    store.set_setting(farm.ADDRESS_SETTING, cluster)  # as the System page's Save does
    return store


@pytest.fixture
def dispatchers(store):
    """Start a dispatcher (a server); every one started is stopped and its workers killed afterwards."""
    started = []

    def start(**kwargs) -> Dispatcher:
        dispatcher = Dispatcher(store, poll_interval_s=0.5, **kwargs)
        dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.stop()
    for job in store.list(limit=None, statuses=[JobStatus.RUNNING]):  # a failed test's: nothing left running
        where = farm.farm_of(job)
        if where and where["submitted"]:
            farm.FarmClient(where["address"]).stop(where["submission_id"])
        if job.pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)


def wait_until(condition, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return value


def submit(store, model, output, **options):
    return store.submit(EXPORT, export_command(str(model), output, ExportOptions(backend="torchscript", use_cache=False, **options)),
                        title=f"farm {output.name}")


def ray_status(store, job):
    where = farm.farm_of(store.get(job.id))
    return farm.FarmClient(where["address"]).status(where["submission_id"])


def running_task(store, job):
    job = store.get(job.id)
    return farm.farm_of(job) and farm.farm_of(job)["submitted"] and any(r.state == "RUNNING" for r in farm.task_rows(job))


def kill_server(store, dispatcher, *jobs):
    """What a server going down does to its jobs: the dispatcher stops, every worker process dies."""
    dispatcher.stop()
    for job in jobs:
        os.killpg(store.get(job.id).pid, signal.SIGKILL)


def test_a_farm_job_lists_its_ray_tasks_and_is_followed_again_after_a_server_restart(store, dispatchers, cluster, bert,
                                                                                       tmp_path):
    job = submit(store, bert, tmp_path / "bert-farm", sequence_length=(8, 16))
    kill_server(store, dispatchers(), wait_until(lambda: running_task(store, job) and job, 180))
    assert ray_status(store, job) in ("PENDING", "RUNNING") and store.get(job.id).status == JobStatus.RUNNING
    dispatchers()  # the restarted server: its dispatcher finds the job's worker gone and follows its Ray job
    done = wait_until(lambda: (j := store.get(job.id)).is_finished and j)
    log = store.log_tail(job.id)
    assert done.status == JobStatus.SUCCEEDED, log
    where = farm.farm_of(done)
    assert where["address"] == cluster and f"as Ray job {where['submission_id']}" in log
    assert f"following Ray job {where['submission_id']}" in log
    assert [s["stage"] for s in done.stages].count("ray") == 2  # the farm's steps: tasks submitted, component built
    component = load_artifact(done.artifact).manifest.component
    rows = wait_until(lambda: (rows := [r for r in farm.task_rows(done) if r.state == "FINISHED"]) and len(rows) == 3 and rows, 60)
    assert sorted(r.task for r in rows) == sorted([f"{component}[8]", f"{component}[16]", f"{component}:save"])
    assert {r.node for r in rows} == {"127.0.0.1"}
    assert_buckets_equal_transformers(done.artifact, bert, (8, 16))


def test_cancel_stops_the_ray_job_and_its_tasks(store, dispatchers, bert, tmp_path):
    output = tmp_path / "bert-cancelled"
    job = submit(store, bert, output, sequence_length=(8, 16))
    dispatchers()
    wait_until(lambda: running_task(store, job), 180)
    assert store.cancel(job.id)
    done = wait_until(lambda: (j := store.get(job.id)).is_finished and j, 120)
    assert done.status == JobStatus.CANCELLED, store.log_tail(job.id)
    assert ray_status(store, job) == "STOPPED"
    wait_until(lambda: not any(r.state == "RUNNING" for r in farm.task_rows(done)), 60)
    assert not output.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_restarted_server_records_a_farm_job_that_finished_meanwhile(store, dispatchers, bert, tmp_path):
    job = submit(store, bert, tmp_path / "bert-meanwhile", sequence_length=8)
    kill_server(store, dispatchers(), wait_until(lambda: running_task(store, job) and job, 180))
    wait_until(lambda: ray_status(store, job) == "SUCCEEDED")
    assert store.get(job.id).status == JobStatus.RUNNING  # nobody recorded it yet
    dispatchers()
    done = wait_until(lambda: (j := store.get(job.id)).is_finished and j, 120)
    log = store.log_tail(job.id)
    assert done.status == JobStatus.SUCCEEDED and done.validation_passed is True and done.artifact, log
    # the Ray job's log, copied once: the part copied before the kill is not repeated
    where = farm.farm_of(done)
    ray_log = re.sub(r"\x1b\[[0-9;]*m", "", farm.FarmClient(where["address"]).logs(where["submission_id"]))
    studio_lines = sum(len(line) + 1 for line in log.splitlines() if line.startswith("[studio]"))
    assert len(ray_log) > 500 and abs(len(log) - studio_lines - len(ray_log)) < 200, log
