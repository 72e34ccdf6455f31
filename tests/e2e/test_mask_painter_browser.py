"""End to end in headless Chromium: the Playground's mask painter (streamlit-drawable-canvas, a component that
AppTest renders but cannot draw on). With the rectangle off the mask is empty and says so; a stroke painted
with the mouse over the init image becomes the mask where it was painted, nowhere else."""

import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, PAGE_TIMEOUT_MS, ROOT, free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
    # Not imported here: the component registers itself with a running Streamlit only.
    pytest.mark.skipif(importlib.util.find_spec("streamlit_drawable_canvas") is None, reason="streamlit-drawable-canvas is not installed"),
]


@pytest.fixture(scope="module")
def painter_url():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "tests" / "e2e" / "mask_painter_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True)
    yield f"http://127.0.0.1:{port}"
    os.killpg(server.pid, 15)
    server.wait(timeout=20)


def test_a_painted_stroke_becomes_the_mask(painter_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        for _ in range(120):  # the server starts listening
            try:
                page.goto(painter_url)
                break
            except Exception:
                time.sleep(0.5)
        said = page.get_by_text(re.compile(r"^MASK "))
        said.wait_for()
        assert said.inner_text().startswith("MASK coverage 0.25")  # the default rectangle: the middle half
        page.get_by_text("Rectangle", exact=True).click()
        page.get_by_text(re.compile(r"^MASK error The mask is empty")).wait_for()
        box = page.locator("canvas").last.bounding_box()  # 320 px a side: 5 canvas pixels per mask pixel
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        page.mouse.down()
        for step in range(1, 21):  # a diagonal stroke to (210, 115): through mask pixel (row 13, column 23)
            page.mouse.move(box["x"] + 20 + step * 9.5, box["y"] + 20 + step * 4.75)
        page.mouse.up()
        page.get_by_text(re.compile(r"^MASK coverage")).wait_for()
        coverage, stroke, corner = re.match(r"MASK coverage (\S+) stroke (\d) corner (\d)", said.inner_text()).groups()
        assert 0.01 < float(coverage) < 0.2 and (stroke, corner) == ("1", "0")
        browser.close()
