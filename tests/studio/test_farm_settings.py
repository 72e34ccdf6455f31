"""Where the dashboard's export jobs run (studio.jobs.farm), without a Ray cluster: the setting and
the environment, a farm that does not answer failing the job in one line, what a farm job's
environment leaves out, and a worker following a Ray job through a fake cluster (lost contact, Cancel)."""

import socket
import sys
import threading
import time

import pytest

from neuron_export.errors import NeuronExportError
from studio.jobs import BENCHMARK, EXPORT, Dispatcher, JobStatus, JobStore, farm
from studio.jobs.worker import run_job

ENV = "NEURON_EXPORT_RAY_ADDRESS"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    return JobStore(tmp_path / "jobs.db")


def test_the_setting_overrides_the_environment_and_local_overrides_both(store, monkeypatch):
    assert farm.farm_address(store) is None
    monkeypatch.setenv(ENV, "10.0.0.1:6379")
    assert farm.farm_address(store) == "10.0.0.1:6379"
    store.set_setting(farm.ADDRESS_SETTING, "http://10.0.0.2:8265")
    assert farm.farm_address(store) == "http://10.0.0.2:8265"
    store.set_setting(farm.ADDRESS_SETTING, farm.LOCAL)
    assert farm.farm_address(store) is None
    store.set_setting(farm.ADDRESS_SETTING, None)
    assert farm.farm_address(store) == "10.0.0.1:6379"


@pytest.mark.parametrize("typed", ["", "10.0.0.1", "ray://10.0.0.1:10001", "10.0.0.1:6379; rm -rf /", "http://:8265"])
def test_a_bad_address_is_one_line(typed):
    with pytest.raises(NeuronExportError, match="is not a Ray address") as error:
        farm.check_address(typed)
    assert "\n" not in str(error.value)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(90)
def test_an_export_job_on_a_farm_that_does_not_answer_fails_in_one_line_and_others_run_here(store):
    address = f"127.0.0.1:{closed_port()}"
    store.set_setting(farm.ADDRESS_SETTING, address)
    export = store.submit(EXPORT, [sys.executable, "-c", "print('compiled here')"], title="export")
    other = store.submit(BENCHMARK, [sys.executable, "-c", "print('benchmarked here')"], title="benchmark")
    dispatcher = Dispatcher(store, max_concurrent=2, poll_interval_s=0.2)
    dispatcher.start()
    try:
        deadline = time.monotonic() + 60
        while not all(store.get(j.id).is_finished for j in (export, other)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        dispatcher.stop()
    failed, done = store.get(export.id), store.get(other.id)
    assert farm.farm_of(failed)["address"] == address and farm.farm_of(done) is None  # only export jobs go to the farm
    assert failed.status == JobStatus.FAILED and "\n" not in failed.message
    assert failed.message in (f"cannot reach the Ray cluster at {address}: Connection refused",
                              "the Ray executor needs Ray, which is not installed: "
                              'pip install "neuron_export[ray]" (or: pip install -r requirements-ray.txt)')
    assert "compiled here" not in store.log_tail(export.id)
    assert done.status == JobStatus.SUCCEEDED and "benchmarked here" in store.log_tail(other.id)


def test_a_farm_jobs_environment_leaves_tokens_out(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_secret")
    monkeypatch.setenv("NEURON_EXPORT_GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("HF_TOKEN_PATH", "/shared/hf/token")  # a file's path: how the head node may log in
    monkeypatch.setenv("HF_HOME", "/shared/hf")
    env = farm.job_env()
    assert "hf_secret" not in env.values() and "ghp_secret" not in env.values()
    assert env["HF_TOKEN_PATH"] == "/shared/hf/token" and env["HF_HOME"] == "/shared/hf"


class FakeCluster:
    """A FarmClient stand-in: a Ray job that runs until stopped; `stop_failures` stops fail first."""

    def __init__(self, stop_failures: int = 0, stops_it: bool = True):
        self.stop_failures, self.stops_it, self.stops, self.stopped = stop_failures, stops_it, 0, False

    def status(self, sid):
        return "STOPPED" if self.stopped else "RUNNING"

    def logs(self, sid):
        return ""

    def stop(self, sid):
        self.stops += 1
        if self.stops <= self.stop_failures:
            raise NeuronExportError("the Ray cluster at 10.0.0.1:6379: Read timed out")
        self.stopped = self.stops_it


def followed_farm_job(store, cancel: bool):
    """A farm job whose Ray job was submitted, as a restarted server's worker finds it; run_job follows it."""
    job = store.submit(EXPORT, [sys.executable, "-c", "pass"], title="export")
    assert store.claim_next(1).id == job.id
    tagged = farm.tag_farm_job(job, "10.0.0.1:6379")
    store.update(job.id, metadata={**tagged, farm.FARM: {**tagged[farm.FARM], "submitted": True}},
                 cancel_requested=cancel)
    sigterm = threading.Event()
    if cancel:
        sigterm.set()  # as JobStore.cancel's SIGTERM does (else the worker signals its own group: pytest's)
    return job.id, sigterm


@pytest.mark.timeout(30)
def test_a_follower_that_cannot_reach_the_cluster_records_the_job_interrupted(store, monkeypatch):
    def unreachable(address):
        raise NeuronExportError(f"cannot reach the Ray cluster at {address}: Connection refused")

    monkeypatch.setattr(farm, "FarmClient", unreachable)
    monkeypatch.setattr(farm, "UNREACHABLE_FOR_S", 0.5)
    job_id, sigterm = followed_farm_job(store, cancel=False)
    run_job(store, job_id, sigterm)
    job, sid = store.get(job_id), farm.submission_id(job_id)
    assert job.status == JobStatus.INTERRUPTED
    assert job.message == f"lost contact with Ray job {sid}; it may still be running (stop it with: ray job stop {sid})"


@pytest.mark.timeout(30)
def test_cancel_tries_stopping_the_ray_job_again_after_a_failed_stop(store, monkeypatch):
    cluster = FakeCluster(stop_failures=1)
    monkeypatch.setattr(farm, "FarmClient", lambda address: cluster)
    monkeypatch.setattr(farm.RayJobProcess, "stop_grace_s", 5.0)
    job_id, sigterm = followed_farm_job(store, cancel=True)
    run_job(store, job_id, sigterm)
    assert store.get(job_id).status == JobStatus.CANCELLED and cluster.stops == 2


@pytest.mark.timeout(30)
def test_a_ray_job_that_does_not_stop_is_reported_as_maybe_still_running(store, monkeypatch):
    monkeypatch.setattr(farm, "FarmClient", lambda address: FakeCluster(stops_it=False))
    monkeypatch.setattr(farm.RayJobProcess, "stop_grace_s", 1.0)
    job_id, sigterm = followed_farm_job(store, cancel=True)
    run_job(store, job_id, sigterm)
    job, sid = store.get(job_id), farm.submission_id(job_id)
    assert job.status == JobStatus.CANCELLED and "\n" not in job.message
    assert job.message.startswith("did not stop within 1 s of SIGTERM; killed") and f"ray job stop {sid}" in job.message
