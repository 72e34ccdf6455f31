"""A job's processes: its worker leads a process group (session) that holds the job's command and
everything it spawned. The store signals it to cancel a job; the dispatcher to clean up after one.

These take a Job (its pid and the pid's creation time) and import nothing from the store, so the
store and the dispatcher can both use them.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from .store import Job


def _worker_process(job: Job) -> psutil.Process | None:
    """The job's worker process (possibly a zombie), unless its pid is gone or now names another process."""
    if job.pid is None or job.pid_create_time is None:
        return None
    try:
        process = psutil.Process(job.pid)
        if abs(process.create_time() - job.pid_create_time) < 0.05:
            return process
    except psutil.Error:
        pass
    return None


def worker_alive(job: Job) -> bool:
    process = _worker_process(job)
    try:
        return process is not None and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_job_group(job: Job, sig: int) -> None:
    """Send `sig` to the job's process group: the worker, the job and everything they spawned.

    Linux never reuses a pid while a process group of that number exists, so if the pid now names an
    unrelated process, the job's group is already empty and nothing is sent.
    """
    if job.pid is None or (psutil.pid_exists(job.pid) and _worker_process(job) is None):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.pid, sig)
