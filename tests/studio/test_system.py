"""studio/system.py: host metrics from psutil, and the parsers of the Neuron tools' JSON.

The Neuron documents follow the formats in the AWS Neuron tools docs (`neuron-ls --json-output`: a list
of devices; `neuron-monitor`: one report per period, per-core counters under neuron_runtime_data[].report).
The tools themselves are stood in for by small scripts that print those documents. Budget: < 10 s.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest

from neuron_export.errors import NeuronExportError
from neuron_export import neuron_host
from studio import system

GIB = 1024**3

# trn1.2xlarge-shaped: one device, two cores, memory in bytes, numa_node a string, connected_to null.
NEURON_LS_ONE_DEVICE = [
    {"neuron_device": 0, "bdf": "0000:00:1e.0", "cpu_affinity": "0-7", "numa_node": "-1", "connected_to": None,
     "nc_count": 2, "memory_size": 32 * GIB, "neuroncore_ids": [0, 1], "neuron_processes": []},
]
# inf2.24xlarge-shaped, older tools: no neuroncore_ids (cores are numbered across devices), a process on device 1.
NEURON_LS_OLDER_TOOLS = [
    {"neuron_device": index, "bdf": f"0000:00:{16 + index:02x}.0", "connected_to": [(index + 1) % 3], "nc_count": 2,
     "memory_size": 32 * GIB,
     "neuron_processes": [{"pid": 4242, "command": "python serve.py --model bert", "neuron_runtime_version": "2.20.0"}] if index == 1 else []}
    for index in range(3)
]


def monitor_report(cores: dict[int, tuple[float, dict[str, int]]], pid: int = 4242) -> dict:
    """A neuron-monitor report with one runtime using `cores`: {core: (utilization %, memory by kind)}."""
    return {
        "neuron_runtime_data": [{
            "pid": pid, "neuron_runtime_tag": "367", "error": "",
            "report": {
                "neuroncore_counters": {"period": 1.0, "error": "", "neuroncores_in_use": {
                    str(core): {"neuroncore_utilization": util, "flops": 0} for core, (util, _) in cores.items()}},
                "memory_used": {"period": 1.0, "error": "", "neuron_runtime_used_bytes": {
                    "host": 1_000_000, "neuron_device": sum(sum(kinds.values()) for _, kinds in cores.values()),
                    "usage_breakdown": {
                        "host": {"application_memory": 1_000_000, "constants": 0, "dma_buffers": 0, "tensors": 0},
                        "neuroncore_memory_usage": {str(core): kinds for core, (_, kinds) in cores.items()},
                    }}},
            },
        }],
        "system_data": {"memory_info": {"period": 1.0, "memory_total_bytes": 64 * GIB, "memory_used_bytes": 8 * GIB}},
        "instance_info": {"instance_type": "inf2.xlarge"},
        "neuron_hardware_info": {"neuron_device_count": 1, "neuroncore_per_device_count": 2, "error": ""},
    }


def test_neuron_ls_devices_cores_and_memory():
    (device,) = system.parse_neuron_ls(json.dumps(NEURON_LS_ONE_DEVICE))
    assert device.index == 0 and device.cores == [0, 1]
    assert device.memory == 32 * GIB and device.memory_per_core == 16 * GIB
    assert device.processes == []


def test_neuron_ls_without_core_ids_numbers_cores_across_devices():
    devices = system.parse_neuron_ls(json.dumps(NEURON_LS_OLDER_TOOLS))
    assert [d.cores for d in devices] == [[0, 1], [2, 3], [4, 5]]
    assert devices[1].processes == [(4242, "python serve.py --model bert")]


@pytest.mark.parametrize("text", ["not json", json.dumps({"neuron_devices": []}), json.dumps([{"neuron_device": 0}])])
def test_neuron_ls_rejects_other_documents(text):
    with pytest.raises(NeuronExportError):
        system.parse_neuron_ls(text)


def test_neuron_monitor_utilization_and_memory_per_core():
    report = monitor_report({1: (62.5, {"constants": 1000, "model_code": 20_000, "tensors": 3000, "runtime_memory": 500})})
    activity = system.parse_neuron_monitor(report)
    assert list(activity) == [1]  # core 0 has no runtime: absent
    assert activity[1].utilization == 62.5
    assert activity[1].memory_used == 24_500
    assert activity[1].pids == (4242,)


def test_neuron_monitor_sums_runtimes_sharing_a_core():
    first = monitor_report({0: (30.0, {"tensors": 100})}, pid=1)
    second = monitor_report({0: (20.0, {"tensors": 50}), 1: (5.0, {"tensors": 7})}, pid=2)
    report = {"neuron_runtime_data": first["neuron_runtime_data"] + second["neuron_runtime_data"]}
    activity = system.parse_neuron_monitor(report)
    assert activity[0].utilization == 50.0 and activity[0].memory_used == 150 and activity[0].pids == (1, 2)
    assert activity[1].utilization == 5.0


def test_neuron_monitor_without_runtimes_is_idle():
    assert system.parse_neuron_monitor({"neuron_runtime_data": [], "system_data": {}}) == {}


def test_core_rows_join_devices_and_activity():
    devices = system.parse_neuron_ls(json.dumps(NEURON_LS_ONE_DEVICE))
    rows = system.core_rows(devices, system.parse_neuron_monitor(monitor_report({1: (40.0, {"tensors": 2_000_000})})))
    assert [(r["NeuronCore"], r["Utilization %"], r["Memory used MB"]) for r in rows] == [(0, 0.0, 0.0), (1, 40.0, 2.0)]
    assert rows[0]["Memory MB"] == pytest.approx(16 * GIB / 1e6)


def fake_tool(folder, name: str, body: str) -> str:
    """An executable standing in for a Neuron tool."""
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return str(path)


def test_find_neuron_tool_on_path_or_in_the_sdk_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(neuron_host, "NEURON_TOOLS_DIR", str(tmp_path / "sdk"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert system.find_neuron_tool("neuron-ls") is None
    (tmp_path / "sdk").mkdir()
    tool = fake_tool(tmp_path / "sdk", "neuron-ls", "")
    assert system.find_neuron_tool("neuron-ls") == tool


def test_read_neuron_ls_runs_the_tool(tmp_path):
    tool = fake_tool(tmp_path, "neuron-ls", f"import sys\nassert sys.argv[1:] == ['--json-output']\nprint({json.dumps(json.dumps(NEURON_LS_OLDER_TOOLS))})")
    assert len(system.read_neuron_ls(tool)) == 3


def test_read_neuron_ls_reports_a_host_without_devices(tmp_path):
    tool = fake_tool(tmp_path, "neuron-ls", "import sys\nsys.stderr.write('level=fatal msg=\"failed to discover Neuron devices\"\\n')\nsys.exit(1)")
    with pytest.raises(NeuronExportError, match="failed to discover Neuron devices"):
        system.read_neuron_ls(tool)


def test_neuron_monitor_keeps_the_latest_report(tmp_path):
    reports = [monitor_report({0: (10.0, {"tensors": 1})}), monitor_report({0: (90.0, {"tensors": 2})})]
    lines = [json.dumps(report) for report in reports] + ["partial {"]
    tool = fake_tool(tmp_path, "neuron-monitor", f"""
import json, sys, time
config = json.load(open(sys.argv[sys.argv.index('-c') + 1]))
assert config['period'] == '1s', config
for line in {json.dumps(lines)}:
    print(line, flush=True)
time.sleep(60)
""")
    monitor = system.NeuronMonitor(tool)
    try:
        deadline = time.time() + 10
        while time.time() < deadline and (monitor.latest() or {}) != reports[-1]:
            time.sleep(0.05)
        assert monitor.latest() == reports[-1]  # the trailing partial line is skipped
        assert monitor.running and monitor.age_s is not None
        assert system.parse_neuron_monitor(monitor.latest())[0].utilization == 90.0
    finally:
        monitor.stop()
    assert not monitor.running


def test_host_snapshot_measures_a_busy_process_group(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "import os\nos.fork()\nwhile True: pass"], start_new_session=True)
    try:
        time.sleep(0.3)
        snapshot = system.host_snapshot(tmp_path, [busy.pid], interval=0.5)
        group = snapshot.groups[busy.pid]
        assert group.processes == 2  # the process and its forked child: the whole group
        assert group.cpu_percent > 20  # two spinning processes on a shared 2-core host
        assert group.rss == pytest.approx(sum(p.memory_info().rss for p in [psutil.Process(busy.pid), *psutil.Process(busy.pid).children()]), rel=0.2)
    finally:
        os.killpg(busy.pid, 9)
        busy.wait()
    assert len(snapshot.cpu_percent) == psutil.cpu_count()
    assert all(0 <= p <= 100 for p in snapshot.cpu_percent)
    assert snapshot.memory.total == psutil.virtual_memory().total
    assert snapshot.disk.total == shutil.disk_usage(tmp_path).total
    assert 0 < snapshot.memory.percent < 100


def test_host_snapshot_ignores_groups_that_are_gone(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    finished.wait()
    assert system.host_snapshot(tmp_path, [finished.pid], interval=0.05).groups == {}
