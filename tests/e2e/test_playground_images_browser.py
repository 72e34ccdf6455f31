"""End to end in headless Chromium: the Playground's image generation on demo:tiny-sd, as a person demos it:
the img2img pipeline chosen, a random seed, Generate; the progress bars, the compiled image beside eager
diffusers', the seed drawn (to repeat the image) and the gallery's download."""

import re

import pytest
from test_browser import CHROMIUM, SHOTS, app, main_area, page  # noqa: F401 (fixtures)

from neuron_export import ExportOptions, export
from studio.workspace import Workspace

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def tiny_sd(app):  # noqa: F811 (fixtures)
    workspace = Workspace(app.workspace)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURON_EXPORT_DEMO_DIR", str(workspace.demo_dir))  # where the server looks for the eager source
        export("demo:tiny-sd", workspace.artifacts_dir / "tiny-sd", ExportOptions(backend="torchscript"))
    return "tiny-sd"


def test_img2img_with_a_random_seed_shows_both_images_the_seed_and_a_download(page, app, tiny_sd):  # noqa: F811 (fixtures)
    page.goto(f"{app.url}/playground?artifact={tiny_sd}")
    main = main_area(page)
    try:
        main.get_by_text(re.compile(r"^prompt \+ init image")).click()
        main.get_by_text("Strength").wait_for()  # the img2img fields, from its registry entry
        main.get_by_text("Random seed").click()
        main.get_by_role("button", name="Generate").click()
        main.get_by_text(re.compile(r"^Seed \d+ \(drawn at random")).wait_for()
        main.get_by_text(re.compile(r"^eager diffusers · image 1")).wait_for()
        main.get_by_text("This session's images").wait_for()
        main.get_by_role("button", name=re.compile("Download")).first.wait_for()
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "playground-images.png"))
    except Exception:
        page.screenshot(path=str(SHOTS / "playground-images-failure.png"))
        raise
