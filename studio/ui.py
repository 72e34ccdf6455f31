"""Reusable dashboard pieces: the shared services, artifact picker, badges and units."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import streamlit as st

from neuron_export import Manifest, read_manifest, read_validation
from neuron_export.artifact import MANIFEST, check_output_dir
from neuron_export.artifact.folders import clean_stale
from neuron_export.errors import NeuronExportError
from neuron_export.hub import download_problem
from neuron_export.sources import untrained_warning
from studio.jobs import ACTIVE_STATUSES, EXPORT, Dispatcher, Job, JobStatus, JobStore, commands, timeline
from studio.jobs.timeline import fmt_duration  # noqa: F401  (pages write durations as ui.fmt_duration)
from studio.workspace import Workspace

MAX_JOBS_ENV = "NEURON_EXPORT_MAX_JOBS"
LAST_ARTIFACT_KEY = "last_artifact"  # session state: the artifact last picked, preselected on the next page
TRUSTED_SOURCES_KEY = "remote_code_trusted"  # session state: sources whose own code this session agreed to run
log = logging.getLogger("neuron_export.studio")


@dataclass(frozen=True)
class Services:
    workspace: Workspace
    store: JobStore
    dispatcher: Dispatcher


@st.cache_resource
def services() -> Services:
    """One workspace, job store and queue dispatcher per server process, shared by all sessions.

    Nothing here imports torch or transformers: the first page paints without them (see warm_up)."""
    workspace = Workspace()
    # Demo models and the compile cache live in the workspace too; job subprocesses inherit this.
    os.environ.setdefault("NEURON_EXPORT_DEMO_DIR", str(workspace.demo_dir))
    os.environ.setdefault("NEURON_EXPORT_CACHE", str(workspace.cache_dir))
    store = JobStore(workspace.db_path, workspace.jobs_dir)
    dispatcher = Dispatcher(store, max_concurrent=int(os.environ.get(MAX_JOBS_ENV, "1")))
    dispatcher.start()
    return Services(workspace, store, dispatcher)


@st.cache_resource
def warm_up() -> threading.Thread:
    """Once per server, after the first page has painted (app.py calls this last): in the background,
    import torch and transformers' model registry (seconds) before pages use them from several
    threads, and remove the temporary folders of killed exports."""
    thread = threading.Thread(target=_warm_up, args=(services().workspace,), name="studio-warm-up", daemon=True)
    thread.start()
    return thread


def _warm_up(workspace: Workspace) -> None:
    import transformers.models.auto.modeling_auto  # noqa: F401

    from neuron_export.export.cache import cache_root

    for folder in (workspace.artifacts_dir, Path(os.environ["NEURON_EXPORT_DEMO_DIR"]), cache_root()):
        for stale in clean_stale(folder):  # temporary folders of killed jobs; live ones are kept
            log.info("removed %s, left by an export that was killed", stale)


def fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def fmt_mb(size: Optional[int]) -> str:
    return "—" if size is None else f"{size / 1e6:,.1f} MB"


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def where_it_runs(manifest: Manifest) -> str:
    """Short label of the backend and where an artifact can run; never calls a portable build Neuron."""
    if manifest.is_neuron:
        return f"Neuron · {manifest.target or 'inf2'}"
    return f"{manifest.backend} · {manifest.device.upper()} · not Neuron"


def shapes_summary(manifest: Manifest) -> str:
    """The compiled shapes in words: 'batch size 1 · sequence length 16' (the UNet's derived ones left out)."""
    bucketed = {axis: ", ".join(str(b.shapes[axis]) for b in manifest.buckets) for axis in manifest.buckets[0].shapes} if manifest.buckets else {}
    return " · ".join(f"{k.replace('_', ' ')} {bucketed.get(k, v)}" + (" (buckets)" if k in bucketed else "")
                      for k, v in manifest.shapes.items() if not k.startswith("unet_"))


def backend_badge(manifest: Manifest) -> None:
    if manifest.is_neuron:
        st.badge(where_it_runs(manifest), icon=":material/memory:", color="green")
    else:
        st.badge(where_it_runs(manifest), icon=":material/computer:", color="orange")
    st.caption(f"Runs on {manifest.runs_on or 'unknown'}")


def verdict(manifest: Manifest) -> tuple[str, str]:
    """(label, colour) of an artifact's validation verdict."""
    passed = manifest.validation.passed
    if passed is True:
        return "validated ✓", "green"
    if passed is False:
        return "validation failed ✗", "red"
    return "not validated", "gray"


def verdict_badge(manifest: Manifest) -> None:
    label, colour = verdict(manifest)
    st.badge(label, color=colour)


def untrained_badge(manifest: Manifest) -> None:
    """A warning badge (and what it means) for an artifact whose checkpoint lacked weights for its task."""
    if manifest.untrained_weights:
        st.badge("untrained head", icon=":material/warning:", color="orange")


def untrained_warning_box(manifest: Manifest) -> None:
    if manifest.untrained_weights:
        st.warning(untrained_warning(manifest.source, manifest.task, manifest.untrained_weights), icon=":material/warning:")


def remote_code_consent(manifest: Manifest, where: str) -> bool:
    """Whether the person at the dashboard agreed, in this session, to run the code its source model
    ships (the eager comparison needs it). A manifest saying trust_remote_code is data, not consent."""
    if not manifest.options.trust_remote_code:
        return False
    trusted: set = st.session_state.setdefault(TRUSTED_SOURCES_KEY, set())
    agreed = st.checkbox(f"Run the Python code shipped with {manifest.source} on this host", value=manifest.source in trusted,
                         key=f"{where}-trust-{manifest.source}",
                         help="It was compiled with trust-remote-code; its eager PyTorch model needs that code. "
                              "Only for code you trust: it runs with the dashboard's permissions. Asked once per session.")
    (trusted.add if agreed else trusted.discard)(manifest.source)
    return agreed


def artifact_manifests(workspace: Workspace) -> dict[Path, Manifest]:
    """Readable artifacts of the workspace, newest first, with their manifests."""
    found = {}
    for path in workspace.list_artifacts():
        try:
            found[path] = read_manifest(path)
        except NeuronExportError:
            continue  # a damaged folder is shown on the Artifacts page, not offered for use
    return dict(sorted(found.items(), key=lambda item: item[1].created, reverse=True))


def artifact_picker(
    workspace: Workspace,
    label: str = "Artifact",
    key: str = "artifact",
    accept: Optional[Callable[[Manifest], bool]] = None,
) -> Optional[Path]:
    """A select box of the workspace's artifacts, remembered in the URL (?artifact=NAME)."""
    artifacts = {p.name: m for p, m in artifact_manifests(workspace).items() if accept is None or accept(m)}
    if not artifacts:
        st.info("No compiled artifact yet: compile one on the **Compile** page.")
        return None
    names = list(artifacts)
    wanted = remembered_artifact()
    index = names.index(wanted) if wanted in names else 0
    name = st.selectbox(
        label,
        names,
        index=index,
        key=key,
        format_func=lambda n: f"{n}  —  {artifacts[n].task}, {where_it_runs(artifacts[n])}",
    )
    remember_artifact(name)
    return workspace.artifacts_dir / name


def remembered_artifact() -> Optional[str]:
    """The artifact the person is working on: ?artifact=NAME, else the one last picked on any page of this
    session (the sidebar's links drop the URL's query)."""
    return st.query_params.get("artifact") or st.session_state.get(LAST_ARTIFACT_KEY)


def remember_artifact(name: str) -> None:
    st.query_params["artifact"] = name
    st.session_state[LAST_ARTIFACT_KEY] = name


def artifact_header(
    workspace: Workspace, key: str, accept: Optional[Callable[[Manifest], bool]] = None
) -> Optional[tuple[Path, Manifest]]:
    """Pick an artifact, read its manifest (errors on screen) and show its verdict and backend badges."""
    path = artifact_picker(workspace, key=key, accept=accept)
    if path is None:
        return None
    try:
        manifest = read_manifest(path)
    except NeuronExportError as error:
        show_error(error)
        return None
    with st.container(horizontal=True, vertical_alignment="center"):
        verdict_badge(manifest)
        untrained_badge(manifest)
        backend_badge(manifest)
    untrained_warning_box(manifest)
    return path, manifest


def validation_of(path: Path) -> Optional[dict]:
    try:
        return read_validation(path)
    except NeuronExportError:
        return None


def show_error(error: BaseException) -> None:
    """Engine errors are one readable line; anything else is summarised (the log has the rest)."""
    if isinstance(error, NeuronExportError):
        st.error(str(error), icon=":material/error:")
    else:
        st.error(f"Something went wrong: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                 icon=":material/error:")


STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/progress_activity:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/block:",
    "interrupted": ":material/warning:",
}
STATUS_COLOURS = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "gray",
                  "interrupted": "orange"}


def job_panel(store: JobStore, job_id: str, log_lines: int = 20) -> None:
    """Status, stage, progress, elapsed time, log tail and Cancel of one job; links when it is done."""
    job = store.get(job_id)
    if job is None:
        st.warning(f"No job {job_id} in this workspace.")
        return
    status = str(job.status)
    top = st.columns([3, 2, 2, 1.4], vertical_alignment="center")
    top[0].markdown(f"**{job.title}**  \n`{job.id}` · {job.kind}")
    with top[1]:
        st.badge(status, icon=STATUS_ICONS.get(status), color=STATUS_COLOURS.get(status, "gray"))
    top[2].metric("Elapsed", fmt_duration(job.elapsed_s), label_visibility="collapsed")
    if not job.is_finished:
        if top[3].button("Cancel", key=f"cancel-{job.id}", icon=":material/stop_circle:", type="secondary"):
            store.cancel(job.id)
            st.toast(f"Cancelling {job.title}…")
        job_progress(store, job)
    elif status == "succeeded":
        # Only an export validates; a benchmark or a download has nothing to be "not validated".
        checked = {True: "validated against eager PyTorch ✓", None: "not validated"}.get(job.validation_passed, "") \
            if job.kind == EXPORT else ""
        st.success(f"Done in {fmt_duration(job.elapsed_s)}" + (f" — {checked}" if checked else ""),
                   icon=":material/check_circle:")
    elif status in ("failed", "interrupted"):
        st.error(job.message or f"The job {status}.", icon=":material/error:")
    else:
        st.info(job.message or f"The job was {status}.")
    if job.is_finished and job.artifact and Path(job.artifact, MANIFEST).is_file():
        name = Path(job.artifact).name
        links = st.columns(3)
        links[0].page_link("views/report.py", label="Validation report", icon=":material/fact_check:",
                           query_params={"artifact": name})
        links[1].page_link("views/playground.py", label="Playground", icon=":material/science:",
                           query_params={"artifact": name})
        links[2].page_link("views/artifacts.py", label="Artifacts", icon=":material/inventory_2:",
                           query_params={"artifact": name})
    log = store.log_tail(job.id, max_bytes=16_000)
    if log.strip():
        with st.expander("Log", expanded=not job.is_finished):
            st.code("\n".join(log.splitlines()[-log_lines:]), language=None)


def job_progress(store: JobStore, job: Job) -> None:
    """An active job's progress (the Compile and Jobs pages both show it): what it does now in plain
    words with step i of n, the bar, the elapsed time and the estimate from earlier jobs here."""
    words = timeline.stage_words(job)
    if job.status == JobStatus.QUEUED:
        ahead = sum(other.created_at < job.created_at for other in store.list(limit=None, statuses=list(ACTIVE_STATUSES)))
        words += f" ({ahead} job{'s' if ahead != 1 else ''} ahead)" if ahead else ""
    st.progress(min(max(job.progress, 0.0), 1.0), text=words[:1].upper() + words[1:])
    auto_pick = auto_backend_name(json.dumps((job.metadata or {}).get("options") or {}, sort_keys=True))
    history = store.list(limit=500, statuses=[JobStatus.SUCCEEDED])
    said = timeline.estimate_words(timeline.estimate(job, history, auto_pick), job, auto_pick)
    elapsed = "Not started" if job.status == JobStatus.QUEUED else f"Elapsed {fmt_duration(job.elapsed_s)}"
    st.caption(" · ".join(filter(None, [elapsed, said])))


@st.cache_data(show_spinner=False, max_entries=32)
def auto_backend_name(options_json: str) -> Optional[str]:
    """What `--backend auto` picks on this host for these options (jobs filed as "auto" ran with it)."""
    from neuron_export import ExportOptions
    from neuron_export.backends import auto_backend

    try:
        return auto_backend(ExportOptions.from_dict(json.loads(options_json)))[0].name
    except (NeuronExportError, TypeError, ValueError):
        return None


def placement_caption(rows: list[tuple[str, list[int], list[int]]]) -> None:
    """Which NeuronCores each component of a loaded Neuron artifact runs on (studio.playground.placement)."""
    if not rows:
        return
    parts = []
    for name, wanted, used in rows:
        if len(used) > 1:
            parts.append(f"**{name}** on cores {' and '.join(map(str, used))} (a copy on each: the CFG halves side by side)")
        elif len(wanted) > 1:
            parts.append(f"**{name}** on core {used[0]} (meant for cores {', '.join(map(str, wanted))}; this host shows fewer, "
                         "so its halves run in turn)")
        else:
            parts.append(f"**{name}** on core {(used or wanted)[0]}")
    st.caption(":material/memory: NeuronCores — " + " · ".join(parts))


HUB_JOB_KEY = "hub_download_job"


def hub_download(services: Services) -> None:
    """A field for precompiled Neuron models on the Hugging Face Hub (optimum-neuron's layout): downloaded
    only when asked, as a job, into the workspace, where the picker then offers them."""
    with st.expander("Precompiled Neuron model from the Hugging Face Hub", icon=":material/cloud_download:"):
        st.caption("Models that optimum-neuron compiled and published (e.g. under aws-neuron/) run here without a compile. "
                   "Nothing is downloaded until you click Download.")
        with st.form("hub-download"):
            repo_id = st.text_input("Hub id", key="hub_repo_id", placeholder="aws-neuron/bert-base-uncased-finetuned-sst2-neuron").strip()
            name = st.text_input("Save as (a folder in the workspace)", key="hub_artifact_name").strip()
            submitted = st.form_submit_button("Download", icon=":material/download:")
        if submitted:
            try:
                problem = download_problem(repo_id)
                if problem:
                    raise NeuronExportError(problem)
                output = services.workspace.artifact_path(name or repo_id.split("/")[-1])
                check_output_dir(output, force=False)
                job = services.store.submit(commands.DOWNLOAD, commands.download_command(repo_id, output),
                                            title=f"{output.name} (download {repo_id})", artifact=str(output))
                st.session_state[HUB_JOB_KEY] = job.id
            except NeuronExportError as error:
                show_error(error)
        if st.session_state.get(HUB_JOB_KEY):
            job_panel(services.store, st.session_state[HUB_JOB_KEY])
