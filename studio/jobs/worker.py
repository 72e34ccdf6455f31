"""Runs one job: `python -m studio.jobs.worker --db DB --job ID`, started by the Dispatcher.

Output: the worker's stdout/stderr are the job's log file and the job's command inherits them.

Events: the job learns where to append its JSON-lines events (the neuron_export CLI's `--events` format) in two ways:
  * for the neuron_export CLI's job kinds (commands.CLI_KINDS: export, benchmark) `--events <jobs/ID/events.jsonl>`
    is appended to argv, as that CLI expects;
  * for every kind the same path is in the environment variable NEURON_EXPORT_EVENTS (for other commands).
The worker tails that file into stage / progress / message / artifact / validation_passed, the stage
timeline (stages: each step's stage, component, index of total and start time) and the chosen backend
(the "plan" event), and beats every ~2 s. A job that succeeds ends at stage "done".

Farm jobs (studio/jobs/farm.py): the command runs as a Ray job on the cluster, and the worker follows
it (RayJobProcess stands in for the child: its log is copied into the job's, Cancel stops it). A
follower that loses contact with the cluster records the job interrupted: its Ray job may run on.

Stopping: the job runs in the worker's process group (the dispatcher starts the worker in a new session).
On SIGTERM (JobStore.cancel signals the whole group) or on seeing the store's cancel flag, the job gets
STOP_GRACE_S to exit by itself. Whatever happens, the worker records the final status and then SIGKILLs
its own group, itself included: that one call also reaches anything the job left behind.
"""

import argparse
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback

from neuron_export.errors import NeuronExportError
from studio.jobs.commands import CLI_KINDS
from studio.jobs.farm import LostContact, RayJobProcess, farm_of
from studio.jobs.store import Job, JobStatus, JobStore, is_busy

EVENTS_ENV = "NEURON_EXPORT_EVENTS"
HEARTBEAT_INTERVAL_S = 2.0
STOP_GRACE_S = 5.0
_POLL_INTERVAL_S = 0.1
RECORD_RETRY_S = 5.0
# Exit codes of a job stopped by SIGINT/SIGTERM/SIGKILL: the CLI's 130, a shell's 128+N, or Popen's -N.
_STOPPED_EXIT_CODES = {130, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL}


class _EventsFile:
    """The job's events file, read incrementally: each read returns the job columns its new lines set."""

    def __init__(self, path: str):
        self.path = path
        self.error_message: str | None = None  # from the last "error" event
        self.stages: list[dict] = []  # the job's stage timeline so far
        self._offset = 0

    def read_updates(self) -> dict:
        try:
            with open(self.path, "rb") as events_file:
                events_file.seek(self._offset)
                data = events_file.read()
        except FileNotFoundError:
            return {}
        complete = data[: data.rfind(b"\n") + 1]  # a half-written last line waits for the next read
        self._offset += len(complete)
        updates = {}
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a garbled line must not stop the bookkeeping
            if isinstance(event, dict):
                updates.update(self._updates_from(event))
        return updates

    def _updates_from(self, event: dict) -> dict:
        if event.get("type") == "stage":
            updates = {"stage": event.get("stage"), "message": event.get("message")}
            if isinstance(event.get("fraction"), (int, float)):
                updates["progress"] = min(1.0, max(0.0, float(event["fraction"])))
            if self._record_step(event):
                updates["stages"] = list(self.stages)
            return updates
        if event.get("type") == "plan":
            return {"backend": event.get("backend")}
        if event.get("type") == "done":
            updates = {"stage": "done", "validation_passed": event.get("validation_passed"), "progress": 1.0}
            if event.get("artifact"):
                updates["artifact"] = event["artifact"]
            return updates
        if event.get("type") == "error":
            self.error_message = event.get("message")
            return {"message": self.error_message}
        return {}

    def _record_step(self, event: dict) -> bool:
        """Add a step to the timeline unless it is the current one again (a benchmark reports its
        rounds as repeats of one step) or the closing "done"; whether it was added."""
        if event.get("stage") == "done" or not isinstance(event.get("index"), int):
            return False
        step = {"stage": event.get("stage"), "component": event.get("component"), "index": event["index"],
                "total": event.get("total"), "at": event.get("time") if isinstance(event.get("time"), (int, float)) else time.time()}
        if self.stages and {**self.stages[-1], "at": None} == {**step, "at": None}:
            return False
        self.stages.append(step)
        return True


def run_job(store: JobStore, job_id: str, sigterm: threading.Event) -> None:
    """Run the job claimed by the dispatcher and record its outcome; `sigterm` is set when SIGTERM arrives."""
    job = store.get(job_id)
    if job is None or job.status != JobStatus.RUNNING:
        return  # not (or no longer) claimed for a run, e.g. cancelled meanwhile
    farm = farm_of(job)
    if job.cancel_requested and not (farm and farm["submitted"]):  # a submitted Ray job is stopped by following it
        _finish(store, job_id, JobStatus.CANCELLED, message="cancelled")
        return
    argv = job.argv + (["--events", job.events_path] if job.kind in CLI_KINDS else [])
    beating = threading.Event()  # beats from here on: reaching a Ray cluster may take seconds
    threading.Thread(target=_beat, args=(job.heartbeat_path, beating), daemon=True).start()
    try:
        child = _start(store, job, argv, sigterm)
    except (OSError, NeuronExportError) as error:
        beating.set()
        _finish(store, job_id, JobStatus.FAILED, message=str(error) if farm else f"could not start {argv[0]}: {error}")
        return
    events = _EventsFile(job.events_path)
    lost_contact = None
    grace_s = getattr(child, "stop_grace_s", STOP_GRACE_S)
    try:
        exit_code, pending = _supervise(store, job_id, child, sigterm, events, grace_s)
    except LostContact as error:  # its Ray job may run on: interrupted, not failed
        exit_code, pending, lost_contact = None, {}, str(error)
    finally:
        beating.set()
    if updates := {**pending, **events.read_updates()}:
        _until_recorded(lambda: store.update(job_id, **updates))
    job = _until_recorded(lambda: store.get(job_id))
    if lost_contact:
        status, fields = JobStatus.INTERRUPTED, {"message": lost_contact}
    elif exit_code is None:
        status = JobStatus.CANCELLED if job.cancel_requested else JobStatus.INTERRUPTED
        # a farm job's Ray job may outlive its follower: say so, and how to stop it
        killed = f"did not stop within {grace_s:.0f} s of SIGTERM; killed{getattr(child, 'killed_note', '')}"
        fields = {"message": killed}
    else:
        status, fields = _outcome(exit_code, job, events.error_message, store.log_tail(job_id, 4096))
        fields["exit_code"] = exit_code
    _finish(store, job_id, status, **fields)


def _start(store: JobStore, job: Job, argv: list[str], sigterm: threading.Event):
    """The job's command as a child process, or (a farm job) as a Ray job on its cluster, followed alike."""
    if farm_of(job):
        return RayJobProcess(store, job, sigterm, [*argv, "--executor", "ray", "--ray_address", "auto"])
    print(f"[studio] $ {shlex.join(argv)}", flush=True)
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, env={**os.environ, EVENTS_ENV: job.events_path})


def _finish(store: JobStore, job_id: str, status: JobStatus, **fields) -> None:
    """Record the final status and say it in the log."""
    _until_recorded(lambda: store.finish(job_id, status, **fields))
    detail = fields.get("message") or f"exit code {fields.get('exit_code')}"
    print(f"[studio] {status}: {detail}", flush=True)


def _supervise(store: JobStore, job_id: str, child, sigterm: threading.Event,
               events: _EventsFile, grace_s: float) -> tuple[int | None, dict]:
    """Wait for the child (a Popen or a RayJobProcess) while recording events and heartbeats; returns
    its exit code (None if it ignored SIGTERM for `grace_s`) and the updates not recorded yet. A locked database delays the
    bookkeeping, never the job."""
    next_heartbeat = kill_at = 0.0
    pending: dict = {}
    store_reachable = True
    while (exit_code := child.poll()) is None:
        now = time.monotonic()
        pending.update(events.read_updates())
        try:
            if pending:
                store.update(job_id, **pending)
                pending = {}
            if now >= next_heartbeat:
                next_heartbeat = now + HEARTBEAT_INTERVAL_S
                store.update(job_id, heartbeat_at=time.time())
                if store.get(job_id).cancel_requested and not sigterm.is_set():
                    os.killpg(os.getpgrp(), signal.SIGTERM)  # cancelled before its pid was recorded: signal ourselves
        except sqlite3.OperationalError as error:
            if not is_busy(error):
                raise
            if store_reachable:
                print(f"[studio] the job store is locked ({error}); the job carries on", flush=True)
            store_reachable = False
        else:
            store_reachable = True
        if sigterm.is_set() and not kill_at:
            kill_at = time.monotonic() + grace_s
        if kill_at and time.monotonic() >= kill_at:
            return None, pending
        time.sleep(_POLL_INTERVAL_S)
    return exit_code, pending


def _beat(path, stop: threading.Event) -> None:
    """Touch the job's heartbeat file every HEARTBEAT_INTERVAL_S until `stop`: the dispatcher sees a
    live worker even while the database is locked and the store's writes wait."""
    while not stop.is_set():
        try:
            path.touch()
        except OSError:
            pass  # the job folder was deleted meanwhile: the store's heartbeat still counts
        stop.wait(HEARTBEAT_INTERVAL_S)


def _until_recorded(operation):
    """Run a store operation until the database takes it: a job's outcome must not be lost to a lock."""
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as error:
            if not is_busy(error):
                raise
            print(f"[studio] the job store is locked ({error}); retrying", flush=True)
            time.sleep(RECORD_RETRY_S)


def _outcome(exit_code: int, job: Job, error_message: str | None, log_tail: str) -> tuple[JobStatus, dict]:
    """Final status and columns for a job that exited with `exit_code` (the neuron_export CLI's codes)."""
    if exit_code == 0:
        return JobStatus.SUCCEEDED, {"stage": "done", "progress": 1.0}
    if exit_code in _STOPPED_EXIT_CODES:
        if job.cancel_requested:
            return JobStatus.CANCELLED, {"message": "cancelled"}
        return JobStatus.INTERRUPTED, {"message": f"interrupted (exit code {exit_code})"}
    if exit_code == 1 and job.validation_passed is False:
        return JobStatus.FAILED, {"message": "validation failed"}
    last_line = next((line.strip() for line in reversed(log_tail.splitlines()) if line.strip()), None)
    return JobStatus.FAILED, {"message": error_message or last_line or f"exited with code {exit_code}"}


def main(argv: list[str] | None = None) -> None:
    sigterm = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: sigterm.set())
    parser = argparse.ArgumentParser(description="Run one studio job (started by studio.jobs.Dispatcher).")
    parser.add_argument("--db", required=True, help="the job store's SQLite file")
    parser.add_argument("--job", required=True, help="the job's id")
    args = parser.parse_args(argv)
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # started by hand: lead a group of our own, so the final SIGKILL stays within the job
    store = JobStore(args.db)
    try:
        run_job(store, args.job, sigterm)
    except Exception as error:
        traceback.print_exc()
        store.finish(args.job, JobStatus.FAILED, message=f"studio worker error: {error}")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.killpg(os.getpgrp(), signal.SIGKILL)


if __name__ == "__main__":
    main()
