"""A job's stage timeline, its words and its estimate: a real export of demo:tiny-sd run by the real
dispatcher and worker, job-store rows with known timings, and a job store made before the timeline."""

import json
import sqlite3
import sys
import time

import pytest

from neuron_export import ExportOptions, read_manifest
from studio.charts import compile_time_rows
from studio.jobs import Dispatcher, JobStatus, JobStore, commands, timeline

pytestmark = pytest.mark.timeout(180)

SD_COMPONENTS = ["text_encoder", "unet", "vae_encoder", "vae_decoder"]
STAGES = ["loading", "tracing", "compiling", "saving", "validating"]


@pytest.fixture(scope="module")
def sd_job(tmp_path_factory):
    """A finished export job of demo:tiny-sd (torchscript, no compile cache), as the dashboard runs one."""
    root = tmp_path_factory.mktemp("timeline")
    store = JobStore(root / "jobs.db")
    output = root / "artifacts" / "tiny-sd"
    options = ExportOptions(backend="torchscript", use_cache=False)
    job = store.submit(commands.EXPORT, commands.export_command("demo:tiny-sd", output, options), title="tiny-sd",
                       artifact=str(output), metadata={"model": "demo:tiny-sd", "task": "text-to-image", "options": options.to_dict()})
    dispatcher = Dispatcher(store, poll_interval_s=0.1)
    deadline = time.monotonic() + 170
    while not store.get(job.id).is_finished and time.monotonic() < deadline:
        dispatcher.tick()
        time.sleep(0.2)
    return store, store.get(job.id)


def test_a_succeeded_export_records_each_step_by_component_and_ends_done(sd_job):
    store, job = sd_job
    assert job.status == JobStatus.SUCCEEDED, store.log_tail(job.id)
    assert job.stage == "done" and timeline.stage_words(job) == "done"  # not its last step, "validating"
    assert job.backend == "torchscript"
    # Each component goes through the five stages in order, then the whole pipeline's image check:
    # 21 steps, numbered 1..21 of 21.
    expected = [(c, stage) for c in SD_COMPONENTS for stage in STAGES] + [("pipeline", "validating")]
    assert [(s["component"], s["stage"]) for s in job.stages] == expected
    assert [s["index"] for s in job.stages] == list(range(1, 22)) and {s["total"] for s in job.stages} == {21}
    assert timeline.step_words(job.stages[7]) == "compiling the UNet, step 8 of 21"
    assert timeline.step_words(job.stages[14]) == "checking the VAE encoder against the original, step 15 of 21"
    assert timeline.step_words(job.stages[20]) == "checking the pipeline against the original, step 21 of 21"
    durations = timeline.step_durations(job)
    assert all(seconds >= 0 for _, seconds in durations)
    # The steps cover the run: from the first step's start to the job's end, less the start-up before it.
    assert sum(seconds for _, seconds in durations) == pytest.approx(job.finished_at - job.stages[0]["at"])
    assert job.stages[0]["at"] >= job.started_at


def test_the_artifacts_stage_timings_are_labelled_by_component_and_stage(sd_job):
    _, job = sd_job
    manifest = read_manifest(job.artifact)
    rows = compile_time_rows(manifest.timings, named_components=bool(manifest.components))
    names = {"text_encoder": "Text encoder", "unet": "UNet", "vae_encoder": "VAE encoder", "vae_decoder": "VAE decoder"}
    verbs = {"loading": "load", "tracing": "trace", "compiling": "compile", "saving": "save", "validating": "validate"}
    assert [row["label"] for row in rows] == [f"{names[c]} · {verbs[s]}" for c in SD_COMPONENTS for s in STAGES] + ["Pipeline · validate"]
    assert [row["seconds"] for row in rows] == list(manifest.timings.values())


def past_job(store, *, seconds, step_starts=(), backend="torchscript", status=JobStatus.SUCCEEDED, model="demo:minilm",
             sequence_length=32, stages_total=5, cached=False, started=1_000_000.0):
    """A finished export row with known timings: it started at `started`, step i at started + step_starts[i-1]."""
    options = {**ExportOptions(backend=backend, sequence_length=sequence_length).to_dict()}
    job = store.submit(commands.EXPORT, [sys.executable, "-c", "pass"], title=model,
                       metadata={"model": model, "task": "feature-extraction", "options": options})
    stages = [{"stage": "cache" if cached else "compiling", "component": None, "index": index, "total": stages_total,
               "at": started + offset} for index, offset in enumerate(step_starts, start=1)]
    store.update(job.id, status=JobStatus.RUNNING, started_at=started, stages=stages)
    store.finish(job.id, status)
    store.update(job.id, finished_at=started + seconds)
    return store.get(job.id)


def test_the_estimate_is_the_median_of_earlier_jobs_of_the_same_work_and_backend(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for seconds, starts in ((100, (0, 10, 40, 70, 90)), (120, (0, 10, 60, 90, 110)), (300, (0, 20, 100, 250, 290))):
        past_job(store, seconds=seconds, step_starts=starts)
    past_job(store, seconds=5, backend="inductor")  # another backend
    past_job(store, seconds=7, sequence_length=128)  # other shapes
    past_job(store, seconds=9, model="demo:tiny-bert")  # another model
    past_job(store, seconds=2, step_starts=(0,), stages_total=1, cached=True)  # a compile-cache hit
    past_job(store, seconds=1, status=JobStatus.FAILED)
    now = 2_000_000.0
    current = past_job(store, seconds=0, step_starts=(0, 5, 30), started=now - 35)
    store.update(current.id, status=JobStatus.RUNNING, finished_at=None)
    current = store.get(current.id)
    history = store.list(limit=None)

    est = timeline.estimate(current, history, auto_pick="inductor", now=now)
    # Step 3 of the earlier jobs started 40, 60 and 100 s in; they ended 60, 60 and 200 s later: median 60.
    # This job's step 3 started 5 s ago: 55 s left. The median duration of the three is 120 s.
    assert (est.count, est.typical_s, est.remaining_s) == (3, 120, 55)
    said = timeline.estimate_words(est, current, "inductor")
    assert said.startswith("About 55.0 s left; usually 2 min 00 s in all (median of 3 earlier jobs of demo:minilm")
    assert "on torchscript on this host" in said

    overdue = timeline.estimate(current, history, auto_pick="inductor", now=now + 100)
    assert timeline.estimate_words(overdue, current, "inductor").startswith("Taking longer than usual: usually 2 min 00 s")


def test_rows_filed_as_auto_count_for_the_backend_auto_picks_here(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    past_job(store, seconds=80, backend="auto")
    queued = store.submit(commands.EXPORT, [sys.executable, "-c", "pass"], title="minilm",
                          metadata={"model": "demo:minilm", "task": "feature-extraction",
                                    "options": ExportOptions(backend="inductor", sequence_length=32).to_dict()})
    history = store.list(limit=None)
    est = timeline.estimate(queued, history, auto_pick="inductor")
    assert (est.count, est.typical_s) == (1, 80)
    assert timeline.estimate_words(est, queued, "inductor").startswith("Takes about 1 min 20 s once it starts (median of 1 earlier job")
    store.update(queued.id, metadata={**queued.metadata, "backend": "neuron"})  # as the form resolved it at submit
    assert timeline.estimate(store.get(queued.id), history, auto_pick="inductor").typical_s is None
    store.update(queued.id, metadata=queued.metadata)
    nothing = timeline.estimate(queued, history, auto_pick="neuron")  # auto picks Neuron: no history for it yet
    assert nothing.typical_s is None
    assert timeline.estimate_words(nothing, queued, "neuron") == (
        "No estimate yet: no earlier job of demo:minilm with the same options on inductor has finished on this host "
        "(the next one will have one).")


def test_queued_running_and_stopped_jobs_in_words(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    job = store.submit(commands.EXPORT, [sys.executable, "-c", "pass"], title="sd")
    assert timeline.stage_words(job) == "waiting for a free compile slot"
    store.update(job.id, status=JobStatus.RUNNING)
    assert timeline.stage_words(store.get(job.id)) == "starting"  # claimed, no step yet: not "waiting"
    store.update(job.id, stages=[{"stage": "compiling", "component": "unet", "index": 8, "total": 20, "at": 1.0}])
    assert timeline.stage_words(store.get(job.id)) == "compiling the UNet, step 8 of 20"
    store.finish(job.id, JobStatus.FAILED, message="out of memory")
    assert timeline.stage_words(store.get(job.id)) == "stopped while compiling the UNet, step 8 of 20"


def test_a_job_store_made_before_the_timeline_still_reads_its_rows(tmp_path):
    """The schema of the first release, with a row as its worker left it: the new columns are added."""
    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                title TEXT NOT NULL, argv TEXT NOT NULL, status TEXT NOT NULL, stage TEXT, progress REAL NOT NULL DEFAULT 0,
                message TEXT, artifact TEXT, validation_passed INTEGER, exit_code INTEGER, pid INTEGER, pid_create_time REAL,
                cancel_requested INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
                heartbeat_at REAL, log_path TEXT NOT NULL, events_path TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}');""")
        conn.execute("INSERT INTO jobs (id, kind, title, argv, status, stage, progress, message, created_at, started_at, "
                     "log_path, events_path, metadata) VALUES ('old1', 'export', 'minilm', '[]', 'running', 'loading', 0.0, "
                     "'Loading demo:minilm…', 1.0, 2.0, '/nowhere/log.txt', '/nowhere/events.jsonl', ?)",
                     (json.dumps({"model": "demo:minilm", "options": {"backend": "auto"}}),))
    store = JobStore(db)
    old = store.get("old1")
    assert (old.backend, old.stages, old.metadata["model"]) == (None, [], "demo:minilm")
    assert timeline.stage_words(old) == "loading demo:minilm"  # said once, not "Loading — Loading demo:minilm…"
    store.update("old1", stages=[{"stage": "loading", "component": None, "index": 1, "total": 5, "at": 3.0}])
    assert timeline.stage_words(store.get("old1")) == "loading the model, step 1 of 5"
