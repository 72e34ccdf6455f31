"""Jobs survive a locked database, and never see the dashboard's password.

A real SQLite file locked by another process, a real dispatcher and worker, a real job subprocess.
"""

import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from studio.environment import PASSWORD_ENV
from studio.jobs import Dispatcher, JobStatus, JobStore
from studio.jobs.store import BUSY_TIMEOUT_S

# A job that runs for a while, reporting progress, then succeeds.
SLOW_JOB = textwrap.dedent("""
    import json, os, sys, time
    for step in range(int(sys.argv[1])):
        with open(os.environ["NEURON_EXPORT_EVENTS"], "a") as events:
            events.write(json.dumps({"type": "stage", "stage": "compiling", "fraction": step / 100, "message": str(step)}) + "\\n")
        time.sleep(1)
    print("job done", flush=True)
""")

LOCKER = textwrap.dedent("""
    import sqlite3, sys, time
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")  # no other connection may read or write
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    connection.execute("COMMIT")
""")

LOCK_S = 20.0  # longer than SQLite's busy timeout (and than the old 15 s that killed the job)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(120)
def test_an_exclusive_lock_for_20_s_never_fails_a_healthy_job(tmp_path):
    assert LOCK_S > BUSY_TIMEOUT_S
    store = JobStore(tmp_path / "jobs.db")
    # A short heartbeat limit, so the dispatcher too would give up on the job if the lock counted against it.
    dispatcher = Dispatcher(store, poll_interval_s=0.2, stale_after_s=8)
    dispatcher.start()
    job = store.submit("test", [sys.executable, "-c", SLOW_JOB, "30"], title="slow")
    try:
        wait_until(lambda: (store.get(job.id).progress or 0) > 0.01, 30, "the job to report progress")
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(store.db_path), str(LOCK_S)], stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline().strip() == "locked"
        locker.wait(timeout=LOCK_S + 30)
        finished = wait_until(lambda: (j := store.get(job.id)).is_finished and j, 60, "the job to finish")
    finally:
        dispatcher.stop()
    assert finished.status == JobStatus.SUCCEEDED, (finished.message, store.log_tail(job.id))
    assert finished.exit_code == 0 and "job done" in store.log_tail(job.id)


def test_a_store_operation_waits_out_a_lock_instead_of_failing(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    job = store.submit("test", ["true"], title="t")
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(store.db_path), str(BUSY_TIMEOUT_S + 2)],
                              stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    started = time.monotonic()
    store.update(job.id, message="after the lock")  # more than one busy timeout: retried, not raised
    assert time.monotonic() - started > BUSY_TIMEOUT_S
    assert store.get(job.id).message == "after the lock"
    locker.wait(timeout=30)


def test_a_store_gives_up_only_after_its_retry_budget(tmp_path):
    store = JobStore(tmp_path / "jobs.db", busy_retry_s=0.5)
    job = store.submit("test", ["true"], title="t")
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(store.db_path), str(BUSY_TIMEOUT_S * 3)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.update(job.id, message="never")
    finally:
        locker.kill()
        locker.wait()


@pytest.mark.timeout(60)
def test_jobs_never_see_the_dashboard_password(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-password")
    store = JobStore(tmp_path / "jobs.db")
    dispatcher = Dispatcher(store, poll_interval_s=0.1)
    probe = "import os; print('password:', os.environ.get('NEURON_EXPORT_PASSWORD')); print('workspace-env:', 'PATH' in os.environ)"
    job = store.submit("test", [sys.executable, "-c", probe], title="env")
    try:
        dispatcher.start()
        wait_until(lambda: store.get(job.id).is_finished, 45, "the job to finish")
    finally:
        dispatcher.stop()
    log = store.log_tail(job.id)
    assert "password: None" in log and "workspace-env: True" in log, log
    assert "s3cret-password" not in log
    assert os.environ[PASSWORD_ENV] == "s3cret-password"  # the server keeps it
