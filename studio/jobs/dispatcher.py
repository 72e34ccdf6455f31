"""The dispatcher: one per server process, it starts queued jobs as worker subprocesses and
reconciles running ones.

Streamlit stops in-script work whenever a widget is touched, so every job runs as
`python -m studio.jobs.worker --db DB --job ID` in its own process group (session); the worker runs
the job's argv and records progress in the store. Any process may read the store; the dispatcher
starts queued jobs and marks jobs whose worker vanished as interrupted, except a farm job
(studio/jobs/farm.py): its Ray job runs on the cluster, so a new worker follows it again.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from studio.environment import PRIVATE_ENV

from .commands import EXPORT, PROJECT_ROOT
from .farm import farm_address, farm_of, tag_farm_job
from .processes import signal_job_group, worker_alive
from .store import Job, JobStatus, JobStore

STALE_HEARTBEAT_S = 30.0  # workers beat every ~2 s; this much silence means the worker is hung or gone
WORKER_MODULE = "studio.jobs.worker"

log = logging.getLogger(__name__)


class Dispatcher:
    """Starts queued jobs (submission order, at most `max_concurrent` running) and reconciles running ones.

    Constructing one (at server start) already marks jobs whose worker died as interrupted. `start()` runs
    `tick()` every `poll_interval_s` in a daemon thread; tests call `tick()` directly.
    """

    def __init__(self, store: JobStore, max_concurrent: int = 1, poll_interval_s: float = 1.0,
                 stale_after_s: float = STALE_HEARTBEAT_S):
        self.store = store
        self.max_concurrent = max_concurrent
        self.poll_interval_s = poll_interval_s
        self.stale_after_s = stale_after_s
        self._workers: dict[str, subprocess.Popen] = {}  # kept so that finished workers get reaped
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconcile()

    def start(self) -> None:
        """Start the background thread (no-op if it is already running)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="studio-dispatcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the background thread; running jobs carry on."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def tick(self) -> None:
        """One pass: reap finished workers, reconcile running jobs, start queued jobs while slots are free."""
        with self._lock:
            for job_id, worker in list(self._workers.items()):
                if worker.poll() is not None:
                    del self._workers[job_id]
            self.reconcile()
            while (job := self.store.claim_next(self.max_concurrent)) is not None:
                self._launch(job)

    def reconcile(self) -> None:
        """Finish running jobs whose worker is gone or silent, killing whatever is left of them."""
        for job in self.store.list(limit=None, statuses=[JobStatus.RUNNING]):
            # A job without a pid has just been claimed; its heartbeat dates from the claim.
            if job.pid is not None and not worker_alive(job):
                reason = "its worker process is gone"
            elif time.time() - job.last_beat() > self.stale_after_s:
                reason = f"no heartbeat for over {self.stale_after_s:.0f} s"
            else:
                continue
            signal_job_group(job, signal.SIGKILL)  # leave no orphaned compiler behind
            if farm_of(job):  # its Ray job runs on the cluster, not in the worker: follow it again
                log.info("job %s: following its Ray job again (%s)", job.id, reason)
                self._launch(job)
            elif job.cancel_requested:
                self.store.finish(job.id, JobStatus.CANCELLED, message="cancelled")
            else:
                self.store.finish(job.id, JobStatus.INTERRUPTED, message=f"interrupted: {reason}")

    def _launch(self, job: Job) -> None:
        if job.kind == EXPORT and farm_of(job) is None and (address := farm_address(self.store)):
            self.store.update(job.id, metadata=tag_farm_job(job, address))  # its worker runs it as a Ray job there
        env = {name: value for name, value in os.environ.items() if name not in PRIVATE_ENV}  # no password in jobs
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT_ROOT, env.get("PYTHONPATH")]))
        # `--job=ID`: an id may start with "-", which argparse would take for an option.
        argv = [sys.executable, "-m", WORKER_MODULE, f"--db={self.store.db_path}", f"--job={job.id}"]
        try:
            with open(job.log_path, "ab") as log_file:
                worker = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                          stderr=subprocess.STDOUT, env=env, start_new_session=True)
            create_time = psutil.Process(worker.pid).create_time()  # readable even if it already exited
        except (OSError, psutil.Error) as error:
            self.store.finish(job.id, JobStatus.FAILED, message=f"could not start the worker: {error}")
            return
        self._workers[job.id] = worker
        # A fresh beat: a worker that follows a farm job again must not look hung before its first one.
        self.store.update(job.id, pid=worker.pid, pid_create_time=create_time, heartbeat_at=time.time())

    def _loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # e.g. a long-locked database: log it and try again on the next pass
                log.exception("job dispatcher pass failed")
            if self._stop.wait(self.poll_interval_s):
                return
