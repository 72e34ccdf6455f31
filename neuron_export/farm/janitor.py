"""Removes a local Ray cluster's folder once the command that started it has exited, however it
ended (Ctrl-C, SIGTERM, SIGKILL: no exit hook of its own would run after SIGKILL, and Ray's
processes write sockets and metrics there until they exit, so a folder removed from inside the
command comes back). `python -m neuron_export.farm.janitor PID FOLDER`, started by
cluster.own_temp_dir in a session of its own, so signals to the command's group miss it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import psutil

from .cluster import cluster_processes, process_alive

POLL_S = 0.5
CLUSTER_EXIT_S = 30.0  # the cluster's processes stop when their driver does; the ones still there then are killed


def main(argv: list[str]) -> None:
    owner, folder = int(argv[0]), argv[1]
    while process_alive(owner):
        time.sleep(POLL_S)
    deadline = time.monotonic() + CLUSTER_EXIT_S
    while (left := _cluster(folder)) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    for process in left:  # processes of this folder's own cluster only (its path is on their command line)
        try:
            process.kill()
        except psutil.Error:  # gone meanwhile
            pass
    remove_folder(folder)


def remove_folder(folder: str) -> None:
    """Remove a stopped cluster's folder, again a few times: a dashboard module exiting late may write there once more."""
    for _ in range(3):
        shutil.rmtree(folder, ignore_errors=True)
        time.sleep(1.0)
    shutil.rmtree(folder, ignore_errors=True)


def _cluster(folder: str) -> list:
    return [p for p in cluster_processes(folder) if p.pid != os.getpid()]


if __name__ == "__main__":
    main(sys.argv[1:])
