"""Connecting to a Ray cluster, or starting a local one that listens on loopback only.

Ray 2.60 on Linux rewrites 127.0.0.1 to the host's external address unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (research notes, section 6.1): with it, every listener (GCS,
raylet, agents, metrics, dashboard) binds loopback. Fixed default ports (dashboard 8265, metrics
44217/44227) are moved to free ones so two local clusters on one host do not collide. A cluster
started here is stopped by ray.shutdown() only: never `ray stop`, which kills every Ray process
on the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

from ..errors import NeuronExportError

RAY_INSTALL = 'pip install "neuron_export[ray]" (or: pip install -r requirements-ray.txt)'
ADDRESS_ENV = "NEURON_EXPORT_RAY_ADDRESS"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
TEMP_PREFIX = "neuron-export-ray-"  # + the owning command's pid: a local cluster's files (logs, sockets)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise NeuronExportError(f"the Ray executor needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def is_loopback(address: str) -> bool:
    """Whether a Ray address ("host:port", "http://host:port") names this host's loopback."""
    return address.split("://")[-1].rsplit(":", 1)[0] in ("127.0.0.1", "localhost")


def pin_loopback() -> None:
    """Every Ray process of this host on 127.0.0.1: the environment reaches the processes ray.init
    starts; Ray read it into ray_constants when first imported, so the driver's copy is set too."""
    from ray._private import ray_constants

    os.environ.update(LOOPBACK_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_local(num_cpus: Optional[int] = None, temp_dir: Optional[str] = None, **init: Any) -> Any:
    """A Ray cluster of this host, listening on loopback only, owned by this process (ray.shutdown() stops it)."""
    ray = import_ray()
    pin_loopback()
    os.environ["AUTOSCALER_METRIC_PORT"] = str(free_port())
    os.environ["DASHBOARD_METRIC_PORT"] = str(free_port())
    ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=free_port(),
             _node_ip_address="127.0.0.1", _metrics_export_port=free_port(), _temp_dir=temp_dir, **init)
    return ray


def connect(address: Optional[str]) -> Any:
    """Ray, connected: to `address` (or $NEURON_EXPORT_RAY_ADDRESS), else to a new local cluster;
    a connection this process already has is reused."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    # ray.init installs a SIGTERM handler that aborts the process (core dump, staging folder left
    # behind); the CLI's handler unwinds like Ctrl-C, cancelling the tasks and removing staging.
    handler = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        return _connect(ray, address or os.environ.get(ADDRESS_ENV))
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def _connect(ray: Any, address: Optional[str]) -> Any:
    if not address:  # Ray's files in a folder of this command's own, not the /tmp/ray other clusters share
        return start_local(temp_dir=own_temp_dir(), log_to_driver=True)
    if is_loopback(address):
        pin_loopback()  # a cluster of this host: this driver's own listeners on loopback too
    try:
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise NeuronExportError(f"cannot reach the Ray cluster at {address}: {str(error).splitlines()[0][:200]}") from None
    return ray


def own_temp_dir() -> str:
    """A new folder for a local cluster's files. A janitor process (farm/janitor.py, in a session of
    its own) removes it once this process and the cluster have exited, however this process ends
    (Ctrl-C, SIGTERM, even SIGKILL); folders whose janitor was killed too are swept here."""
    for stale in stale_temp_dirs():
        shutil.rmtree(stale, ignore_errors=True)
    temp_dir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    subprocess.Popen([sys.executable, "-m", "neuron_export.farm.janitor", str(os.getpid()), temp_dir],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return temp_dir


def stale_temp_dirs() -> list[Path]:
    """Local cluster folders whose command is gone and that no process uses (their janitor was killed too)."""
    stale = []
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        owner = folder.name[len(TEMP_PREFIX):].split("-")[0]
        if owner.isdigit() and not process_alive(int(owner)) and not cluster_processes(str(folder)):
            stale.append(folder)
    return stale


def process_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def cluster_processes(temp_dir: str) -> list:
    """The processes of the local cluster whose files are in `temp_dir` (Ray passes it on every command line)."""
    import psutil  # Ray's dashboard needs it: present wherever Ray[default] is

    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in process.info["cmdline"] or ()):
                found.append(process)
        except psutil.Error:
            pass
    return found
