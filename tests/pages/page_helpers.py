"""Helpers of the page tests: open a page in AppTest, submit a form, wait for a job."""

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from studio.jobs import JobStore

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
PAGES = ROOT / "views"
TIMEOUT = 90  # seconds: a page run, or a job of the tests


def open_page(name: str, artifact: str | None = None) -> AppTest:
    """Run one page (views/NAME) on its own, optionally with ?artifact=ARTIFACT."""
    at = AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT)
    if artifact:
        at.query_params["artifact"] = artifact
    return at.run()


def open_in_app(name: str, artifact: str | None = None) -> AppTest:
    """Run app.py, then switch to views/NAME: for pages that link to others (st.page_link needs the navigation)."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if artifact:
        at.query_params["artifact"] = artifact
    at.run()
    return at.switch_page(f"views/{name}").run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def submit(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click()
    return at.run()


def wait_for_job(store: JobStore, job_id: str, timeout: float = TIMEOUT):
    """The job once it has finished; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job.is_finished:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")
