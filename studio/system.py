"""Host and Neuron device metrics for the System page: psutil, and the JSON of `neuron-monitor`
(the devices from `neuron-ls` are read by the engine: neuron_export.neuron_host).

Format (AWS Neuron tools docs):
- `neuron-monitor`: one JSON report per period on stdout; per-core figures live in
  neuron_runtime_data[].report.neuroncore_counters.neuroncores_in_use{"<core>": {"neuroncore_utilization": %}}
  and report.memory_used.neuron_runtime_used_bytes.usage_breakdown.neuroncore_memory_usage{"<core>": {kind: bytes}}.
Nothing here imports streamlit.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import psutil

from neuron_export import Manifest, read_manifest
from neuron_export.errors import NeuronExportError
from neuron_export.neuron_host import NEURON_TOOLS_DIR, NeuronDevice, find_neuron_tool, parse_neuron_ls, read_neuron_ls  # noqa: F401 (re-exported for the System page)

# neuron-monitor's config: one report a second with the per-core counters and memory.
MONITOR_CONFIG = {
    "period": "1s",
    "neuron_runtimes": [{"tag_filter": ".*", "metrics": [{"type": "neuroncore_counters"}, {"type": "memory_used"}]}],
    "system_metrics": [{"type": "memory_info"}],
}


# ---- host ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    used: int  # bytes
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


@dataclass(frozen=True)
class ProcessGroupUsage:
    """CPU and memory of one job: every process of its process group (worker, CLI, compiler)."""

    group: int
    processes: int
    cpu_percent: float  # 100 = one core busy
    rss: int  # bytes


@dataclass(frozen=True)
class HostSnapshot:
    cpu_percent: list[float]  # per logical core
    memory: Usage
    disk: Usage  # of the filesystem holding `disk_path`
    disk_path: str
    groups: dict[int, ProcessGroupUsage] = field(default_factory=dict)


def _group_members(groups: set[int]) -> dict[int, list[psutil.Process]]:
    members: dict[int, list[psutil.Process]] = {group: [] for group in groups}
    if not groups:
        return members
    for process in psutil.process_iter():
        try:
            group = os.getpgid(process.pid)
        except (OSError, psutil.Error):
            continue
        if group in members:
            members[group].append(process)
    return members


def _cpu_seconds(processes: Iterable[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
        except psutil.Error:
            continue
    return seconds


def host_snapshot(disk_path: str | os.PathLike, process_groups: Iterable[int] = (), interval: float = 0.25) -> HostSnapshot:
    """CPU per core and of each process group, measured over `interval` seconds; memory and disk now."""
    members = _group_members(set(process_groups))
    everyone = [p for processes in members.values() for p in processes]
    before = _cpu_seconds(everyone)
    started = time.perf_counter()
    per_core = psutil.cpu_percent(interval=interval, percpu=True)
    elapsed = time.perf_counter() - started
    after = _cpu_seconds(everyone)
    groups = {}
    for group, processes in members.items():
        alive = [p for p in processes if p.pid in after]
        if not alive:
            continue
        busy = sum(after[p.pid] - before.get(p.pid, after[p.pid]) for p in alive)
        groups[group] = ProcessGroupUsage(group, len(alive), 100.0 * busy / elapsed, sum(_rss(p) for p in alive))
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(disk_path))
    return HostSnapshot(per_core, Usage(memory.total - memory.available, memory.total), Usage(disk.used, disk.total),
                        str(disk_path), groups)


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


# ---- Neuron tools: the device list comes from the engine (neuron_export.neuron_host) -------------


@dataclass(frozen=True)
class CoreActivity:
    utilization: float  # percent
    memory_used: int  # bytes of device memory held by the runtimes on this core
    pids: tuple[int, ...]  # runtimes using it


def parse_neuron_monitor(report: dict[str, Any]) -> dict[int, CoreActivity]:
    """One neuron-monitor report -> activity per NeuronCore in use (cores without a runtime are absent)."""
    utilization: dict[int, float] = {}
    memory: dict[int, int] = {}
    pids: dict[int, list[int]] = {}
    for runtime in report.get("neuron_runtime_data") or []:
        body = runtime.get("report") or {}
        in_use = (body.get("neuroncore_counters") or {}).get("neuroncores_in_use") or {}
        for core, counters in in_use.items():
            core = int(core)
            utilization[core] = utilization.get(core, 0.0) + float((counters or {}).get("neuroncore_utilization") or 0.0)
            pids.setdefault(core, []).append(int(runtime.get("pid") or 0))
        used = ((body.get("memory_used") or {}).get("neuron_runtime_used_bytes") or {}).get("usage_breakdown") or {}
        for core, kinds in (used.get("neuroncore_memory_usage") or {}).items():
            core = int(core)
            memory[core] = memory.get(core, 0) + sum(int(v) for v in (kinds or {}).values() if isinstance(v, (int, float)))
            pids.setdefault(core, []).append(int(runtime.get("pid") or 0))
    return {
        core: CoreActivity(min(utilization.get(core, 0.0), 100.0), memory.get(core, 0), tuple(sorted(set(pids[core]))))
        for core in sorted(pids)
    }


def core_rows(devices: list[NeuronDevice], activity: dict[int, CoreActivity]) -> list[dict[str, Any]]:
    """One row per NeuronCore of the host: device, utilization, device memory used / its share."""
    rows = []
    for device in devices:
        for core in device.cores:
            active = activity.get(core)
            rows.append({
                "NeuronCore": core,
                "Device": device.index,
                "Utilization %": active.utilization if active else 0.0,
                "Memory used MB": (active.memory_used if active else 0) / 1e6,
                "Memory MB": device.memory_per_core / 1e6,
                "Processes": ", ".join(map(str, active.pids)) if active else "",
            })
    return rows


class NeuronMonitor:
    """`neuron-monitor` running in the background; `latest()` is its most recent report (None until the first)."""

    def __init__(self, tool: str):
        self._latest: Optional[dict[str, Any]] = None
        self._received_at = 0.0
        self._lock = threading.Lock()
        config = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="neuron-monitor-", delete=False)
        with config:
            json.dump(MONITOR_CONFIG, config)
        self.config_path = Path(config.name)
        self._process = subprocess.Popen([tool, "-c", str(self.config_path)], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, name="neuron-monitor-reader", daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue  # a partial or diagnostic line
            with self._lock:
                self._latest, self._received_at = report, time.time()
        self.config_path.unlink(missing_ok=True)

    def latest(self) -> Optional[dict[str, Any]]:
        with self._lock:
            return self._latest

    @property
    def age_s(self) -> Optional[float]:
        with self._lock:
            return time.time() - self._received_at if self._latest is not None else None

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        if self.running:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def neuron_placements(artifacts: dict[Path, Manifest]) -> list[dict[str, Any]]:
    """One row per component of the workspace's Neuron artifacts: the NeuronCores it is placed on at load
    (from its manifest: [0, 1] for the data-parallel SD UNet, [0] for the rest)."""
    rows = []
    for path, manifest in artifacts.items():
        if not manifest.is_neuron:
            continue
        parts = [(manifest.task, manifest)]
        if manifest.is_pipeline:
            parts = []
            for component in manifest.components:
                try:
                    parts.append((component, read_manifest(path / component)))
                except NeuronExportError:
                    continue  # a damaged component: the Artifacts page shows it
        for name, part in parts:
            cores = part.neuron_cores or [0]
            rows.append({"Artifact": path.name, "Component": name, "NeuronCores": ", ".join(map(str, cores)),
                         "Copies": len(cores), "Compiled for": part.target or "inf2 / trn1"})
    return rows
