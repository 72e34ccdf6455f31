"""AppTest of the Jobs page with real jobs (small Python commands run by the workspace's dispatcher):
the table and counts, a job's panel, and removing finished jobs."""

import sys

from page_helpers import no_exception, open_page, submit, wait_for_job

from studio.jobs import JobStore


def test_jobs_table_details_and_removing_finished_jobs(fresh_workspace):
    at = open_page("jobs.py")  # starts the workspace's dispatcher
    no_exception(at)
    assert any("No jobs yet" in i.value for i in at.info)
    store = JobStore(fresh_workspace.db_path, fresh_workspace.jobs_dir)
    done = store.submit("test", [sys.executable, "-c", "print('hello from the job')"], title="Greeting")
    failed = store.submit("test", [sys.executable, "-c", "import sys; sys.exit('bad thing happened')"], title="Failing")
    assert str(wait_for_job(store, done.id).status) == "succeeded"
    assert str(wait_for_job(store, failed.id).status) == "failed"

    at.run()
    no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Running"], metrics["Queued"], metrics["Finished"]) == ("0", "0", "2")
    table = at.dataframe[0].value
    assert list(table["job"]) == [failed.id, done.id]  # newest first
    assert list(table["status"]) == ["failed", "succeeded"] and list(table["progress"]) == [0.0, 1.0]
    shown = at.query_params["job"]
    assert (shown[0] if isinstance(shown, list) else shown) == failed.id  # the newest job's panel, remembered in the URL
    assert any("bad thing happened" in e.value for e in at.error)

    at.selectbox[0].set_value(done.id).run()
    assert any(s.value.startswith("Done in") for s in at.success)
    assert "hello from the job" in at.code[0].value

    at = submit(at, "Remove 2 finished job(s) from the list")
    no_exception(at)
    assert store.list() == [] and any("No jobs yet" in i.value for i in at.info)
