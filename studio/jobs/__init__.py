"""Background jobs: a SQLite store that pages poll (store), a dispatcher that runs queued jobs as
subprocesses (dispatcher, processes), the worker that supervises one job (worker), and the command
lines of the jobs a page can ask for (commands)."""

from . import farm
from .commands import BENCHMARK, CLI_KINDS, EXPORT, benchmark_command, cli_command, export_command
from .dispatcher import STALE_HEARTBEAT_S, Dispatcher
from .processes import signal_job_group, worker_alive
from .store import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus, JobStore

__all__ = [
    "Job", "JobStatus", "JobStore", "ACTIVE_STATUSES", "FINISHED_STATUSES", "Dispatcher", "STALE_HEARTBEAT_S",
    "worker_alive", "signal_job_group", "EXPORT", "BENCHMARK", "CLI_KINDS", "cli_command", "export_command",
    "benchmark_command", "farm",
]
