"""End to end in a real headless Chromium: `streamlit run app.py` on a free loopback port, then
compile a demo model from the form, watch the job succeed, open its validation report and plot,
run it in the playground. Screenshots of each page go to test-output/screenshots/.

Needs Debian's chromium (/usr/bin/chromium; `.ci/run` installs it) and Playwright (python)."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-output" / "screenshots"
# Deadlines for a loaded 2-core machine: a page run (first one imports torch and transformers), and
# the compile job of the tiny demo model (seconds alone; minutes when other suites share the cores).
PAGE_TIMEOUT_MS = 180_000
JOB_TIMEOUT_S = 600
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The running dashboard: its URL and its workspace (where the test reads the job store)."""
    workspace = tmp_path_factory.mktemp("workspace")
    port = free_port()
    env = {**os.environ, "NEURON_EXPORT_WORKSPACE": str(workspace), "PYTHONPATH": str(ROOT)}
    env.pop("NEURON_EXPORT_PASSWORD", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("streamlit did not start listening within 60 s")
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", workspace=workspace)
    os.killpg(server.pid, 15)
    server.wait(timeout=20)


@pytest.fixture(scope="module")
def page(app):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        yield page
        browser.close()


def shot(page, name: str) -> None:
    page.wait_for_timeout(800)  # let charts finish their transition
    # Streamlit scrolls inside its main container, so the tall viewport is the whole page.
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_compile_report_playground_end_to_end(page, app):
    try:
        walk_through(page, app)
    except Exception:
        shot(page, "failure")  # what the browser showed when a step failed
        raise


def main_area(page):
    """The page's own content: never the sidebar, whose navigation links share names with it."""
    return page.get_by_test_id("stMain")


def wait_for_job(app, job_id: str):
    """The job once finished; on a missed deadline (or a failure) the test fails with its log tail."""
    from studio.jobs import JobStore

    store = JobStore(Path(app.workspace) / "jobs.db", Path(app.workspace) / "jobs")
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (job := store.get(job_id)) is None or not job.is_finished:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job and job.status} after {JOB_TIMEOUT_S} s; log tail:\n{store.log_tail(job_id, 4000)}")
        time.sleep(1)
    if str(job.status) != "succeeded":
        pytest.fail(f"job {job_id} {job.status}: {job.message}; log tail:\n{store.log_tail(job_id, 4000)}")
    return job


def walk_through(page, app):
    compile_from_the_form(page, app)
    browse_the_results(page, app.url)


def compile_from_the_form(page, app) -> None:
    """Fill the Compile form (tiny BERT, torchscript, 16 tokens), click Compile, wait for the job."""
    from playwright.sync_api import expect

    page.goto(f"{app.url}/compile")  # the first page is Start here
    main = main_area(page)
    main.get_by_role("heading", name="Compile a model").wait_for()

    def ready(fragment: str) -> None:
        """Wait for the form's own summary under Compile to say `fragment`: the run that read this
        change is complete. (While a run is under way, the last run's widgets stay on screen, greyed
        out, and still take clicks and typing that the new run then drops.)"""
        main.get_by_text(re.compile(r"^Compiles .*" + re.escape(fragment))).wait_for()

    # Model: the demo tiny BERT classifier; backend torchscript; sequence length 16.
    page.get_by_label("Built-in model (no download)", exact=True).click()
    page.get_by_role("option", name="demo:tiny-bert —").click()
    ready("demo:tiny-bert for text-classification")
    page.get_by_label("Backend", exact=True).click()
    page.get_by_role("option", name="torchscript").click()
    ready("with torchscript")
    seq = main.get_by_label("Sequence length (tokens)")
    seq.fill("16")
    seq.press("Enter")
    ready("sequence length 16) with torchscript")
    name = main.get_by_label("Artifact name (a folder in the workspace)")
    name.fill("e2e-bert")
    name.press("Enter")
    ready("demo:tiny-bert for text-classification (batch size 1 · sequence length 16) with torchscript into e2e-bert.")
    expect(name).to_have_value("e2e-bert")
    expect(seq).to_have_value("16")
    shot(page, "1-compile-form")
    # Compile is disabled until a run has read the model's config and found no problem; the job's
    # id in the URL shows that the click was taken.
    compile_button = main.get_by_role("button", name="Compile")
    expect(compile_button).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    compile_button.click()
    page.wait_for_url(re.compile(r"[?&]job="))
    job_id = re.search(r"[?&]job=([^&]+)", page.url).group(1)
    wait_for_job(app, job_id)

    # The live job panel of this page reaches the same verdict.
    try:
        main.get_by_text("validated against eager PyTorch ✓").wait_for()
    finally:
        shot(page, "2-compile-job")


def browse_the_results(page, app_url: str) -> None:
    """The job, the artifact, its report and chart, the playground and the system page."""
    main = main_area(page)
    page.goto(f"{app_url}/jobs")
    main.get_by_role("heading", name="Jobs").wait_for()
    main.get_by_text("validated against eager PyTorch ✓").first.wait_for()
    shot(page, "3-jobs")

    page.goto(f"{app_url}/artifacts")
    main.get_by_role("heading", name="Artifacts").wait_for()
    main.get_by_text("portable torchscript build, not a Neuron artifact").first.wait_for()
    shot(page, "4-artifacts")

    # Validation report with its plotly charts.
    page.goto(f"{app_url}/report?artifact=e2e-bert")
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_text("logits").first.wait_for()
    shot(page, "5-validation-report")

    # Playground: classify a sentence; the compiled and eager latencies are shown.
    page.goto(f"{app_url}/playground?artifact=e2e-bert")
    page.get_by_label("Text", exact=True).fill("the cat sat on the mat")
    page.get_by_role("button", name="Classify").click()
    page.get_by_text("Eager PyTorch").first.wait_for()
    page.get_by_text("Compiled (torchscript)").first.wait_for()
    # random weights: either label, but one of the model's own
    page.locator('[data-testid="stMetricValue"]').filter(has_text=re.compile("^(NEGATIVE|POSITIVE)$")).first.wait_for()
    shot(page, "6-playground")

    page.goto(f"{app_url}/system")
    page.get_by_text("CPU").first.wait_for()
    shot(page, "7-system")
    assert all((SHOTS / f"{n}.png").stat().st_size > 10_000 for n in ("1-compile-form", "5-validation-report", "6-playground"))
