"""The Playground's image-generation view (Stable Diffusion / SDXL and their variants): the pipeline class,
the images it takes by role (init image, mask, control image: an upload or the example), the settings, the
compiled image next to eager diffusers' with both timings, a progress bar per denoising step, and the
session's gallery with a download for each image.

What a pipeline takes comes from its registry entry (DiffusionPipelineSpec) only; the logic is in
studio/playground (diffusion.py, image_inputs.py).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import streamlit as st

from neuron_export.diffusion.requests import STRENGTH
from neuron_export.errors import NeuronExportError, first_line
from neuron_export.registry.diffusion import DiffusionPipelineSpec
from studio import playground, ui
from studio.playground import diffusion, image_inputs
from studio.playground_ui import last_result, latency_row, run, short_duration

GALLERY_KEY = "image_gallery"
GALLERY_RUNS = 24  # the session keeps the newest runs only (their images live in the server's memory)
PAINTER_SIDE = 320  # pixels: the mask painter's canvas, whatever the image's size
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp"]


def describe(spec: DiffusionPipelineSpec) -> str:
    """A pipeline class in words, from the images it takes: "prompt + init image, mask"."""
    takes = ", ".join(image_inputs.role_name(role) for _, role in spec.images)
    return f"prompt + {takes}" if takes else "text to image"


def pipeline_choice(loaded: playground.LoadedArtifact) -> DiffusionPipelineSpec:
    """The pipeline class to run, when the artifact's task has several (txt2img, img2img, ...)."""
    specs = diffusion.pipeline_specs(loaded)
    if len(specs) == 1:
        return specs[0]
    return st.radio("Pipeline", specs, horizontal=True, key=f"pipeline:{loaded.path}",
                    format_func=lambda spec: f"{describe(spec)} ({spec.class_name})",
                    help="the pipeline classes of this artifact: the same compiled components, other inputs")


def role_inputs(loaded: playground.LoadedArtifact, spec: DiffusionPipelineSpec, height: int, width: int) -> Optional[dict[str, Any]]:
    """The images the pipeline takes, by diffusers argument (None for the example of a role); None when one is unusable
    (the reason is shown)."""
    chosen: dict[str, Any] = {}
    try:
        for argument, role in spec.images:
            if role != "mask":
                upload = st.file_uploader(f"{image_inputs.role_name(role).capitalize()} (PNG, JPEG or WebP); without one, the example "
                                          f"{image_inputs.role_name(role)} is used", type=IMAGE_TYPES, key=f"{role}:{argument}")
                chosen[argument] = image_inputs.read_upload(upload)
        base = next((chosen.get(a) for a, role in spec.images if role == "init"), None)
        base = image_inputs.role_image("init", base, height, width)
        for argument, role in spec.images:
            if role == "mask":
                chosen[argument] = mask_inputs(base, height, width, key=f"mask:{argument}")
    except NeuronExportError as error:
        ui.show_error(error)
        return None
    shown = [(argument, role) for argument, role in spec.images if role != "mask"]
    for column, (argument, role) in zip(st.columns(4), shown):
        origin = "example" if chosen.get(argument) is None else "yours"
        column.image(image_inputs.role_image(role, chosen.get(argument), height, width),
                     caption=f"{image_inputs.role_name(role)} ({origin})", width="stretch")
    return chosen


def mask_inputs(base, height: int, width: int, key: str):
    """The mask (white where to repaint): an uploaded mask, a rectangle from sliders and strokes painted over the
    init image, shown over it. NeuronExportError when all are empty."""
    st.markdown("**Mask**: where the image is repainted (tinted red below)")
    upload = image_inputs.read_upload(st.file_uploader("Mask image (white: repaint)", type=IMAGE_TYPES, key=f"{key}:upload"))
    rectangle = None
    if st.checkbox("Rectangle", value=upload is None, key=f"{key}:rectangle"):
        left, right = st.slider("Rectangle from left to right (fraction of the width)", 0.0, 1.0,
                                image_inputs.DEFAULT_RECTANGLE[::2], 0.01, key=f"{key}:x")
        top, bottom = st.slider("Rectangle from top to bottom (fraction of the height)", 0.0, 1.0,
                                image_inputs.DEFAULT_RECTANGLE[1::2], 0.01, key=f"{key}:y")
        rectangle = (left, top, right, bottom)
    painted = painted_strokes(base, key)
    mask = image_inputs.mask_image(height, width, upload, rectangle, painted)
    st.image(image_inputs.mask_overlay(base, mask), caption="mask over the init image", width=min(PAINTER_SIDE, 2 * width))
    return mask


def painted_strokes(base, key: str):
    """Strokes painted over the image (an RGBA array, opaque where painted) with streamlit-drawable-canvas,
    or None when it is not installed or nothing was painted."""
    try:
        from streamlit_drawable_canvas import st_canvas
    except ImportError:
        st.caption("To paint the mask, `pip install streamlit-drawable-canvas` (requirements.txt has it).")
        return None
    except Exception as error:  # installed but its component does not register with this Streamlit
        st.caption(f"The mask painter is not available here: {first_line(error)}")
        return None
    scale = PAINTER_SIDE / max(base.size)
    size = (round(base.width * scale), round(base.height * scale))
    brush = st.slider("Brush", 2, 60, 20, key=f"{key}:brush")
    canvas = st_canvas(stroke_width=brush, stroke_color="#ffffff", background_image=base.resize(size), width=size[0], height=size[1],
                       drawing_mode="freedraw", return_image_data=True, key=f"{key}:painter")
    return canvas.image_data


def generation_fields(loaded: playground.LoadedArtifact, spec: DiffusionPipelineSpec) -> playground.ImageSettings:
    """The form's fields: prompt, negative prompt (when the pipeline takes one), steps, guidance, seed (or random),
    images, strength, scheduler, size, and whether to run eager diffusers too."""
    most = playground.max_images(loaded)
    prompt = st.text_area("Prompt", "a photo of an astronaut riding a horse on mars", height=80)
    negative = st.text_input("Negative prompt", "blurry, low quality") if diffusion.takes(spec, "negative_prompt") else ""
    steps_col, guidance_col, seed_col, count_col = st.columns(4)
    steps = steps_col.slider("Steps", 1, 100, 20)
    guidance = guidance_col.slider("Guidance", 0.0, 20.0, float(spec.guidance_scale), 0.5)
    seed = seed_col.number_input("Seed", min_value=0, max_value=diffusion.MAX_SEED, value=0, step=1)
    random_seed = seed_col.checkbox("Random seed", help="a new seed each run, shown with the images so that you can repeat one")
    count = count_col.slider("Images", 1, most, 1) if most > 1 else 1
    if most == 1:
        count_col.caption("1 image per run (the compiled batch)")
    strength = st.slider("Strength", 0.05, 1.0, STRENGTH, 0.05, help="how far the image may move from the init image "
                         "(1: all the steps run; 0.5: the last half)") if spec.strength else None
    scheduler_col, size_col = st.columns(2)
    scheduler = scheduler_col.selectbox("Scheduler", scheduler_choices(loaded),
                                        format_func=lambda name: name or "the artifact's saved one",
                                        help="diffusers schedulers compatible with this pipeline; the first is the artifact's")
    sizes = loaded.model.resolutions  # a bucketed pipeline has several
    size = size_col.selectbox("Size", sizes, index=len(sizes) - 1, format_func=lambda hw: f"{hw[1]}×{hw[0]}") if len(sizes) > 1 else None
    compare = st.checkbox("Also run the eager diffusers pipeline (same seed) next to it, for its image and time",
                          value=loaded.eager_source is not None, disabled=loaded.eager_source is None,
                          help="runs the whole request a second time, uncompiled (the first time also loads it)")
    return playground.ImageSettings(prompt, negative, steps, guidance, None if random_seed else int(seed), count, spec.class_name,
                                    scheduler, strength, resolution=size, compare_eager=compare)


def scheduler_choices(loaded: playground.LoadedArtifact) -> list[Optional[str]]:
    """The schedulers to offer; when the artifact's model_index.json names none this diffusers has, the error
    and [None]: runs use the one saved in its scheduler folder (diffusion.set_scheduler)."""
    try:
        return diffusion.scheduler_names(loaded)
    except NeuronExportError as error:
        ui.show_error(error)
        return [None]


def step_progress() -> Callable[[str, int, int, Optional[float]], None]:
    """A progress bar per pipeline (compiled, then eager), moved by the pipelines' step callback."""
    bars: dict[str, Any] = {}
    names = {"compiled": "Compiled pipeline", "eager": "Eager diffusers pipeline"}

    def on_step(side: str, step: int, steps: int, per_step_s: Optional[float]) -> None:
        if side not in bars:
            bars[side] = st.progress(0.0)
        speed = f" · {short_duration(per_step_s)} per step" if per_step_s else ""
        bars[side].progress(min(step / steps, 1.0), text=f"{names.get(side, side)}: step {step} of {steps}{speed}")

    return on_step


def image_generation(loaded: playground.LoadedArtifact) -> None:
    """The view: pipeline, its images, the form; then the run's images beside eager's, and the gallery."""
    spec = pipeline_choice(loaded)
    height, width = loaded.shapes["height"], loaded.shapes["width"]
    images = role_inputs(loaded, spec, height, width)
    with st.form(loaded.view):
        settings = generation_fields(loaded, spec)
        submitted = st.form_submit_button("Generate", type="primary", disabled=images is None)
    st.caption(f"Compiled for {', '.join(f'{w}×{h}' for h, w in loaded.model.resolutions)} images; "
               "images you upload are resized to the size generated.")
    if submitted and images is not None:
        settings.images = {argument: image for argument, image in images.items() if image is not None}
        run(loaded, settings, step_progress(), busy="Generating…")
        if result := last_result(loaded):
            add_to_gallery(loaded, result[0])
    if result := last_result(loaded):
        show_generation(loaded, *result)
    gallery()


def show_generation(loaded: playground.LoadedArtifact, generation: playground.Generation, stats: playground.RunStats) -> None:
    """Each compiled image, with eager diffusers' image of the same seed next to it when it ran."""
    pairs = list(zip(generation.images, generation.eager_images or [None] * len(generation.images)))
    columns = st.columns(4 if generation.eager_images else min(max(len(pairs), 2), 4))
    cells = [(image, f"compiled · image {n + 1} · {ui.fmt_duration(stats.compiled_s)}") for n, (image, _) in enumerate(pairs)]
    if generation.eager_images:
        cells = [cell for n, (image, eager) in enumerate(pairs) for cell in (
            (image, f"compiled · image {n + 1} · {ui.fmt_duration(stats.compiled_s)}"),
            (eager, f"eager diffusers · image {n + 1} · {ui.fmt_duration(stats.eager_s)}"))]
    for index, (image, caption) in enumerate(cells):
        columns[index % len(columns)].image(image, caption=caption, width="stretch")
    seed = generation.settings["seed"]
    drawn = " (drawn at random: enter it as the seed to make this image again)" if generation.random_seed else ""
    st.caption(f"Seed {seed}{drawn} · {generation.settings['scheduler']} · {generation.settings['pipeline']}")
    if playground.random_weights_demo(loaded.manifest):
        st.caption(":material/casino: Random weights: noise is expected. What this demo shows is that the compiled pipeline "
                   "draws the same picture as eager diffusers, and how fast.")
    latency_row(loaded, stats)


def add_to_gallery(loaded: playground.LoadedArtifact, generation: playground.Generation) -> None:
    """Keep the run's images (as PNG files, ready to download) and settings in this session's gallery."""
    runs = st.session_state.setdefault(GALLERY_KEY, [])
    number = runs[-1]["number"] + 1 if runs else 1
    runs.append({"number": number, "artifact": loaded.path.name, "settings": dict(generation.settings),
                 "images": [image_inputs.png_bytes(image) for image in generation.images]})
    del runs[:-GALLERY_RUNS]


def gallery() -> None:
    """This session's runs, newest first: their images, settings and a download button per image."""
    runs = st.session_state.get(GALLERY_KEY) or []
    if not runs:
        return
    st.subheader("This session's images")
    if st.button("Clear the gallery"):
        runs.clear()
        return
    for entry in reversed(runs):
        settings = entry["settings"]
        st.markdown(f"**Run {entry['number']}** · {entry['artifact']} · " + " · ".join(
            f"{name} {value}" for name, value in settings.items() if name != "prompt" and value != ""))
        st.caption(settings["prompt"])
        for index, (column, png) in enumerate(zip(st.columns(4) * len(entry["images"]), entry["images"])):
            column.image(png, width="stretch")
            column.download_button("Download", png, file_name=f"{entry['artifact']}-run{entry['number']}-seed{settings['seed']}-{index + 1}.png",
                                   mime="image/png", key=f"download:{entry['number']}:{index}", icon=":material/download:")
