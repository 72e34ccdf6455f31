"""The stand-in's view of the host's Neuron hardware (tests only): the driver's device nodes and the
EC2 instance type (the DMI product name, as on EC2; else what the emulation says in
NEURON_STANDIN_INSTANCE_TYPE, standing in for the instance metadata the real neuron-ls reads).
No torch import: `neuron-ls` uses it too."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Optional

FAMILIES = ("inf2", "trn1", "trn1n", "trn2")
CORES_PER_DEVICE = {"trn2": 8}  # every other family: 2
DMI_PRODUCT_NAME = "/sys/devices/virtual/dmi/id/product_name"


def device_nodes() -> list[str]:
    return sorted(glob.glob("/dev/neuron*"))


def instance_type() -> Optional[str]:
    try:
        name = Path(DMI_PRODUCT_NAME).read_text().strip()
    except OSError:
        name = ""
    if name.split(".")[0].lower() not in FAMILIES:
        name = os.environ.get("NEURON_STANDIN_INSTANCE_TYPE", "")
    return name if name.split(".")[0].lower() in FAMILIES else None


def host_family() -> Optional[str]:
    name = instance_type()
    return name.split(".")[0].lower() if name else None


def cores_per_device() -> int:
    return CORES_PER_DEVICE.get(host_family() or "", 2)


def visible_cores() -> list[int]:
    """The NeuronCores this process may use: every core of every device, or NEURON_RT_VISIBLE_CORES."""
    count = len(device_nodes()) * cores_per_device()
    visible = os.environ.get("NEURON_RT_VISIBLE_CORES")
    if visible:
        wanted = []
        for part in visible.split(","):
            first, _, last = part.partition("-")
            wanted += range(int(first), int(last or first) + 1)
        count = min(count, len(wanted))
    return list(range(count))
