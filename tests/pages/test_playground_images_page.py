"""AppTest of the Playground's image generation on demo:tiny-sd (torchscript, 64 px): every pipeline class of the
task from its registry entry, images equal to diffusers' own pipelines at the same seed (and scheduler), a
random seed that is shown and repeats the image, the session's gallery with a download per image, and the
mask inputs of a pipeline that takes one (a spec made here: no inpainting demo yet). ~1-2 min on 2 cores.
"""

import dataclasses

import diffusers
import numpy as np
import pytest
import streamlit as st
import torch
from page_helpers import no_exception, open_in_app, submit

from neuron_export import ExportOptions, export
from neuron_export.demo import resolve_demo
from neuron_export.diffusion.requests import example_image
from neuron_export.registry import DIFFUSION_TASKS
from neuron_export.registry.diffusion import DiffusionPipelineSpec
from studio.playground_images import GALLERY_KEY
from studio.playground_ui import RESULT_KEY
from studio.workspace import Workspace

PROMPT = "a photo of an astronaut riding a horse on mars"  # the form's default
NEGATIVE = "blurry, low quality"
TXT2IMG, IMG2IMG = DIFFUSION_TASKS["stable-diffusion"].pipelines[:2]


@pytest.fixture(scope="module")
def sd_workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("images-workspace")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURON_EXPORT_DEMO_DIR", str(Workspace(root).demo_dir))
        export("demo:tiny-sd", Workspace(root).artifacts_dir / "tiny-sd", ExportOptions(backend="torchscript"))
    return root


@pytest.fixture
def page(sd_workspace, monkeypatch):
    """A function opening the Playground on tiny-sd, in the workspace that holds it only."""
    monkeypatch.setenv("NEURON_EXPORT_WORKSPACE", str(sd_workspace))
    monkeypatch.setenv("NEURON_EXPORT_DEMO_DIR", str(Workspace(sd_workspace).demo_dir))
    monkeypatch.delenv("NEURON_EXPORT_PASSWORD", raising=False)
    st.cache_resource.clear()
    yield lambda: open_in_app("playground.py", "tiny-sd")
    st.cache_resource.clear()


def diffusers_image(class_name: str, seed: int, steps: int, scheduler: str | None = None, **request):
    pipe = getattr(diffusers, class_name).from_pretrained(resolve_demo("demo:tiny-sd"), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    if scheduler:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    return pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                **request).images[0]


def generation(at):
    """The page's last run (studio.playground.Generation)."""
    return at.session_state[RESULT_KEY][2][0]


def widget(elements, label: str):
    return next(e for e in elements if e.label == label)


def settle(at, steps: int = 2, seed: int | None = 0, compare: bool = False):
    """Fill in the common fields: steps, the seed (None: random) and the eager comparison."""
    widget(at.slider, "Steps").set_value(steps)
    widget(at.checkbox, "Random seed").set_value(seed is None)
    widget(at.number_input, "Seed").set_value(seed or 0)
    next(c for c in at.checkbox if c.label.startswith("Also run the eager")).set_value(compare)
    return at


def assert_same_image(image, expected) -> None:
    image, expected = np.asarray(image, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert image.std() > 10, "a flat image proves nothing"  # of 255
    assert np.abs(image - expected).mean() < 1e-2 * 255


def test_a_random_seed_is_shown_and_repeats_the_image(page):
    at = submit(settle(page(), seed=None), "Generate")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    first = generation(at)
    seed = first.settings["seed"]
    assert first.random_seed and any(f"Seed {seed} (drawn at random" in c.value for c in at.caption)
    at = submit(settle(at, seed=seed), "Generate")
    again = generation(at)
    assert again.settings["seed"] == seed and not again.random_seed
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    assert_same_image(again.images[0], diffusers_image("StableDiffusionPipeline", seed, 2, height=64, width=64))


def test_img2img_with_the_example_init_image_equals_diffusers_and_the_gallery_keeps_both_runs(page):
    at = submit(settle(page(), seed=1), "Generate")  # text to image first
    at.radio[0].set_value(IMG2IMG)
    at = settle(at.run(), steps=4, seed=2)
    assert not [u for u in at.get("file_uploader") if "Mask" in str(u.proto.label)]  # img2img takes no mask
    widget(at.slider, "Strength").set_value(0.6)
    at = submit(at, "Generate")
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    expected = diffusers_image("StableDiffusionImg2ImgPipeline", 2, 4, image=example_image("init", 64, 64, 2), strength=0.6)
    assert_same_image(generation(at).images[0], expected)
    runs = at.session_state[GALLERY_KEY]
    assert [(r["settings"]["pipeline"], r["settings"]["seed"]) for r in runs] == [(TXT2IMG.class_name, 1), (IMG2IMG.class_name, 2)]
    assert runs[1]["settings"]["strength"] == 0.6 and "strength" not in runs[0]["settings"]
    assert all(r["settings"]["steps"] == steps for r, steps in zip(runs, (2, 4)))
    downloads = at.get("download_button")
    assert len(downloads) == 2 and {d.proto.label for d in downloads} == {"Download"}
    assert any("Run 2" in m.value and IMG2IMG.class_name in m.value for m in at.markdown)


def test_the_scheduler_chosen_reaches_both_pipelines(page):
    at = settle(page(), steps=3, seed=4, compare=True)
    widget(at.selectbox, "Scheduler").set_value("EulerDiscreteScheduler")
    at = submit(at, "Generate")
    no_exception(at)
    result = generation(at)
    expected = diffusers_image("StableDiffusionPipeline", 4, 3, "EulerDiscreteScheduler", height=64, width=64)
    assert_same_image(result.images[0], expected)
    assert_same_image(result.eager_images[0], expected)
    assert len(at.get("image")) == 3  # the compiled and the eager image side by side, and the gallery's
    assert any("EulerDiscreteScheduler" in c.value for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Compiled (torchscript)"].endswith(" s") and metrics["Eager PyTorch"].endswith(" s")


def test_a_pipeline_that_takes_a_mask_gets_its_inputs_from_the_spec(page, monkeypatch):
    inpaint = DiffusionPipelineSpec("NeuronStableDiffusionInpaintPipeline", "StableDiffusionInpaintPipeline", uses_vae_encoder=True,
                                    images=(("image", "init"), ("mask_image", "mask")), strength=True)
    task = DIFFUSION_TASKS["stable-diffusion"]
    monkeypatch.setitem(DIFFUSION_TASKS, "stable-diffusion", dataclasses.replace(task, pipelines=(*task.pipelines, inpaint)))
    at = page()
    at.radio[0].set_value(inpaint)
    at = at.run()
    no_exception(at)
    labels = [str(u.proto.label) for u in at.get("file_uploader")]
    assert any(label.startswith("Init image") for label in labels) and "Mask image (white: repaint)" in labels
    assert widget(at.slider, "Strength").value == pytest.approx(0.75)
    assert not at.error
    widget(at.slider, "Rectangle from left to right (fraction of the width)").set_value((0.4, 0.4))  # an empty rectangle
    at = at.run()
    assert any("The mask is empty" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Generate").disabled


def test_the_benchmark_page_times_each_pipeline_class_chosen(page, sd_workspace):
    from page_helpers import wait_for_job

    from neuron_export.benchmark import benchmark_history
    from studio.jobs import JobStore, benchmark_command

    page()  # the environment of the workspace
    at = open_in_app("benchmark.py", "tiny-sd")
    widget(at.number_input, "Timed calls per side").set_value(1)
    widget(at.number_input, "Warm-up calls").set_value(0)
    widget(at.number_input, "Denoising steps per image (Stable Diffusion)").set_value(2)
    at.checkbox[0].uncheck()  # no peers
    classes = next(m for m in at.multiselect if m.label.startswith("Pipeline classes"))
    assert classes.options == [TXT2IMG.class_name, IMG2IMG.class_name] and classes.value == [TXT2IMG.class_name]
    classes.set_value([TXT2IMG.class_name, IMG2IMG.class_name])
    at = submit(at, "Run benchmark")
    no_exception(at)
    workspace = Workspace(sd_workspace)
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    artifact = workspace.artifacts_dir / "tiny-sd"
    jobs = sorted(store.list(limit=None), key=lambda job: job.created_at)
    assert [job.argv for job in jobs] == [benchmark_command(artifact, iterations=1, warmup=0, steps=2, onnx=False, pipeline=name)
                                          for name in (TXT2IMG.class_name, IMG2IMG.class_name)]
    store.cancel(jobs[0].id)  # the text-to-image one: timing the img2img job is enough here (and half the time)
    wait_for_job(store, jobs[0].id)
    assert str(wait_for_job(store, jobs[1].id, timeout=300).status) == "succeeded", store.log_tail(jobs[1].id)
    (report,) = benchmark_history(artifact)
    sides = report["runs"][0]["sides"]
    assert (sides["compiled"]["pipeline"]["class_name"], sides["eager"]["pipeline"]["class_name"]) == (IMG2IMG.class_name,
                                                                                                      IMG2IMG.diffusers_class)
    at.run()
    rows = at.dataframe[0].value.to_dict("records")
    assert any(row["side"] == "compiled" and row["pipeline"] == IMG2IMG.class_name and row["unet s/image"] > 0 for row in rows)
