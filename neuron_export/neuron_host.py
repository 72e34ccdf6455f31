"""This host's Neuron hardware: device nodes, `neuron-ls`, the instance type and the NeuronCores.

The signals are the ones AWS's own tools use: the driver's device nodes (/dev/neuron0, ...), the
Neuron tools (`neuron-ls --json-output`, on PATH or in the SDK's folder) and the EC2 instance type
(the DMI product name, or the header of `neuron-ls`). Nothing here imports torch or streamlit.

`neuron-ls --json-output` (AWS Neuron tools docs): a list of devices, each {"neuron_device": 0,
"nc_count": 2, "memory_size": bytes, "neuroncore_ids": [0, 1] (newer tools), "neuron_processes":
[{"pid": ..., "command": ...}], ...}; on a host without devices it exits non-zero.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import NeuronExportError, first_line

DEVICE_GLOB = "/dev/neuron*"
# Where the Neuron SDK installs its tools when they are not on PATH.
NEURON_TOOLS_DIR = "/opt/aws/neuron/bin"
NEURON_LS_TIMEOUT_S = 15
DMI_PRODUCT_NAME = Path("/sys/devices/virtual/dmi/id/product_name")
# NeuronCores per device and their generation, by instance family. inf2 and trn1 share NeuronCore-v2:
# one compile target; trn2 is the next generation and runs none of their artifacts.
CORES_PER_DEVICE = {"inf2": 2, "trn1": 2, "trn1n": 2, "trn2": 8}
CORE_GENERATION = {"inf2": "NeuronCore-v2", "trn1": "NeuronCore-v2", "trn1n": "NeuronCore-v2", "trn2": "NeuronCore-v3"}


def device_nodes() -> list[str]:
    """The Neuron driver's device nodes on this host (/dev/neuron0, ...)."""
    return sorted(glob.glob(DEVICE_GLOB))


def neuron_device_present() -> bool:
    return bool(device_nodes())


def find_neuron_tool(name: str) -> Optional[str]:
    """Path of a Neuron tool (neuron-ls, neuron-monitor) on PATH or in the SDK's folder, else None."""
    return shutil.which(name) or shutil.which(name, path=NEURON_TOOLS_DIR)


@dataclass(frozen=True)
class NeuronDevice:
    index: int
    cores: list[int]  # global NeuronCore ids
    memory: int  # bytes of device memory
    processes: list[tuple[int, str]]  # (pid, command)

    @property
    def memory_per_core(self) -> int:
        return self.memory // len(self.cores) if self.cores else 0


def parse_neuron_ls(text: str) -> list[NeuronDevice]:
    """`neuron-ls --json-output` -> the devices; NeuronExportError if it is not that format."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise NeuronExportError(f"neuron-ls printed no JSON: {first_line(error)}") from None
    if not isinstance(data, list):
        raise NeuronExportError("neuron-ls JSON is not a list of devices (a newer format?)")
    devices, next_core = [], 0
    for entry in data:
        try:
            count = int(entry["nc_count"])
            cores = [int(c) for c in entry.get("neuroncore_ids") or range(next_core, next_core + count)]
            processes = [(int(p["pid"]), str(p.get("command", ""))) for p in entry.get("neuron_processes") or []]
            devices.append(NeuronDevice(int(entry["neuron_device"]), cores, int(entry.get("memory_size") or 0), processes))
        except (KeyError, TypeError, ValueError) as error:
            raise NeuronExportError(f"unexpected neuron-ls device entry ({type(error).__name__}: {error})") from None
        next_core = max(cores, default=next_core - 1) + 1
    return devices


def read_neuron_ls(tool: str) -> list[NeuronDevice]:
    try:
        done = subprocess.run([tool, "--json-output"], capture_output=True, text=True, timeout=NEURON_LS_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NeuronExportError(f"neuron-ls did not run: {first_line(error)}") from None
    if done.returncode != 0:
        raise NeuronExportError(f"neuron-ls failed: {first_line(done.stderr or done.stdout) or f'exit code {done.returncode}'}")
    return parse_neuron_ls(done.stdout)


def instance_type() -> Optional[str]:
    """The EC2 instance type (e.g. inf2.xlarge) when this is a Neuron instance: the DMI product name, or
    else the first line of `neuron-ls` (`instance-type: inf2.xlarge`, which it reads from the instance metadata)."""
    try:
        name = DMI_PRODUCT_NAME.read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    if instance_family(name) not in CORES_PER_DEVICE:
        name = _neuron_ls_instance_type() or ""
    return name if instance_family(name) in CORES_PER_DEVICE else None


def _neuron_ls_instance_type() -> Optional[str]:
    tool = find_neuron_tool("neuron-ls")
    if tool is None or not device_nodes():
        return None
    try:
        done = subprocess.run([tool], capture_output=True, text=True, timeout=NEURON_LS_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "instance-type":
            return value.strip()
    return None


def instance_family(instance: str) -> str:
    """'inf2.xlarge' -> 'inf2'; a bare family ('trn1') stays as it is."""
    return instance.split(".")[0].lower()


def core_generation(instance: Optional[str]) -> Optional[str]:
    """The NeuronCore generation of an instance type or family (None when unknown)."""
    return CORE_GENERATION.get(instance_family(instance)) if instance else None


def _parse_core_list(text: str) -> list[int]:
    """NEURON_RT_VISIBLE_CORES syntax: '0', '0-1', '0,2,3'."""
    cores: list[int] = []
    for part in text.replace(" ", "").split(","):
        if "-" in part:
            first, last = part.split("-", 1)
            cores += range(int(first), int(last) + 1)
        elif part:
            cores.append(int(part))
    return cores


@dataclass(frozen=True)
class NeuronHost:
    """What this host offers Neuron: device nodes, the devices neuron-ls lists (or why not), the cores a process sees."""

    nodes: list[str]
    instance: Optional[str]
    devices: list[NeuronDevice] = field(default_factory=list)
    neuron_ls: Optional[str] = None  # the tool's path
    neuron_ls_problem: Optional[str] = None  # why it listed nothing

    @property
    def cores(self) -> list[int]:
        """The NeuronCores a process here may use (NEURON_RT_VISIBLE_CORES narrows them), numbered from 0."""
        if self.devices:
            count = sum(len(d.cores) for d in self.devices)
        else:  # no tool output: the driver's nodes times the cores of this instance family
            count = len(self.nodes) * CORES_PER_DEVICE.get(instance_family(self.instance or "inf2"), 2)
        visible = os.environ.get("NEURON_RT_VISIBLE_CORES")
        if visible:
            try:
                count = min(count, len(_parse_core_list(visible)))
            except ValueError:
                pass  # the runtime reports a malformed value itself
        return list(range(count)) if self.nodes else []


def survey(with_tools: bool = True) -> NeuronHost:
    """This host's Neuron devices; with_tools also runs neuron-ls (a subprocess, < 1 s when it is there)."""
    nodes = device_nodes()
    tool = find_neuron_tool("neuron-ls") if with_tools else None
    devices, problem = [], None
    if tool and nodes:
        try:
            devices = read_neuron_ls(tool)
        except NeuronExportError as error:
            problem = str(error)
    return NeuronHost(nodes, instance_type(), devices, tool, problem)
