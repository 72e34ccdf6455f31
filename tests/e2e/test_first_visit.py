"""End to end in headless Chromium, the path of a first-time user who only does what the pages show:
the Start here page, a doomed submit that is blocked, the MiniLM demo compiled from Start here's
link with every default (auto backend), its progress followed at the top of the Compile page, the
report's plain verdict, and the playground's speed figure measured the Benchmark page's way.
Screenshots of each step go to test-output/screenshots/first-visit-*.png."""

import re

import pytest
from test_browser import SHOTS, app, main_area, page, wait_for_job  # noqa: F401 (fixtures)

from neuron_export.backends import auto_pick
from neuron_export.options import ExportOptions

pytestmark = pytest.mark.browser


def shot(page, name: str) -> None:
    page.wait_for_timeout(800)  # let charts finish their transition
    page.screenshot(path=str(SHOTS / f"first-visit-{name}.png"))


def test_a_first_visit_compiles_the_demo_and_reads_plain_answers(page, app):  # noqa: F811 (fixtures)
    try:
        start_here(page, app)
        a_doomed_submit_is_blocked(page, app)
        artifact = compile_the_demo_from_start_here(page, app)
        read_the_verdict(page, app, artifact)
        try_it_in_the_playground(page, app, artifact)
    except Exception:
        shot(page, "failure")  # what the browser showed when a step failed
        raise


def start_here(page, app) -> None:
    page.goto(app.url)
    main = main_area(page)
    main.get_by_role("heading", name="Start here").wait_for()
    # What this host will use, from doctor run in the background: this host has no Neuron device.
    main.get_by_text(re.compile(r"^CPU: no usable Neuron device here")).wait_for()
    shot(page, "1-start-here")


def a_doomed_submit_is_blocked(page, app) -> None:
    """A model folder that does not exist: the form says so and Compile cannot be clicked."""
    from playwright.sync_api import expect

    page.goto(f"{app.url}/compile")
    main = main_area(page)
    main.get_by_role("heading", name="Compile a model").wait_for()
    main.get_by_text("Local folder", exact=True).click()
    folder = main.get_by_label("Model folder on this host")
    folder.fill(str(app.workspace / "no-such-model"))
    folder.press("Enter")
    main.get_by_text("Compile is available once a model is chosen and the form shows no problem.").wait_for()
    expect(main.get_by_role("button", name="Compile")).to_be_disabled()
    main.get_by_text(re.compile(r"^No model folder .*no-such-model")).wait_for()  # and why, in one line
    shot(page, "2-doomed-submit")


def compile_the_demo_from_start_here(page, app) -> str:
    """Start here's MiniLM link, then Compile with the form's defaults; the progress shows above the form."""
    from playwright.sync_api import expect

    page.goto(app.url)
    main = main_area(page)
    main.get_by_role("link", name=re.compile("Compile the MiniLM sentence embedder")).click()
    main.get_by_role("heading", name="Compile a model").wait_for()
    expect(page.get_by_label("Built-in model (no download)", exact=True)).to_have_value(re.compile("^demo:minilm"))
    # Before submitting, the form names what auto will use here: the engine's own choice.
    picked, _ = auto_pick(ExportOptions())
    main.get_by_text(re.compile(rf"auto will use {picked.name}")).first.wait_for()
    name = main.get_by_label("Artifact name (a folder in the workspace)")
    expect(name).to_have_value(re.compile(rf"^minilm-.*{picked.name}"))  # named by the backend, never "auto"
    artifact = name.input_value()
    compile_button = main.get_by_role("button", name="Compile")
    expect(compile_button).to_be_enabled()
    compile_button.click()
    page.wait_for_url(re.compile(r"[?&]job="))
    job_id = re.search(r"[?&]job=([^&]+)", page.url).group(1)
    # The progress, in plain words, sits above the form's first section.
    progress = main.locator('[data-testid="stProgress"]').first
    progress.wait_for()
    model_heading = main.get_by_role("heading", name="1 · Model")
    assert progress.bounding_box()["y"] < model_heading.bounding_box()["y"]
    shot(page, "3-progress")
    wait_for_job(app, job_id)
    main.get_by_text("validated against eager PyTorch ✓").wait_for()
    shot(page, "4-compiled")
    return artifact


def read_the_verdict(page, app, artifact: str) -> None:
    page.goto(f"{app.url}/report?artifact={artifact}")
    main = main_area(page)
    main.get_by_text(re.compile(r"The compiled model gives the same answers as the original, to within .*safe to use")).wait_for()
    main.get_by_role("link", name=re.compile("Playground")).first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()  # the engineers' numbers are still there, charted
    shot(page, "5-verdict")


def try_it_in_the_playground(page, app, artifact: str) -> None:
    """The sentence embedder's view; its speed figure says it was measured as the Benchmark page measures."""
    page.goto(f"{app.url}/playground?artifact={artifact}")
    main = main_area(page)
    main.get_by_role("button", name="Embed and compare").click()
    main.get_by_text(re.compile(r"alternating in \d+ rounds? after \d+ warm-up calls.*as the Benchmark page measures")).wait_for()
    shot(page, "6-playground")
