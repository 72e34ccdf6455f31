"""Compile: choose a model and options, submit a compile job, watch it live.

Each section returns the ExportOptions fields it sets; the Compile button turns them into a job
through studio.jobs.commands, so the job runs exactly what `neuron-export export` would.
"""

import re
import time
from pathlib import Path
from typing import Any, Optional

import streamlit as st
import torch

from neuron_export import hub_reach
from neuron_export.backends import BACKENDS, Backend, auto_pick, choose_backend, cpu_build
from neuron_export.bucketing import parse_resolutions, parse_shape_text
from neuron_export.demo import DEMO_MODELS
from neuron_export.errors import NeuronExportError
from neuron_export.model_info import ModelInfo, inspect_model
from neuron_export import cpu
from neuron_export.options import AUTO_CAST, AUTO_CAST_TYPES, CPU_ISAS, INSTANCE_TYPES, QUANTIZATIONS, ExportOptions
from neuron_export.registry import TEXT_ENCODER
from neuron_export.sources import HUB_ID
from studio import ui
from studio.compile_diffusion import controlnet_section, guidance_section, lora_section
from studio.jobs import EXPORT, JobStore, export_command
from studio.workspace import Workspace

SHAPE_LABELS = {
    "batch_size": "Batch size",
    "sequence_length": "Sequence length (tokens)",
    "num_choices": "Choices",
    "num_channels": "Image channels",
    "height": "Height (px)",
    "width": "Width (px)",
    "num_images_per_prompt": "Images per prompt",
    "audio_sequence_length": "Audio samples (16000 = 1 s)",
    "text_batch_size": "Texts per call (labels)",
    "image_batch_size": "Images per call",
}
SOURCES = ("Demo model", "Local folder", "Hugging Face Hub")
THIS_HOST = "this host's Neuron device"
HUB_SHAPES = ["batch_size", "sequence_length"]  # a hub model is not read before the job runs: text shapes
HUB_CHECKS = "hub_checks"  # session state: hub id -> (why the job could not get it or None, when asked)
HUB_RECHECK_S = 30  # a failed answer is asked again after this long (the network may be back)


@st.cache_data(show_spinner="Reading the model's config…", max_entries=64)
def model_info(model: str, demo_root: str):
    return inspect_model(model, demo_root=demo_root)


def host_backends(options: ExportOptions) -> dict[str, str | None]:
    """Each backend with the reason it cannot run here (None when it can)."""
    return {name: backend.unavailable_reason(options.replace(backend=name)) for name, backend in BACKENDS.items()}


def model_section(workspace: Workspace) -> tuple[str, Optional[ModelInfo], bool]:
    """The model (demo name, folder or hub id), what its config says (unless it is on the hub), and
    whether it is ready to compile (its config read, or a well-formed hub id); problems on screen."""
    st.subheader("1 · Model")
    source_kind = st.segmented_control("Source", SOURCES, default=SOURCES[0], key="source_kind") or SOURCES[0]
    if source_kind == "Demo model":
        linked = st.query_params.get("demo")  # Start here links to a demo's compile
        if linked in DEMO_MODELS and "demo" not in st.session_state:
            st.session_state["demo"] = linked
        model = st.selectbox("Built-in model (no download)", list(DEMO_MODELS), key="demo",
                             format_func=lambda name: f"{name} — {DEMO_MODELS[name].description}")
    elif source_kind == "Local folder":
        model = st.text_input("Model folder on this host", key="folder", placeholder="/home/ubuntu/models/distilbert-sst2")
    else:
        model = st.text_input("Hub model id", key="hub_id", placeholder="distilbert/distilbert-base-uncased-finetuned-sst-2-english")
        st.caption("Downloads config and safetensors weights from the Hugging Face Hub when the job runs; "
                   "this host needs Hub access.")
    info, ready = None, False
    try:
        if source_kind == "Hugging Face Hub":
            if model and not is_hub_id(model):
                raise NeuronExportError(f"{model.strip()!r} is not a Hub model id (OWNER/NAME, e.g. distilbert/distilbert-base-uncased)")
            problem = hub_problem(model.strip()) if model else None
            if problem:
                raise NeuronExportError(problem)
            if model:
                st.caption(f":material/check: The job can get {model.strip()} (the Hub answered, or it is in this host's cache).")
            ready = bool(model)
        elif model:
            if source_kind == "Local folder":
                # A typed folder must be in a model root: the same answer whether it is missing or not allowed.
                model = str(workspace.model_folder(model))
            info = model_info(model.strip(), str(workspace.demo_dir))
            ready = True
    except NeuronExportError as error:
        ui.show_error(error)
    return model, info, ready


def hub_problem(repo_id: str) -> Optional[str]:
    """Why the job could not get `repo_id` from the Hub, asked once per id in this session (a failure
    again after HUB_RECHECK_S): a doomed job is never queued, and typing elsewhere asks nothing."""
    checks = st.session_state.setdefault(HUB_CHECKS, {})
    problem, asked = checks.get(repo_id, (None, None))
    if asked is None or (problem and time.monotonic() - asked > HUB_RECHECK_S):
        with st.spinner(f"Asking the Hugging Face Hub for {repo_id}…"):
            problem = hub_reach.hub_model_problem(repo_id)
        checks[repo_id] = (problem, time.monotonic())
    return problem


def is_hub_id(text: str) -> bool:
    """OWNER/NAME as the Hub spells ids, and not a path here (the job would read a folder of that name)."""
    text = text.strip()
    return bool(HUB_ID.match(text)) and not Path(text).expanduser().exists()


def task_choice(model: str, info: Optional[ModelInfo]) -> tuple[str, list[str]]:
    """The task (a select box of the model's tasks, or free text for the hub) and the shape options it takes."""
    if info is None:
        task = st.text_input("Task", value="auto", key="task-hub", help="auto: detected from the model's config when the job runs")
        return task, HUB_SHAPES
    tasks = info.tasks
    default_task = info.detected_task if info.detected_task in tasks else tasks[0]
    cols = st.columns([2, 3])
    task = cols[0].selectbox("Task", tasks, index=tasks.index(default_task), key=f"task-{model}")
    cols[1].markdown(f"**Architecture:** `{info.model_type}` ({info.library.replace('_', '-')})  \n"
                     f"**Detected task:** {info.detected_task or '—'} · {info.detection_note}")
    return task, info.shape_options(task)


def shapes_section(model: str, info: Optional[ModelInfo], shape_names: list[str]) -> dict[str, int]:
    st.subheader("2 · Input shapes")
    st.caption("Compiled models are static: these shapes are fixed. Smaller inputs are padded at run time.")
    defaults = info.default_shapes if info else {"batch_size": 1, "sequence_length": 128}
    limits = info.shape_limits if info else {}
    shapes = {}
    for col, name in zip(st.columns(max(len(shape_names), 1)), shape_names):
        shapes[name] = int(col.number_input(SHAPE_LABELS.get(name, name), min_value=1, max_value=limits.get(name, 100_000),
                                            value=min(int(defaults.get(name, 1)), limits.get(name, 100_000)), step=1,
                                            key=f"shape-{name}-{model}"))
    return shapes


def buckets_section(model: str, info: Optional[ModelInfo], task: str, shape_names: list[str]) -> Optional[dict[str, Any]]:
    """Optional several values of the bucketable shapes (one compiled model each): the ExportOptions values
    they set (see bucket_options), or None when one is wrong (the error is on screen)."""
    groups = info.bucketable(task) if info is not None else TEXT_ENCODER.bucketable
    texts = {}
    for group in (g for g in groups if set(g.axes) <= set(shape_names)):
        if set(group.axes) == {"height", "width"}:
            texts[group.axes] = st.text_input("Resolutions (buckets, optional)", key=f"buckets-{'-'.join(group.axes)}-{model}",
                                              placeholder="512x512, 768x768",
                                              help="Width×height, comma-separated: one compiled UNet and VAE per resolution "
                                                   "(the text encoders once); each run picks its own. Empty: the size above.")
        else:
            axis = group.axes[0]
            texts[group.axes] = st.text_input(f"Buckets: several {axis.replace('_', ' ')} values (optional)", key=f"buckets-{axis}-{model}",
                                              placeholder="32,64,128 or auto:16-512",
                                              help="One compiled model per value; each call runs on the smallest that fits. "
                                                   "auto:LOW-HIGH lets a cost model pick powers of two. Empty: the value above.")
    try:
        return bucket_options(texts)
    except NeuronExportError as error:
        ui.show_error(error)
        return None


def bucket_options(texts: dict[tuple[str, ...], str]) -> dict[str, Any]:
    """The ExportOptions values of the typed buckets (they replace the single values of those shapes)."""
    values: dict[str, Any] = {}
    for axes, text in texts.items():
        if not text.strip():
            continue
        if set(axes) == {"height", "width"}:
            values["height"], values["width"] = parse_resolutions(text)
        else:
            values[axes[0]] = parse_shape_text(f"--{axes[0]}", text)
    return values


def backend_choice(column) -> tuple[str, Backend, Optional[str]]:
    """The Backend select box: the choice, the backend it means on this host, and the Neuron instance to compile for."""
    available = host_backends(ExportOptions())
    choice = column.selectbox("Backend", ["auto", *BACKENDS], key="backend",
                              format_func=lambda b: b if b == "auto" else f"{b} {'✓' if available[b] is None else '— unavailable here'}")
    backend = auto_pick(ExportOptions())[0] if choice == "auto" else BACKENDS[choice]
    instance_type = None
    if backend.is_neuron:
        target = column.selectbox("Compile for", [THIS_HOST, *(f"{t} (cross-compile)" for t in INSTANCE_TYPES)],
                                  key="instance_type")
        instance_type = None if target == THIS_HOST else target.split()[0]
    return choice, backend, instance_type


def auto_sentence(options: ExportOptions) -> str:
    """What --backend auto will use on this host with these options, and why, in one plain sentence."""
    backend, why = auto_pick(options)
    return f"auto will use **{backend.name}** ({'Neuron' if backend.is_neuron else options.device.upper()}): {why}."


def settled_backend(compiler: dict[str, Any]) -> Optional[Backend]:
    """The backend these compiler choices compile with on this host (auto resolved as the engine does), or
    None with the reason on screen: what the job would fail on is said before anything is queued."""
    try:
        return choose_backend(ExportOptions(**compiler))[0]
    except NeuronExportError as error:
        ui.show_error(error)
        return None


def buildable_cpu_isas(column) -> list[str]:
    """The CPU levels this host can build and check code for; why the others are not offered, as a caption."""
    problems = {isa: cpu_build.isa_problem(ExportOptions(cpu_isa=isa)) for isa in CPU_ISAS}
    refused = list(dict.fromkeys(problem for problem in problems.values() if problem))  # one line per cause
    if refused:
        column.caption("Not offered here: " + "; ".join(refused) + ".")
    return [isa for isa, problem in problems.items() if not problem]


def compiler_section() -> tuple[dict[str, Any], Optional[Backend]]:
    """The compiler's ExportOptions fields, and the backend they resolve to here (None: an error is on screen)."""
    st.subheader("3 · Compiler")
    c1, c2, c3 = st.columns(3)
    choice, backend, instance_type = backend_choice(c1)
    device = c2.selectbox("Device (portable backends)", ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"],
                          key="device", disabled=backend.is_neuron)
    optlevel = c3.segmented_control("Optimization", [1, 2, 3], default=2, key="optlevel",
                                    format_func=lambda n: {1: "-O1 fast", 2: "-O2 balanced", 3: "-O3 max"}[n],
                                    help="-O1: fastest compile. -O2: the default balance. -O3: most optimization, "
                                         "longest compile and most memory.") or 2
    c4, c5, c6 = st.columns(3)
    auto_cast = c4.selectbox("Auto-cast", AUTO_CAST, key="auto_cast",
                             help="Cast fp32 operations to a lower precision for speed (matmul: matrix products only).")
    auto_cast_type = c5.selectbox("Cast to", AUTO_CAST_TYPES, key="auto_cast_type", disabled=auto_cast == "none")
    dynamic_batch = c6.toggle("Dynamic batch size", key="dynamic_batch",
                              help="Accept other batch sizes than the compiled one, at some latency cost.")
    native_bf16 = {"avx512_bf16", "amx_bf16"} & cpu.host_flags()
    if auto_cast != "none" and device == "cpu" and not backend.is_neuron and not native_bf16:
        st.caption("Note: this CPU has no native bf16/fp16 — casting is usually slower here; it pays off on GPU and Neuron.")
    c7, c8 = st.columns(2)
    cpu_isa = c7.selectbox("CPU code for", buildable_cpu_isas(c7), key="cpu_isa", disabled=not backend.records_cpu_isa,
                           format_func=lambda isa: {"native": "this CPU (native)", "avx2": "any AVX2 CPU (x86-64-v3)",
                                                    "avx512": "any AVX-512 CPU (x86-64-v4)"}[isa],
                           help="inductor: the CPUs the artifact's machine code runs on; loading refuses a CPU below it.")
    quantize = c8.selectbox("Quantize", QUANTIZATIONS, key="quantize", disabled=auto_cast != "none",
                            help="int8-dynamic: linear layers in int8 (inductor on x86); validated against eager fp32 "
                                 "with atol 0.5 unless you set one.")
    compiler = {
        "backend": choice, "device": "cpu" if backend.is_neuron else device, "instance_type": instance_type,
        "optlevel": optlevel, "auto_cast": auto_cast, "auto_cast_type": auto_cast_type if auto_cast != "none" else None,
        "dynamic_batch_size": dynamic_batch, "cpu_isa": cpu_isa if backend.records_cpu_isa else "native",
        "quantize": quantize if auto_cast == "none" else "none",
    }
    if choice == "auto":
        c1.caption(auto_sentence(ExportOptions(device=compiler["device"], instance_type=instance_type)))
    return compiler, settled_backend(compiler)


def advanced_section() -> tuple[dict[str, Any], bool]:
    """Validation, cache and trust options, and whether to keep the compiler's files."""
    with st.expander("Advanced"):
        a1, a2 = st.columns(2)
        atol = a1.number_input("Validation tolerance (atol; 0 = the model family's default)", min_value=0.0, value=0.0,
                               format="%g", key="atol")
        validate = a1.toggle("Validate against eager PyTorch", value=True, key="validate")
        use_cache = a1.toggle("Use the compile cache", value=True, key="use_cache")
        keep_workdir = a2.toggle("Keep the compiler's intermediate files", key="keep_workdir")
        trust = a2.checkbox("Trust remote code", key="trust_remote_code",
                            help="Runs Python code shipped in the model's repository.")
        if trust:
            a2.warning("Only for models whose code you trust: it runs on this host with your permissions.",
                       icon=":material/warning:")
    return {"atol": atol or None, "disable_validation": not validate, "use_cache": use_cache, "trust_remote_code": trust}, keep_workdir


def suggested_name(model: str, task: str, backend: Optional[Backend], options: Optional[ExportOptions]) -> str:
    """MODEL-TASK-BACKEND[-TARGET][-CAST][-QUANTIZATION]: what was chosen, with auto resolved to what it
    will be here (a task the job detects, on the hub, is left out rather than called auto)."""
    parts = [model.split(":")[-1].split("/")[-1] or "model", task if task.strip() != "auto" else ""]
    if backend is not None and options is not None:  # None: the form shows a problem, and Compile is disabled
        parts += [backend.name, backend.target(options) or "", f"{options.auto_cast}-{options.cast_type}" if options.cast_type else "",
                  options.quantize if options.quantize != "none" else ""]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(part for part in parts if part)).strip("-.")


def output_section(suggested: str) -> tuple[str, bool]:
    """The artifact's folder name (following a suggestion until the user types one) and whether to replace it."""
    st.subheader("4 · Output")
    o1, o2 = st.columns([3, 1], vertical_alignment="bottom")
    # Follow the suggestion as model / task / backend change, until the user types a name of their own.
    if st.session_state.get("artifact_name", st.session_state.get("suggested_name")) == st.session_state.get("suggested_name"):
        st.session_state["artifact_name"] = suggested
    st.session_state["suggested_name"] = suggested
    name = o1.text_input("Artifact name (a folder in the workspace)", key="artifact_name")
    force = o2.checkbox("Replace if it exists", key="force")
    return name, force


def output_ready(workspace: Workspace, name: str, force: bool) -> bool:
    """Whether the artifact can be written under this name; if not, the reason is on screen (and Compile disabled)."""
    try:
        output = workspace.artifact_path(name)
    except NeuronExportError as error:
        ui.show_error(error)
        return False
    if output.exists() and not force:
        st.warning(f"An artifact named {name!r} already exists: pick another name or tick 'Replace if it exists'.",
                   icon=":material/warning:")
        return False
    return True


def what_compile_does(model: str, task: str, shapes: dict[str, int], backend: Backend, name: str) -> str:
    shown = " · ".join(f"{axis.replace('_', ' ')} {value}" for axis, value in shapes.items())
    return f"Compiles {model.strip()} for {task_words(task)} ({shown}) with {backend.name} into {name}."


def task_words(task: str) -> str:
    return "the task its config names" if task.strip() == "auto" else task


def form_options(task: str, info: Optional[ModelInfo], shapes: dict[str, int], buckets: dict[str, Any],
                 compiler: dict[str, Any], checks: dict[str, Any]) -> Optional[ExportOptions]:
    """The job's ExportOptions from the form, or None with the reason on screen (Compile stays disabled)."""
    try:
        return ExportOptions(task=task if info is not None else (task.strip() or "auto"),
                             **compiler, **checks, **{**shapes, **buckets})
    except NeuronExportError as error:
        ui.show_error(error)
        return None


def submit(store: JobStore, model: str, task: str, output: Path, options: ExportOptions, backend: Backend) -> None:
    """Queue the export job and follow it (?job=ID). The job runs the options as chosen (auto stays auto, so
    the manifest records why); its title and metadata name the backend auto resolved to."""
    job = store.submit(EXPORT, export_command(model, output, options), title=f"{output.name} ({task_words(task)}, {backend.name})",
                       artifact=str(output),
                       metadata={"model": model, "task": task, "backend": backend.name, "options": options.to_dict()})
    st.query_params["job"] = job.id


def progress_section(store: JobStore) -> None:
    """The followed job (?job=ID) at the top of the page, where it is seen without scrolling."""
    job_id = st.query_params.get("job")
    if not job_id:
        return

    @st.fragment(run_every="1s")
    def live_job() -> None:
        with st.container(border=True):
            ui.job_panel(store, job_id)

    live_job()


def main() -> None:
    services = ui.services()
    st.title("Compile a model")
    st.caption("Trace and compile ahead of time, then validate against eager PyTorch. The compile runs as a job: "
               "you can leave this page, reload, or come back from another browser.")
    progress = st.container()  # filled last, so that it follows a job submitted by this very run
    form = st.container()
    # Compile's place, below the form, holds a disabled button until this run has read the model's
    # config and found no problem: a click meanwhile (on the last run's button) would be lost.
    action = st.empty()
    action.button("Compile", type="primary", icon=":material/bolt:", disabled=True, key="compile-waiting")
    with form:
        model, info, model_ready = model_section(services.workspace)
        task, shape_names = task_choice(model, info)
        shapes = shapes_section(model, info, shape_names)
        buckets = buckets_section(model, info, task, shape_names)
        compiler, backend = compiler_section()
        checks, keep_workdir = advanced_section()
        loras, controlnets = lora_section(services.workspace, info), controlnet_section(services.workspace, info)
        diffusion = None if loras is None or controlnets is None else {**loras, **controlnets, **guidance_section(info)}
        options = form_options(task, info, shapes, buckets, compiler, {**checks, **diffusion}) if buckets is not None and diffusion is not None else None
        name, force = output_section(suggested_name(model, task, backend, options))
        # Every problem the form shows keeps Compile disabled: a job that would fail is never queued.
        ready = output_ready(services.workspace, name, force) and model_ready and options is not None and backend is not None
    if ready:  # what a click does, from this run's values (stale ones of the last run are greyed out meanwhile)
        st.caption(what_compile_does(model, task, shapes, backend, name))
    else:
        st.caption("Compile is available once a model is chosen and the form shows no problem.")
    if action.button("Compile", type="primary", icon=":material/bolt:", disabled=not ready, key="compile"):
        try:
            output = services.workspace.artifact_path(name)
            workdir = str(services.workspace.root / "compiler-workdir" / name) if keep_workdir else None
            submit(services.store, model.strip(), task, output, options.replace(compiler_workdir=workdir, force=force), backend)
        except NeuronExportError as error:
            ui.show_error(error)
    with progress:
        progress_section(services.store)


main()
