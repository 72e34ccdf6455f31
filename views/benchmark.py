"""Benchmark: time artifacts against eager PyTorch and ONNX Runtime (as jobs), compare them in charts.

A benchmark runs as `neuron-export benchmark ARTIFACT` through the job store, one job per artifact (the
dispatcher runs them one after the other, so they do not slow each other down); the page only polls.
Results are read from ARTIFACT/benchmarks/*.json, which also makes the history of earlier runs.
"""

import sys
from pathlib import Path

import streamlit as st

from neuron_export.benchmark import benchmark_history, is_pipeline
from studio import bench_charts, ui

JOB_KIND = "benchmark"


def benchmark_argv(path: Path, iterations: int, warmup: int, batch_sizes: list[int], onnx: bool, steps: int) -> list[str]:
    argv = [sys.executable, "-m", "neuron_export", "benchmark", str(path), "--iterations", str(iterations), "--warmup", str(warmup),
            "--steps", str(steps)]
    if batch_sizes:
        argv += ["--batch_size", *map(str, batch_sizes)]
    if not onnx:
        argv.append("--no-onnx")
    return argv


def parse_batch_sizes(text: str) -> list[int]:
    sizes = text.replace(",", " ").split()
    if not all(part.isdigit() and int(part) > 0 for part in sizes):
        raise ValueError("Batch sizes are positive whole numbers separated by commas, e.g. 1, 4, 8.")
    return sorted({int(part) for part in sizes})


def caption(name: str, manifest: dict) -> str:
    cast = f", {manifest['auto_cast_type']} {manifest['auto_cast']}" if manifest.get("auto_cast") not in (None, "none") else ""
    compiled_batch = manifest["shapes"]["batch_size"] if is_pipeline(manifest) else manifest["inputs"][0]["shape"][0]
    batch = "any batch" if manifest.get("dynamic_batch") and not is_pipeline(manifest) else f"batch {compiled_batch}"
    return f"{name}  —  {manifest['task']}, -O{manifest['optlevel']}{cast}, {batch}, {ui.where_it_runs(manifest)}"


services = ui.services()
store = services.store
st.title("Benchmark")
st.caption("Latency, throughput and memory of compiled artifacts against eager PyTorch and ONNX Runtime, in one run: "
           "every side in its own process, on the same inputs, interleaved. Runs as a job; you can leave this page.")

manifests = ui.artifact_manifests(services.workspace)
if not manifests:
    st.info("No artifact to benchmark yet: compile a model on the **Compile** page.")
    st.stop()
paths = list(manifests)
wanted = [p for p in paths if p.name == st.query_params.get("artifact")]
selected = st.multiselect("Artifacts to compare", paths, default=wanted or paths[:1],
                          format_func=lambda p: caption(p.name, manifests[p]))

# --- Run --------------------------------------------------------------------------------------------
dynamic = [p for p in selected if manifests[p].get("dynamic_batch") and not is_pipeline(manifests[p])]
pipelines = [p for p in selected if is_pipeline(manifests[p])]
with st.form("benchmark"):
    left, middle, right = st.columns(3)
    iterations = left.number_input("Timed calls per side", min_value=1, max_value=10_000, value=30)
    warmup = middle.number_input("Warm-up calls", min_value=0, max_value=1_000, value=5)
    onnx = right.checkbox("Compare with ONNX Runtime", value=True, help="exports the eager model to ONNX for each run")
    batch_text = st.text_input("Batch sizes (artifacts compiled with --dynamic-batch-size)", disabled=not dynamic,
                               placeholder="e.g. 1, 4, 8 — empty: the compiled batch size")
    steps = st.number_input("Denoising steps per image (Stable Diffusion)", min_value=1, max_value=200, value=10,
                            disabled=not pipelines)
    submitted = st.form_submit_button("Run benchmark", type="primary", icon=":material/speed:", disabled=not selected)
if submitted:
    try:
        batch_sizes = parse_batch_sizes(batch_text) if dynamic else []
    except ValueError as error:
        st.error(str(error))
    else:
        for path in selected:
            argv = benchmark_argv(path, int(iterations), int(warmup), batch_sizes if path in dynamic else [], onnx, int(steps))
            job = store.submit(JOB_KIND, argv, title=f"Benchmark {path.name}", artifact=str(path))
            st.session_state.setdefault("benchmark_jobs", []).append(job.id)
        st.toast(f"Queued {len(selected)} benchmark job(s)")


@st.fragment(run_every="2s")
def running_jobs() -> None:
    mine = st.session_state.get("benchmark_jobs", [])
    jobs = [job for job in store.list(limit=50) if job.kind == JOB_KIND and (job.id in mine or not job.is_finished)]
    for job in jobs:
        with st.container(border=True):
            ui.job_panel(store, job.id, log_lines=8)


running_jobs()

# --- Results ----------------------------------------------------------------------------------------
histories = {path: benchmark_history(path) for path in selected}
latest = [history[-1] for history in histories.values() if history]
missing = [path.name for path, history in histories.items() if not history]
if missing:
    st.info(f"No benchmark results yet for {', '.join(missing)}: run one above.")
if latest:
    st.subheader("Latest results")
    batch_sizes = sorted({run["batch_size"] for report in latest for run in report["runs"]})
    batch_size = st.selectbox("Batch size of the latency and speed-up charts", batch_sizes) if len(batch_sizes) > 1 else batch_sizes[0]
    violin = st.toggle("Violin instead of box", value=False)
    st.plotly_chart(bench_charts.latency_figure(latest, batch_size, violin=violin), width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(bench_charts.speedup_figure(latest, batch_size), width="stretch")
    right.plotly_chart(bench_charts.throughput_figure(latest), width="stretch")
    if len(latest) > 1:
        st.plotly_chart(bench_charts.tradeoff_figure(latest, batch_size), width="stretch")
    st.dataframe(bench_charts.summary_rows(latest), hide_index=True, width="stretch")
    hosts = sorted({f"{r['host']['processor']}, {r['host']['cpu_count']} cores, torch {r['host']['torch']}" for r in latest})
    st.caption("Speed-ups compare median (p50) latencies. Peak RSS is each side's own process; \"model RSS\" is its growth "
               f"over a process that has imported torch. Measured on: {'; '.join(hosts)}.")

    st.subheader("History")
    with_history = [path for path, history in histories.items() if history]
    chosen = st.selectbox("Artifact", with_history, format_func=lambda p: p.name)
    st.plotly_chart(bench_charts.history_figure(histories[chosen], batch_size), width="stretch")
