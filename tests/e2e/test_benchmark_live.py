"""End to end in headless Chromium: the Benchmark page shows a run's results as soon as its job
finishes, without a reload (its live job panel reruns the page), and the finished job's panel does
not call a benchmark "not validated". Screenshot in test-output/screenshots/benchmark-live.png."""

import pytest
from test_browser import SHOTS, app, main_area, page  # noqa: F401 (fixtures)

from neuron_export import ExportOptions, export

pytestmark = pytest.mark.browser
RESULTS_TIMEOUT_MS = 600_000  # the benchmark job: worker, CLI and one process per side, on a busy host


def test_benchmark_results_appear_without_a_reload(page, app, monkeypatch):  # noqa: F811 (fixtures)
    monkeypatch.setenv("NEURON_EXPORT_DEMO_DIR", str(app.workspace / "demo"))
    export("demo:tiny-bert", app.workspace / "artifacts" / "live-bert", ExportOptions(backend="torchscript", sequence_length=8))
    page.goto(f"{app.url}/benchmark?artifact=live-bert")
    main = main_area(page)
    main.get_by_text("No benchmark results yet for live-bert").wait_for()
    main.get_by_label("Timed calls per side").fill("3")
    main.get_by_label("Warm-up calls").fill("1")
    main.get_by_text("Compare with peers").click()  # untick: eager PyTorch only, quicker
    main.get_by_role("button", name="Run benchmark").click()
    try:
        # No reload from here on: the page must redraw itself when the job finishes.
        main.get_by_role("heading", name="Latest results").wait_for(timeout=RESULTS_TIMEOUT_MS)
        main.get_by_text("Done in").first.wait_for()
        assert main.get_by_text("not validated").count() == 0
        assert main.get_by_text("No benchmark results yet").count() == 0
    finally:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "benchmark-live.png"))
