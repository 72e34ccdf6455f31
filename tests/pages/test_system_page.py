"""AppTest of the System page: host metrics, the job store's real running subprocess, and the
NeuronCores from stand-in Neuron tools."""

import json
import os
import sys
import time

import psutil
import pytest
from page_helpers import no_exception, open_page

from neuron_export import neuron_host
from studio import system
from studio.jobs import JobStore


@pytest.fixture
def no_neuron_tools(monkeypatch, tmp_path):
    monkeypatch.setattr(neuron_host, "NEURON_TOOLS_DIR", str(tmp_path / "no-sdk"))
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
    monkeypatch.setattr(neuron_host, "NEURON_TOOLS_DIR", str(sdk))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    at = open_page("system.py")
    time.sleep(1.0)  # neuron-monitor's first report
    at.run()
    no_exception(at)
    cores = next(d for d in at.dataframe if "NeuronCore" in d.value.columns).value.to_dict("records")
    assert [(c["NeuronCore"], c["Utilization %"], c["Memory used MB"]) for c in cores] == [(0, 0.0, 0.0), (1, 64.0, 5.0)]
    assert any("1 Neuron device(s), 2 NeuronCores" in c.value for c in at.caption)


def test_system_page_says_what_this_host_can_compile_and_run(workspace, no_neuron_tools):
    import torch

    at = open_page("system.py")
    no_exception(at)
    facts = next(d for d in at.dataframe if "Fact" in d.value.columns).value.set_index("Fact")
    assert facts.loc["torch", "Found"].startswith(torch.__version__)
    assert facts.loc["Neuron devices", "Found"].startswith("none (no /dev/neuron*)")
    backends = next(d for d in at.dataframe if "Backend" in d.value.columns).value.set_index("Backend")
    assert backends.loc["torchscript", "Compiles here"] == "yes" and backends.loc["torchscript", "Runs here"] == "yes"
    assert backends.loc["neuron", "Runs here"].startswith("no: ")
    assert any("can compile and run with" in s.value and "torchscript" in s.value for s in at.success)
