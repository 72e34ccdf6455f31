"""Benchmark: time artifacts against eager PyTorch and ONNX Runtime (as jobs), compare them in charts.

A benchmark runs as `neuron-export benchmark ARTIFACT` through the job store, one job per artifact (the
dispatcher runs them one after the other, so they do not slow each other down); the page only polls.
Results are read from ARTIFACT/benchmarks/*.json, which also makes the history of earlier runs.
"""

from pathlib import Path

import streamlit as st

from neuron_export import Manifest
from neuron_export.benchmark import benchmark_history
from neuron_export.diffusion.requests import artifact_pipeline_spec
from neuron_export.registry import DIFFUSION_TASKS
from studio import bench_charts, ui
from studio.jobs import BENCHMARK, Job, JobStore, benchmark_command

JOBS_KEY = "benchmark_jobs"  # this session's benchmark jobs, shown until it leaves
WATCHED_KEY = "benchmark_unfinished"  # the jobs the live panel last saw unfinished


def parse_batch_sizes(text: str) -> list[int]:
    sizes = text.replace(",", " ").split()
    if not all(part.isdigit() and int(part) > 0 for part in sizes):
        raise ValueError("Batch sizes are positive whole numbers separated by commas, e.g. 1, 4, 8.")
    return sorted({int(part) for part in sizes})


def any_batch(manifest: Manifest) -> bool:
    """Whether the benchmark can time other batch sizes than the compiled one (not for pipelines)."""
    return manifest.dynamic_batch and not manifest.is_pipeline


def pipeline_classes(manifest: Manifest) -> list[str]:
    """The pipeline classes a Stable Diffusion artifact runs, its own first (the benchmark's default,
    requests.artifact_pipeline_spec: img2img for an SDXL refiner, whose UNet needs the refiner's time ids),
    then the rest of its task's; [] for other models."""
    task = DIFFUSION_TASKS.get(manifest.task) if manifest.is_pipeline else None
    if not task:
        return []
    own = artifact_pipeline_spec(manifest).class_name
    return [own] + [spec.class_name for spec in task.pipelines if spec.class_name != own]


def caption(name: str, manifest: Manifest) -> str:
    cast = f", {manifest.auto_cast_type} {manifest.auto_cast}" if manifest.auto_cast != "none" else ""
    batch = "any batch" if any_batch(manifest) else f"batch {manifest.batch_size}"
    return f"{name}  —  {manifest.task}, -O{manifest.optlevel}{cast}, {batch}, {ui.where_it_runs(manifest)}"


def run_form(store: JobStore, selected: list[Path], manifests: dict[Path, Manifest]) -> None:
    """The run settings; submitting queues one benchmark job per selected artifact."""
    trusted = {p for p in selected if ui.remote_code_consent(manifests[p], "benchmark")}
    dynamic = [p for p in selected if any_batch(manifests[p])]
    pipelines = [p for p in selected if manifests[p].is_pipeline]
    with st.form("benchmark"):
        left, middle, right = st.columns(3)
        iterations = left.number_input("Timed calls per side", min_value=1, max_value=10_000, value=30)
        warmup = middle.number_input("Warm-up calls", min_value=0, max_value=1_000, value=5)
        onnx = right.checkbox("Compare with peers", value=True,
                              help="ONNX Runtime and OpenVINO (where installed) on the eager model exported to ONNX, each run")
        batch_text = st.text_input("Batch sizes (artifacts compiled with --dynamic-batch-size)", disabled=not dynamic,
                                   placeholder="e.g. 1, 4, 8 — empty: the compiled batch size")
        steps = st.number_input("Denoising steps per image (Stable Diffusion)", min_value=1, max_value=200, value=10,
                                disabled=not pipelines)
        classes = list(dict.fromkeys(name for p in pipelines for name in pipeline_classes(manifests[p])))
        chosen = st.multiselect("Pipeline classes (Stable Diffusion): one job each, with its example inputs", classes,
                                default=list(dict.fromkeys(pipeline_classes(manifests[p])[0] for p in pipelines)),
                                disabled=not pipelines,
                                help="text to image, image to image, ...: the classes of the task; the default is the artifact's own")
        submitted = st.form_submit_button("Run benchmark", type="primary", icon=":material/speed:", disabled=not selected)
    if not submitted:
        return
    try:
        batch_sizes = parse_batch_sizes(batch_text) if dynamic else []
    except ValueError as error:
        st.error(str(error))
        return
    queued = 0
    for path in selected:
        for pipeline in [name for name in pipeline_classes(manifests[path]) if name in chosen] or [None]:
            argv = benchmark_command(path, iterations=int(iterations), warmup=int(warmup), steps=int(steps),
                                     batch_sizes=batch_sizes if path in dynamic else [], onnx=onnx,
                                     trust_remote_code=path in trusted, pipeline=pipeline)
            title = f"Benchmark {path.name}" + (f" ({pipeline})" if pipeline else "")
            job = store.submit(BENCHMARK, argv, title=title, artifact=str(path))
            st.session_state.setdefault(JOBS_KEY, []).append(job.id)
            queued += 1
    st.toast(f"Queued {queued} benchmark job(s)")


def finished_since(watched: set[str], jobs: list[Job]) -> set[str]:
    """Jobs that were running at the last look (`watched`) and have finished since."""
    unfinished = {job.id for job in jobs if not job.is_finished}
    return watched - unfinished


@st.fragment(run_every=2.0)  # seconds as a number: a "2s" string makes Streamlit import pandas
def running_jobs(store: JobStore) -> None:
    """The benchmark jobs of this session and any still running, live; when one finishes, the whole page
    runs again so that its results appear below without a reload."""
    mine = st.session_state.get(JOBS_KEY, [])
    jobs = [job for job in store.list(limit=50) if job.kind == BENCHMARK and (job.id in mine or not job.is_finished)]
    finished = finished_since(st.session_state.get(WATCHED_KEY, set()), jobs)
    st.session_state[WATCHED_KEY] = {job.id for job in jobs if not job.is_finished}
    if finished:
        st.rerun()  # scope "app": the results section is outside this fragment
    for job in jobs:
        with st.container(border=True):
            ui.job_panel(store, job.id, log_lines=8)


def latest_results(latest: list[dict]) -> int:
    """Charts and table of the latest run of each artifact; returns the batch size the charts show."""
    st.subheader("Latest results")
    batch_sizes = sorted({run["batch_size"] for report in latest for run in report["runs"]})
    batch_size = st.selectbox("Batch size of the latency and speed-up charts", batch_sizes) if len(batch_sizes) > 1 else batch_sizes[0]
    violin = st.toggle("Violin instead of box", value=False)
    st.plotly_chart(bench_charts.latency_figure(latest, batch_size, violin=violin), width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(bench_charts.speedup_figure(latest, batch_size), width="stretch")
    right.plotly_chart(bench_charts.throughput_figure(latest), width="stretch")
    st.plotly_chart(bench_charts.efficiency_figure(latest, batch_size), width="stretch")
    if len(latest) > 1:
        st.plotly_chart(bench_charts.tradeoff_figure(latest, batch_size), width="stretch")
    st.dataframe(bench_charts.summary_rows(latest), hide_index=True, width="stretch")
    hosts = sorted({f"{r['host']['processor']} ({r['host'].get('isa', 'ISA not recorded')}), {r['host']['cpu_count']} cores, "
                    f"torch {r['host']['torch']}" for r in latest})
    st.caption("Speed-ups compare median (p50) latencies. Peak RSS is each side's own process; \"model RSS\" is its growth "
               "over a process that has imported torch. GFLOP/s: FLOPs counted on the exported graph / p50 latency; % of "
               "peak: of cores x clock x FLOP/cycle for the side's precision (hover a bar for the assumptions); busy "
               f"cores: CPU time / wall time of the side's process. Measured on: {'; '.join(hosts)}.")
    return batch_size


def results(selected: list[Path]) -> None:
    histories = {path: benchmark_history(path) for path in selected}
    latest = [history[-1] for history in histories.values() if history]
    missing = [path.name for path, history in histories.items() if not history]
    if missing:
        st.info(f"No benchmark results yet for {', '.join(missing)}: run one above.")
    if not latest:
        return
    batch_size = latest_results(latest)
    st.subheader("History")
    with_history = [path for path, history in histories.items() if history]
    chosen = st.selectbox("Artifact", with_history, format_func=lambda p: p.name)
    st.plotly_chart(bench_charts.history_figure(histories[chosen], batch_size), width="stretch")


def main() -> None:
    services = ui.services()
    st.title("Benchmark")
    st.caption("Latency, throughput and memory of compiled artifacts against eager PyTorch and ONNX Runtime, in one run: "
               "every side in its own process, on the same inputs, interleaved. Runs as a job; you can leave this page.")
    manifests = ui.artifact_manifests(services.workspace)
    if not manifests:
        st.info("No artifact to benchmark yet: compile a model on the **Compile** page.")
        return
    paths = list(manifests)
    wanted = [p for p in paths if p.name == ui.remembered_artifact()]  # the one chosen on the previous page
    selected = st.multiselect("Artifacts to compare", paths, default=wanted or paths[:1],
                              format_func=lambda p: caption(p.name, manifests[p]))
    if selected:
        ui.remember_artifact(selected[0].name)
    run_form(services.store, selected, manifests)
    running_jobs(services.store)
    results(selected)


main()
