"""Jobs: every compile / benchmark job with live status; pick one for its log and Cancel."""

import dataclasses
import datetime

import pandas as pd
import streamlit as st

from neuron_export.errors import NeuronExportError
from studio import ui
from studio.jobs import Job, JobStatus, JobStore, farm, timeline


@st.fragment(run_every="2s")
def job_list(store: JobStore) -> None:
    jobs = store.list(limit=200)
    if not jobs:
        st.info("No jobs yet: start one on the **Compile** page.")
        return
    running = sum(j.status == JobStatus.RUNNING for j in jobs)
    queued = sum(j.status == JobStatus.QUEUED for j in jobs)
    m = st.columns(3)
    m[0].metric("Running", running)
    m[1].metric("Queued", queued)
    m[2].metric("Finished", len(jobs) - running - queued)
    table = pd.DataFrame(
        {
            "job": [j.id for j in jobs],
            "title": [j.title for j in jobs],
            "kind": [j.kind for j in jobs],
            "status": [str(j.status) for j in jobs],
            "doing": [timeline.stage_words(j) for j in jobs],
            "progress": [1.0 if j.status == JobStatus.SUCCEEDED else float(j.progress or 0.0) for j in jobs],
            "elapsed": [ui.fmt_duration(j.elapsed_s) for j in jobs],
            "created": [datetime.datetime.fromtimestamp(j.created_at).strftime("%Y-%m-%d %H:%M:%S") for j in jobs],
            "message": [j.message or "" for j in jobs],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent")},
    )


@st.fragment(run_every="1s")
def details(store: JobStore, job_id: str) -> None:
    ui.job_panel(store, job_id, log_lines=60)


@st.fragment(run_every="3s")
def farm_tasks(store: JobStore, job_id: str) -> None:
    """A farm job's Ray tasks (its components and buckets): their state and the node each runs on."""
    job = store.get(job_id)
    where = farm.farm_of(job) if job else None
    if not where:
        return
    st.markdown(f"**Ray tasks** of Ray job `{where['submission_id']}` on the farm at `{where['address']}`")
    if job.status != JobStatus.RUNNING or not where["submitted"]:  # the cluster is asked only while it matters
        st.caption("Not submitted yet." if job.status == JobStatus.RUNNING else
                   f"The job is {job.status}: its Ray tasks are no longer followed.")
        return
    try:
        rows = farm.task_rows(job)
    except NeuronExportError as error:
        st.warning(str(error), icon=":material/cloud_off:")
        return
    if not rows:
        st.caption("No Ray task yet: the job's driver is starting, or planning the export.")
        return
    st.dataframe([dataclasses.asdict(row) for row in rows], hide_index=True, width="stretch", key="ray-tasks")


def job_details(store: JobStore, jobs: list[Job]) -> None:
    """A picked job's live panel (remembered in the URL as ?job=ID), and removing the finished ones."""
    ids = [j.id for j in jobs]
    titles = {j.id: f"{j.title} · {j.id}" for j in jobs}  # live status is in the panel below
    wanted = st.query_params.get("job")
    chosen = st.selectbox("Job details", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=titles.get)
    st.query_params["job"] = chosen
    details(store, chosen)
    farm_tasks(store, chosen)
    finished = [j for j in jobs if j.is_finished]
    if finished and st.button(f"Remove {len(finished)} finished job(s) from the list", icon=":material/delete_sweep:"):
        removed = store.delete_finished()
        st.toast(f"Removed {removed} finished job(s); their artifacts are kept.")
        st.rerun()


def main() -> None:
    store = ui.services().store
    st.title("Jobs")
    st.caption(f"Compiles run one at a time by default (set {ui.MAX_JOBS_ENV} for more); the rest wait in order. "
               "Jobs keep running when you close the browser.")
    job_list(store)
    jobs = store.list(limit=200)
    if jobs:
        job_details(store, jobs)


main()
