"""AppTest of the Compile form's Stable Diffusion parts (studio/compile_diffusion.py): LoRA folders (one per
line with an optional scale) become --lora_*, ControlNet folders --controlnet_ids, the guidance switch
--no-classifier-free-guidance; a missing folder, a weight file or a folder that is not a ControlNet keeps
Compile disabled; each part shows for the pipelines it applies to only. No job runs
(NEURON_EXPORT_MAX_JOBS=0); the tests read what was queued. The exports themselves are tested against
diffusers in tests/engine (test_lora.py, test_controlnet.py, test_diffusion_variants.py)."""

import pytest
from page_helpers import open_in_app
from streamlit.testing.v1 import AppTest

from neuron_export.cli import build_parser
from neuron_export.demo.lora import build_tiny_lora
from neuron_export.demo.tiny import build_tiny_stable_diffusion
from neuron_export.demo.tiny_controlnet import build_tiny_controlnet
from studio.jobs import JobStore


@pytest.fixture
def workspace(fresh_workspace, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_MAX_JOBS", "0")  # queued jobs stay queued
    return fresh_workspace


def compile_button(at: AppTest):
    return next(b for b in at.button if b.label == "Compile")


def sd_form(demo: str = "demo:tiny-sd") -> AppTest:
    at = open_in_app("compile.py")  # Start here is the first page
    at.selectbox(key="demo").set_value(demo).run()
    at.selectbox(key="backend").set_value("torchscript").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def submit_field(at: AppTest, key: str, text: str, workspace):
    """Type the text into the form's field and press Compile: the one queued job, and its export arguments as
    the job's CLI will read them."""
    at.text_area(key=key).set_value(text).run()
    assert not at.error, [e.value for e in at.error]
    compile_button(at).click()
    at.run()
    (job,) = JobStore(workspace.db_path, workspace.jobs_dir).list()
    return job, build_parser().parse_args(job.argv[job.argv.index("export"):])


def test_lora_lines_become_the_jobs_lora_options(workspace):
    style, detail = build_tiny_lora(workspace.root / "loras" / "style"), build_tiny_lora(workspace.root / "loras" / "detail", seed=1)
    job, parsed = submit_field(sd_form(), "loras", f"{style} 0.7\n\n{detail}\n", workspace)
    options = job.metadata["options"]
    assert options["lora_model_ids"] == [str(style), str(detail)] and options["lora_scales"] == [0.7, 1.0]
    assert options["lora_adapter_names"] == ["lora1", "lora2"]  # several LoRAs need names: the form gives them
    assert (parsed.lora_model_ids, parsed.lora_scales) == ([str(style), str(detail)], [0.7, 1.0])


def test_a_lora_folder_without_weights_or_outside_the_roots_disables_compile(workspace, tmp_path):
    empty = workspace.root / "loras" / "empty"
    empty.mkdir(parents=True)
    outside = build_tiny_lora(tmp_path / "outside")
    at = sd_form()
    for text, message in ((str(empty), "has no pytorch_lora_weights.safetensors"), (str(outside), "that this dashboard may read")):
        at.text_area(key="loras").set_value(text).run()
        assert any(message in e.value for e in at.error), [e.value for e in at.error]
        assert compile_button(at).disabled
    assert JobStore(workspace.db_path, workspace.jobs_dir).list() == []


def test_the_lora_field_is_for_diffusion_pipelines_only(workspace):
    at = open_in_app("compile.py")  # Start here is the first page
    at.selectbox(key="demo").set_value("demo:tiny-bert").run()
    assert not [t for t in at.text_area if t.key == "loras"]


def test_controlnet_lines_become_the_jobs_controlnet_ids(workspace):
    canny, depth = (build_tiny_controlnet(workspace.root / "controlnets" / name, seed=seed) for seed, name in enumerate(("canny", "depth")))
    job, parsed = submit_field(sd_form(), "controlnets", f"{canny}\n\n{depth}\n", workspace)
    assert job.metadata["options"]["controlnet_ids"] == [str(canny), str(depth)]
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


def test_no_guidance_switch_becomes_the_jobs_option(workspace):
    at = sd_form("demo:tiny-sdxl-turbo")
    at.checkbox(key="no_cfg").check().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    compile_button(at).click()
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
