"""Job store, dispatcher and worker against a real SQLite file and real subprocesses running a fake job."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from neuron_export.errors import NeuronExportError
from studio.jobs import Dispatcher, JobStatus, JobStore, signal_job_group
from studio.workspace import Workspace

pytestmark = pytest.mark.timeout(45)

FAKE_JOB = textwrap.dedent('''
    """Fake job: `fake_job.py MODE [ARG]`; appends events to --events PATH, else to $NEURON_EXPORT_EVENTS."""
    import json, os, signal, subprocess, sys, time

    args = sys.argv[1:]
    events_path = args[args.index("--events") + 1] if "--events" in args else os.environ["NEURON_EXPORT_EVENTS"]
    mode, arg = args[0], args[1] if len(args) > 1 else None

    def emit(**event):
        with open(events_path, "a") as events_file:
            events_file.write(json.dumps(event) + "\\n")

    def wait_for_file(path):
        deadline = time.time() + 30
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.02)

    emit(type="stage", stage="loading", index=1, total=5, fraction=0.1, message="loading model", time=time.time())
    if mode == "succeed":
        print("hello from the job", flush=True)
        emit(type="stage", stage="saving", index=4, total=5, fraction=0.8, message="saving", time=time.time())
        emit(type="done", artifact=arg, validation_passed=True)
    elif mode == "bad-input":
        emit(type="error", message="unknown model 'nope'", exit_code=2)
        print("error: unknown model 'nope'", file=sys.stderr)
        sys.exit(2)
    elif mode == "crash":
        raise RuntimeError("boom")
    elif mode == "wait-for":
        wait_for_file(arg)
    elif mode == "spawn-and-sleep":
        if "ignore-sigterm" in args:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen(["sleep", "60"])
        with open(arg + ".tmp", "w") as pid_file:
            pid_file.write(f"{os.getpid()} {grandchild.pid}")
        os.rename(arg + ".tmp", arg)
        time.sleep(60)
''')


@pytest.fixture
def fake_job(tmp_path):
    script = tmp_path / "fake_job.py"
    script.write_text(FAKE_JOB)
    return lambda *args: [sys.executable, str(script), *map(str, args)]


@pytest.fixture
def store(tmp_path):
    store = JobStore(tmp_path / "workspace" / "jobs.db")
    yield store
    for job in store.list(limit=None, statuses=[JobStatus.RUNNING]):  # never leave processes behind
        signal_job_group(job, signal.SIGKILL)


@pytest.fixture
def dispatcher(store):
    dispatcher = Dispatcher(store, poll_interval_s=0.05)
    yield dispatcher
    dispatcher.stop()


def wait_for(condition, dispatcher=None, timeout=15.0):
    """Poll `condition` (ticking `dispatcher` first) until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dispatcher is not None:
            dispatcher.tick()
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"still false after {timeout} s: {condition.__doc__ or condition}")


def wait_for_status(store, job_id, status, dispatcher=None, timeout=15.0):
    """Wait until the job has `status` (or has finished otherwise), then check that it is `status`."""
    wait_for(lambda: store.get(job_id).status == status or store.get(job_id).is_finished, dispatcher, timeout)
    job = store.get(job_id)
    assert job.status == status, (job, store.log_tail(job_id))
    return job


def read_pids(path, store, job_id, dispatcher):
    """The pids the fake job wrote to `path` (itself and its grandchild)."""
    wait_for(lambda: path.exists() or store.get(job_id).is_finished, dispatcher)
    assert path.exists(), (store.get(job_id), store.log_tail(job_id))
    return [int(pid) for pid in path.read_text().split()]


def process_gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_export_job_succeeds_with_stage_progress_and_artifact_from_events(store, dispatcher, fake_job, tmp_path):
    artifact = str(tmp_path / "workspace" / "artifacts" / "bert_neuron")
    job = store.submit("export", fake_job("succeed", artifact), "Export bert", metadata={"model": "bert"})
    assert job.status == JobStatus.QUEUED and job.elapsed_s == 0.0
    dispatcher.start()
    dispatcher.start()  # idempotent

    job = wait_for_status(store, job.id, JobStatus.SUCCEEDED)
    assert (job.stage, job.progress, job.artifact) == ("done", 1.0, artifact)  # the last step was "saving"; a success ends "done"
    assert job.validation_passed is True and job.exit_code == 0
    assert job.metadata == {"model": "bert"} and job.elapsed_s > 0
    assert "hello from the job" in store.log_tail(job.id)


def test_bad_input_fails_with_the_error_event_message(store, dispatcher, fake_job):
    job = store.submit("export", fake_job("bad-input"), "Export nope")
    job = wait_for_status(store, job.id, JobStatus.FAILED, dispatcher)
    assert (job.exit_code, job.message) == (2, "unknown model 'nope'")


def test_other_kinds_get_the_events_path_by_env_and_a_crash_reports_its_last_line(store, dispatcher, fake_job):
    job = store.submit("custom", fake_job("crash"), "Crash")
    job = wait_for_status(store, job.id, JobStatus.FAILED, dispatcher)
    assert (job.stage, job.exit_code, job.message) == ("loading", 1, "RuntimeError: boom")


def test_queue_runs_one_job_at_a_time_in_submission_order(store, dispatcher, fake_job, tmp_path):
    go_file = tmp_path / "go"
    first = store.submit("export", fake_job("wait-for", go_file), "first")
    second = store.submit("export", fake_job("succeed", "a2"), "second")
    third = store.submit("export", fake_job("succeed", "a3"), "third")

    wait_for(lambda: store.get(first.id).stage == "loading", dispatcher)
    for _ in range(5):
        dispatcher.tick()
    assert [store.get(job.id).status for job in (first, second, third)] == [
        JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.QUEUED]

    go_file.touch()
    first, second, third = (wait_for_status(store, job.id, JobStatus.SUCCEEDED, dispatcher)
                            for job in (first, second, third))
    assert first.finished_at <= second.started_at and second.finished_at <= third.started_at


def test_cancel_queued_job(store, dispatcher, fake_job):
    job = store.submit("export", fake_job("succeed", "a"), "queued")
    assert store.cancel(job.id)
    dispatcher.tick()
    job = store.get(job.id)
    assert (job.status, job.started_at, job.message) == (JobStatus.CANCELLED, None, "cancelled")
    assert not store.cancel(job.id)


def test_cancel_running_job_kills_its_process_tree(store, dispatcher, fake_job, tmp_path):
    pid_file = tmp_path / "pids"
    job = store.submit("export", fake_job("spawn-and-sleep", pid_file), "sleeper")
    job_pid, grandchild_pid = read_pids(pid_file, store, job.id, dispatcher)

    assert store.cancel(job.id)
    job = wait_for_status(store, job.id, JobStatus.CANCELLED, dispatcher, timeout=5)
    assert job.exit_code == -signal.SIGTERM
    wait_for(lambda: process_gone(job_pid) and process_gone(grandchild_pid), timeout=5)


def test_cancel_escalates_to_sigkill_when_the_job_ignores_sigterm(store, dispatcher, fake_job, tmp_path):
    pid_file = tmp_path / "pids"
    job = store.submit("export", fake_job("spawn-and-sleep", pid_file, "ignore-sigterm"), "stubborn")
    job_pid, grandchild_pid = read_pids(pid_file, store, job.id, dispatcher)

    assert store.cancel(job.id)
    job = wait_for_status(store, job.id, JobStatus.CANCELLED, dispatcher, timeout=12)
    assert "killed" in job.message
    wait_for(lambda: process_gone(job_pid) and process_gone(grandchild_pid), timeout=5)


def test_restart_marks_job_of_killed_worker_interrupted_and_kills_its_orphans(store, dispatcher, fake_job,
                                                                               tmp_path):
    pid_file = tmp_path / "pids"
    job = store.submit("export", fake_job("spawn-and-sleep", pid_file), "orphaned")
    job_pid, grandchild_pid = read_pids(pid_file, store, job.id, dispatcher)
    os.kill(store.get(job.id).pid, signal.SIGKILL)
    wait_for(lambda: process_gone(store.get(job.id).pid))

    Dispatcher(store)  # a server restart
    job = store.get(job.id)
    assert job.status == JobStatus.INTERRUPTED and "worker process is gone" in job.message
    wait_for(lambda: process_gone(job_pid) and process_gone(grandchild_pid), timeout=5)


def test_tick_interrupts_running_jobs_with_a_dead_worker_or_a_stale_heartbeat(store, fake_job):
    dispatcher = Dispatcher(store, stale_after_s=5)
    finished_process = subprocess.Popen([sys.executable, "-c", "pass"])
    finished_process.wait()
    dead_worker = store.submit("export", fake_job("succeed", "a"), "dead worker")
    store.update(dead_worker.id, status=JobStatus.RUNNING, pid=finished_process.pid,
                 pid_create_time=time.time() - 1, started_at=time.time(), heartbeat_at=time.time())
    silent = store.submit("export", fake_job("succeed", "a"), "silent")
    store.update(silent.id, status=JobStatus.RUNNING, started_at=time.time(), heartbeat_at=time.time() - 60)

    dispatcher.tick()
    assert store.get(dead_worker.id).status == JobStatus.INTERRUPTED
    assert store.get(silent.id).status == JobStatus.INTERRUPTED
    assert "no heartbeat" in store.get(silent.id).message


def test_jobs_survive_reopening_the_store(store, fake_job):
    first = store.submit("export", fake_job("succeed", "a"), "first", artifact="/w/a", metadata={"n": 1})
    second = store.submit("benchmark", fake_job("succeed", "b"), "second")
    store.cancel(second.id)

    reopened = JobStore(store.db_path)
    assert reopened.get(first.id) == first
    assert [job.id for job in reopened.list()] == [second.id, first.id]
    assert [job.id for job in reopened.list(statuses=[JobStatus.QUEUED])] == [first.id]
    assert reopened.delete_finished() == 1 and reopened.get(second.id) is None
    assert not reopened.delete(first.id)  # still queued


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", "..", ".hidden", "a b", "x" * 101])
def test_artifact_path_rejects_unsafe_names(tmp_path, name):
    with pytest.raises(NeuronExportError, match="Invalid output name"):
        Workspace(tmp_path).artifact_path(name)


def test_workspace_layout_artifact_path_and_listing(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_WORKSPACE", str(tmp_path / "ws"))
    workspace = Workspace()
    assert workspace.root == tmp_path / "ws"
    assert all(folder.is_dir() for folder in (workspace.artifacts_dir, workspace.jobs_dir, workspace.demo_dir,
                                              workspace.cache_dir))
    assert workspace.artifact_path("bert_neuron") == workspace.artifacts_dir / "bert_neuron"
    (workspace.artifacts_dir / "bert_neuron").mkdir()
    (workspace.artifacts_dir / "bert_neuron" / "manifest.json").write_text("{}")
    (workspace.artifacts_dir / "half_written").mkdir()
    assert workspace.list_artifacts() == [workspace.artifacts_dir / "bert_neuron"]


def test_a_job_id_starting_with_a_dash_reaches_the_worker(store, dispatcher, fake_job, monkeypatch):
    monkeypatch.setattr("secrets.token_urlsafe", lambda nbytes: "-dashed1")
    job = store.submit("export", fake_job("succeed", "a"), "dashed id")
    assert wait_for_status(store, job.id, JobStatus.SUCCEEDED, dispatcher).id == "-dashed1"
