"""AppTest of the Compile form's ControlNet field (base Stable Diffusion pipelines only): ControlNet folders in
a model root, one per line, become the job's --controlnet_ids; a folder that is not a ControlNet keeps Compile
disabled. No job runs (NEURON_EXPORT_MAX_JOBS=0); the test reads what was queued. The ControlNet export itself
is tested against diffusers in tests/engine/test_controlnet.py."""

import pytest
from page_helpers import open_in_app
from streamlit.testing.v1 import AppTest

from neuron_export.cli import build_parser
from neuron_export.demo.tiny import build_tiny_stable_diffusion
from neuron_export.demo.tiny_controlnet import build_tiny_controlnet
from studio.jobs import JobStore


@pytest.fixture
def workspace(fresh_workspace, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_MAX_JOBS", "0")  # queued jobs stay queued
    return fresh_workspace


def sd_form(demo: str = "demo:tiny-sd") -> AppTest:
    at = open_in_app("compile.py")  # Start here is the first page
    at.selectbox(key="demo").set_value(demo).run()
    at.selectbox(key="backend").set_value("torchscript").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def compile_button(at: AppTest):
    return next(b for b in at.button if b.label == "Compile")


def test_controlnet_lines_become_the_jobs_controlnet_ids(workspace):
    canny, depth = (build_tiny_controlnet(workspace.root / "controlnets" / name, seed=seed) for seed, name in enumerate(("canny", "depth")))
    at = sd_form()
    at.text_area(key="controlnets").set_value(f"{canny}\n\n{depth}\n").run()
    assert not at.error, [e.value for e in at.error]
    compile_button(at).click()
    at.run()
    (job,) = JobStore(workspace.db_path, workspace.jobs_dir).list()
    assert job.metadata["options"]["controlnet_ids"] == [str(canny), str(depth)]
    parsed = build_parser().parse_args(job.argv[job.argv.index("export"):])  # what the job's CLI will read
    assert list(parsed.controlnet_ids) == [str(canny), str(depth)]


def test_a_folder_that_is_not_a_controlnet_disables_compile(workspace, tmp_path):
    pipeline = build_tiny_stable_diffusion(workspace.root / "models" / "sd")
    outside = build_tiny_controlnet(tmp_path / "outside")
    at = sd_form()
    for text, message in ((str(pipeline / "unet"), "not a diffusers ControlNetModel"), (str(pipeline), "no ControlNet there"),
                          (str(outside), "that this dashboard may read")):
        at.text_area(key="controlnets").set_value(text).run()
        assert any(message in e.value for e in at.error), (text, [e.value for e in at.error])
        assert compile_button(at).disabled
    assert JobStore(workspace.db_path, workspace.jobs_dir).list() == []


@pytest.mark.parametrize("demo", ["demo:tiny-bert", "demo:tiny-sd-inpaint"])
def test_the_controlnet_field_is_for_base_pipelines_only(workspace, demo):
    at = open_in_app("compile.py")
    at.selectbox(key="demo").set_value(demo).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [t for t in at.text_area if t.key == "controlnets"]
