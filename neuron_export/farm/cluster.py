"""Connecting to a Ray cluster, or starting a local one that listens on loopback only.

Ray 2.60 on Linux rewrites 127.0.0.1 to the host's external address unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (research notes, section 6.1): with it, every listener (GCS,
raylet, agents, metrics, dashboard) binds loopback. Fixed default ports (dashboard 8265, metrics
44217/44227) are moved to free ones so two local clusters on one host do not collide. A cluster
started here is stopped by ray.shutdown() only: never `ray stop`, which kills every Ray process
on the host.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import tempfile
import threading
from typing import Any, Optional

from ..errors import NeuronExportError

RAY_INSTALL = 'pip install "neuron_export[ray]" (or: pip install -r requirements-ray.txt)'
ADDRESS_ENV = "NEURON_EXPORT_RAY_ADDRESS"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise NeuronExportError(f"the Ray executor needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _pin_loopback() -> None:
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
    _pin_loopback()
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
        temp_dir = tempfile.mkdtemp(prefix="neuron-export-ray-")
        atexit.register(shutil.rmtree, temp_dir, True)  # runs after ray.init's own exit hook (last in, first out)
        return start_local(temp_dir=temp_dir, log_to_driver=True)
    if address.split("://")[-1].split(":")[0] in ("127.0.0.1", "localhost"):
        _pin_loopback()  # a cluster of this host: this driver's own listeners on loopback too
    try:
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise NeuronExportError(f"cannot reach the Ray cluster at {address}: {str(error).splitlines()[0][:200]}") from None
    return ray
