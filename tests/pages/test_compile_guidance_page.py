"""AppTest of the Compile form's classifier-free guidance switch (Stable Diffusion only): checked, the job
compiles the UNet for one row per image (--no-classifier-free-guidance, SDXL Turbo). No job runs
(NEURON_EXPORT_MAX_JOBS=0); the test reads what was queued. The export itself is tested against diffusers
in tests/engine/test_diffusion_variants.py."""

import pytest
from page_helpers import open_in_app

from neuron_export.cli import build_parser
from studio.jobs import JobStore


@pytest.fixture
def workspace(fresh_workspace, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_MAX_JOBS", "0")  # queued jobs stay queued
    return fresh_workspace


def test_no_guidance_switch_becomes_the_jobs_option(workspace):
    at = open_in_app("compile.py")  # Start here is the first page
    at.selectbox(key="demo").set_value("demo:tiny-sdxl-turbo").run()
    at.selectbox(key="backend").set_value("torchscript").run()
    at.checkbox(key="no_cfg").check().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    next(b for b in at.button if b.label == "Compile").click()
    at.run()
    (job,) = JobStore(workspace.db_path, workspace.jobs_dir).list()
    assert job.metadata["options"]["classifier_free_guidance"] is False
    assert "--no-classifier-free-guidance" in job.argv
    parsed = build_parser().parse_args(job.argv[job.argv.index("export"):])  # what the job's CLI will read
    assert parsed.classifier_free_guidance is False


def test_no_guidance_switch_is_for_diffusion_models_only(workspace):
    at = open_in_app("compile.py")
    at.selectbox(key="demo").set_value("demo:tiny-bert").run()
    assert not [c for c in at.checkbox if c.key == "no_cfg"]
