"""Where the dashboard's export jobs run (studio.jobs.farm), without a Ray cluster: the setting and
the environment, and a farm that does not answer failing the job in one line."""

import socket
import sys
import time

import pytest

from neuron_export.errors import NeuronExportError
from studio.jobs import BENCHMARK, EXPORT, Dispatcher, JobStatus, JobStore, farm

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
