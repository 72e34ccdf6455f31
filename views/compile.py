"""Compile: choose a model and options, submit a compile job, watch it live."""

import re
import sys

import streamlit as st
import torch

from neuron_export.backends import BACKENDS
from neuron_export.cli import export_argv
from neuron_export.demo import DEMO_MODELS
from neuron_export.errors import NeuronExportError
from neuron_export.model_info import inspect_model
from neuron_export.options import AUTO_CAST, AUTO_CAST_TYPES, ExportOptions
from studio import ui

SHAPE_LABELS = {
    "batch_size": "Batch size",
    "sequence_length": "Sequence length (tokens)",
    "num_choices": "Choices",
    "num_channels": "Image channels",
    "height": "Height (px)",
    "width": "Width (px)",
    "num_images_per_prompt": "Images per prompt",
}
SOURCES = ("Demo model", "Local folder", "Hugging Face Hub")

services = ui.services()
st.title("Compile a model")
st.caption("Trace and compile ahead of time, then validate against eager PyTorch. The compile runs as a job: "
           "you can leave this page, reload, or come back from another browser.")


@st.cache_data(show_spinner="Reading the model's config…", max_entries=64)
def model_info(model: str, demo_root: str):
    return inspect_model(model, demo_root=demo_root)


def host_backends(options: ExportOptions) -> dict[str, str | None]:
    """Each backend with the reason it cannot run here (None when it can)."""
    return {name: backend.unavailable_reason(options.replace(backend=name)) for name, backend in BACKENDS.items()}


# --- Model ---------------------------------------------------------------------------------------
st.subheader("1 · Model")
source_kind = st.segmented_control("Source", SOURCES, default=SOURCES[0], key="source_kind") or SOURCES[0]
if source_kind == "Demo model":
    demo = st.selectbox("Built-in model (no download)", list(DEMO_MODELS), key="demo",
                        format_func=lambda name: f"{name} — {DEMO_MODELS[name].description}")
    model = demo
elif source_kind == "Local folder":
    model = st.text_input("Model folder on this host", key="folder", placeholder="/home/ubuntu/models/distilbert-sst2")
else:
    model = st.text_input("Hub model id", key="hub_id", placeholder="distilbert/distilbert-base-uncased-finetuned-sst-2-english")
    st.caption("Downloads config and safetensors weights from the Hugging Face Hub when the job runs; "
               "this host needs Hub access.")

info = None
if model and source_kind != "Hugging Face Hub":
    try:
        info = model_info(model.strip(), str(services.workspace.demo_dir))
    except NeuronExportError as error:
        ui.show_error(error)

if info is not None:
    tasks = info.tasks
    default_task = info.detected_task if info.detected_task in tasks else tasks[0]
    cols = st.columns([2, 3])
    task = cols[0].selectbox("Task", tasks, index=tasks.index(default_task), key=f"task-{model}")
    cols[1].markdown(f"**Architecture:** `{info.model_type}` ({info.library.replace('_', '-')})  \n"
                     f"**Detected task:** {info.detected_task or '—'} · {info.detection_note}")
    shape_names = info.shape_options(task)
else:
    task = st.text_input("Task", value="auto", key="task-hub", help="auto: detected from the model's config when the job runs")
    shape_names = ["batch_size", "sequence_length"]

# --- Input shapes ---------------------------------------------------------------------------------
st.subheader("2 · Input shapes")
st.caption("Compiled models are static: these shapes are fixed. Smaller inputs are padded at run time.")
defaults = info.default_shapes if info else {"batch_size": 1, "sequence_length": 128}
limits = info.shape_limits if info else {}
shapes = {}
shape_cols = st.columns(max(len(shape_names), 1))
for col, name in zip(shape_cols, shape_names):
    shapes[name] = int(col.number_input(SHAPE_LABELS.get(name, name), min_value=1, max_value=limits.get(name, 100_000),
                                        value=min(int(defaults.get(name, 1)), limits.get(name, 100_000)), step=1,
                                        key=f"shape-{name}-{model}"))

# --- Compiler -------------------------------------------------------------------------------------
st.subheader("3 · Compiler")
available = host_backends(ExportOptions())
c1, c2, c3 = st.columns(3)
backend = c1.selectbox("Backend", ["auto", *BACKENDS], key="backend",
                       format_func=lambda b: b if b == "auto" else f"{b} {'✓' if available[b] is None else '— unavailable here'}")
if backend == "auto":
    c1.caption("neuron where torch-neuronx and a Neuron device are present, else inductor.")
elif available[backend]:
    c1.caption(available[backend])
instance_type = None
if backend == "neuron":
    target = c1.selectbox("Compile for", ["this host's Neuron device", "inf2 (cross-compile)", "trn1 (cross-compile)"],
                          key="instance_type")
    instance_type = None if target.startswith("this") else target.split()[0]
device = c2.selectbox("Device (portable backends)", ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"], key="device",
                      disabled=backend == "neuron")
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
if auto_cast != "none" and device == "cpu" and backend != "neuron":
    st.caption("Note: this CPU has no native bf16/fp16 — casting is usually slower here; it pays off on GPU and Neuron.")

# --- Advanced -------------------------------------------------------------------------------------
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

# --- Output and submit ----------------------------------------------------------------------------
st.subheader("4 · Output")
suggested = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model.split(':')[-1].split('/')[-1] or 'model'}-{task}-{backend}").strip("-.")
o1, o2 = st.columns([3, 1], vertical_alignment="bottom")
# Follow the suggestion as model / task / backend change, until the user types a name of their own.
if st.session_state.get("artifact_name", st.session_state.get("suggested_name")) == st.session_state.get("suggested_name"):
    st.session_state["artifact_name"] = suggested
st.session_state["suggested_name"] = suggested
name = o1.text_input("Artifact name (a folder in the workspace)", key="artifact_name")
force = o2.checkbox("Replace if it exists", key="force")

if st.button("Compile", type="primary", icon=":material/bolt:", disabled=not model):
    try:
        output = services.workspace.artifact_path(name)
        options = ExportOptions(
            task=task if info is not None else (task.strip() or "auto"),
            backend=backend,
            device=device if backend != "neuron" else "cpu",
            instance_type=instance_type,
            auto_cast=auto_cast,
            auto_cast_type=auto_cast_type if auto_cast != "none" else None,
            optlevel=optlevel,
            dynamic_batch_size=dynamic_batch,
            atol=atol or None,
            disable_validation=not validate,
            use_cache=use_cache,
            compiler_workdir=str(services.workspace.root / "compiler-workdir" / name) if keep_workdir else None,
            trust_remote_code=trust,
            force=force,
            **shapes,
        )
        if output.exists() and not force:
            raise NeuronExportError(f"an artifact named {name!r} already exists: pick another name or tick 'Replace if it exists'")
        argv = [sys.executable, "-m", "neuron_export", *export_argv(model.strip(), output, options)]
        job = services.store.submit("export", argv, title=f"{name} ({task}, {backend})", artifact=str(output),
                                    metadata={"model": model.strip(), "task": task, "options": options.to_dict()})
        st.query_params["job"] = job.id
    except NeuronExportError as error:
        ui.show_error(error)

job_id = st.query_params.get("job")
if job_id:
    st.divider()
    st.subheader("Progress")

    @st.fragment(run_every="1s")
    def live_job() -> None:
        ui.job_panel(services.store, job_id)

    live_job()
