"""AppTest of a job's progress on the Jobs and Compile pages (one component, studio.ui.job_progress):
the step in plain words, queued vs running, the estimate from earlier rows of the job store, a
succeeded job shown done, and the Compile page showing the followed job above its form.

The jobs are real subprocesses run by the workspace's dispatcher; they write the events the engine
writes (a pipeline's steps by component), so the pages read what a real compile records."""

import sys
import textwrap
import time

from page_helpers import no_exception, open_page, wait_for_job

from neuron_export import ExportOptions
from studio.jobs import EXPORT, JobStatus, JobStore

# Steps 1..8 of an SD compile (each component: loading, tracing, compiling, saving, validating), then
# waits until the file argv[1] exists.
PIPELINE_JOB = textwrap.dedent("""
    import json, os, sys, time
    steps = [(c, s) for c in ("text_encoder", "unet", "vae_encoder", "vae_decoder")
             for s in ("loading", "tracing", "compiling", "saving", "validating")]
    def emit(**event):
        with open(os.environ["NEURON_EXPORT_EVENTS"], "a") as events:
            events.write(json.dumps({**event, "time": time.time()}) + "\\n")
    emit(type="plan", backend="torchscript", components=["text_encoder", "unet", "vae_encoder", "vae_decoder"], total=20)
    for index, (component, stage) in enumerate(steps[:8], start=1):
        emit(type="stage", stage=stage, component=component, key=f"{component}.{stage}", index=index, total=20,
             fraction=(index - 1) / 20, message=f"{stage.capitalize()} {component}")
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
    emit(type="done", artifact=None, validation_passed=True)
""")


def export_metadata(model: str) -> dict:
    return {"model": model, "task": "auto", "options": ExportOptions(backend="torchscript").to_dict()}


def earlier_job(store: JobStore, model: str, seconds: float) -> None:
    """A succeeded compile of `model` that took `seconds`, as the store keeps it."""
    job = store.submit(EXPORT, [sys.executable, "-c", "pass"], title=f"{model} earlier", metadata=export_metadata(model))
    store.update(job.id, status=JobStatus.RUNNING, started_at=1_000_000.0)
    store.finish(job.id, JobStatus.SUCCEEDED)
    store.update(job.id, finished_at=1_000_000.0 + seconds)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def in_order(node):
    """The page's elements in the order they are drawn."""
    yield node
    for child in getattr(node, "children", {}).values():
        yield from in_order(child)


def badges(at) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


def test_running_and_queued_jobs_say_what_they_do_with_an_estimate_and_end_done(fresh_workspace, tmp_path):
    at = open_page("jobs.py")  # starts the workspace's dispatcher: one job at a time
    store = JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir)
    earlier_job(store, "demo:minilm", seconds=90)
    script, release = tmp_path / "pipeline_job.py", tmp_path / "release"
    script.write_text(PIPELINE_JOB)
    running = store.submit(EXPORT, [sys.executable, str(script), str(release)], title="tiny-sd",
                           metadata=export_metadata("demo:tiny-sd"))
    wait_until(lambda: len(store.get(running.id).stages) == 8)
    queued = store.submit(EXPORT, [sys.executable, "-c", "pass"], title="minilm", metadata=export_metadata("demo:minilm"))

    at.run()
    no_exception(at)
    doing = dict(zip(at.dataframe[0].value["job"], at.dataframe[0].value["doing"]))
    assert doing[running.id] == "compiling the UNet, step 8 of 20"
    assert doing[queued.id] == "waiting for a free compile slot"

    # The newest job's panel: queued, never "running", with the earlier compile's 90 s as its estimate.
    progress = at.get("progress")
    assert [p.proto.text for p in progress] == ["Waiting for a free compile slot (1 job ahead)"]
    assert any("queued" in b for b in badges(at)) and not any("running" in b for b in badges(at))
    assert any("Takes about 1 min 30 s once it starts (median of 1 earlier job of demo:minilm with the same options "
               "on torchscript on this host)" in c.value for c in at.caption)

    at.selectbox[0].set_value(running.id).run()
    assert [p.proto.text for p in at.get("progress")] == ["Compiling the UNet, step 8 of 20"]
    assert any(c.value.startswith("Elapsed ") and "No estimate yet: no earlier job of demo:tiny-sd with the same options "
               "on torchscript has finished on this host" in c.value for c in at.caption)

    release.touch()
    assert wait_for_job(store, running.id).status == JobStatus.SUCCEEDED
    assert wait_for_job(store, queued.id).status == JobStatus.SUCCEEDED
    at.run()
    doing = dict(zip(at.dataframe[0].value["job"], at.dataframe[0].value["doing"]))
    assert doing[running.id] == doing[queued.id] == "done"
    assert any(s.value.startswith("Done in") for s in at.success) and not at.get("progress")


def test_the_compile_page_shows_the_followed_job_above_its_form(fresh_workspace, tmp_path):
    store = JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir)
    script, release = tmp_path / "pipeline_job.py", tmp_path / "release"
    script.write_text(PIPELINE_JOB)
    job = store.submit(EXPORT, [sys.executable, str(script), str(release)], title="tiny-sd",
                       metadata=export_metadata("demo:tiny-sd"))
    at = open_page("compile.py")  # starts the dispatcher
    wait_until(lambda: len(store.get(job.id).stages) == 8)
    at.query_params["job"] = job.id
    at.run()
    no_exception(at)
    drawn = list(in_order(at.main))
    kinds = [node.type for node in drawn]
    first_field = next(i for i, node in enumerate(drawn) if node.type in ("selectbox", "text_input", "radio"))
    assert kinds.index("progress") < first_field
    assert drawn[kinds.index("progress")].proto.text == "Compiling the UNet, step 8 of 20"
    release.touch()
    wait_for_job(store, job.id)
