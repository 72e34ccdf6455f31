"""Artifacts: the library of compiled models in the workspace."""

from pathlib import Path

import pandas as pd
import streamlit as st

from neuron_export import Manifest, read_manifest
from neuron_export.artifact import remove_tree
from neuron_export.errors import NeuronExportError
from studio import charts, ui
from studio.workspace import Workspace


def options_summary(manifest: Manifest) -> str:
    parts = [f"-O{manifest.optlevel}"]
    if manifest.auto_cast != "none":
        parts.append(f"auto-cast {manifest.auto_cast} {manifest.auto_cast_type}")
    if manifest.dynamic_batch:
        parts.append("dynamic batch")
    return ", ".join(parts)


def library_table(manifests: dict[Path, Manifest]) -> None:
    rows = [
        {
            "name": path.name,
            "model": manifest.source,
            "task": manifest.task,
            "backend · runs on": ui.where_it_runs(manifest),
            "shapes": ui.shapes_summary(manifest),
            "options": options_summary(manifest),
            "size": ui.fmt_mb(ui.folder_size(path)),
            "validation": ui.verdict(manifest)[0],
            "created": manifest.created.replace("T", " ")[:19],
        }
        for path, manifest in manifests.items()
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def details(path: Path, manifest: Manifest) -> None:
    st.subheader(path.name)
    ui.backend_badge(manifest)
    ui.verdict_badge(manifest)
    ui.untrained_badge(manifest)
    ui.untrained_warning_box(manifest)
    st.markdown(
        f"**Model:** `{manifest.source}` ({manifest.model_type})  \n"
        f"**Task:** {manifest.task}  \n"
        f"**Shapes:** {ui.shapes_summary(manifest)}  \n"
        f"**Options:** {options_summary(manifest)}  \n"
        f"**Compiler:** {manifest.compiler or '—'} · torch {manifest.torch_version or '—'}"
    )
    if manifest.components:
        st.markdown("**Components:** " + ", ".join(manifest.components))
    if manifest.timings:
        compile_times(manifest)


def compile_times(manifest: Manifest) -> None:
    """Each stage's time, labelled by component and stage, as a chart and (for reading out) a table."""
    rows = charts.compile_time_rows(manifest.timings, named_components=bool(manifest.components))
    st.markdown(f"**Compile time:** {ui.fmt_duration(sum(row['seconds'] for row in rows))} in all")
    st.plotly_chart(charts.compile_time_figure(rows), width="stretch")
    with st.expander("Compile time per component and stage (table)"):
        st.dataframe(pd.DataFrame({"step": [row["label"] for row in rows],
                                   "time": [ui.fmt_duration(row["seconds"]) for row in rows]}), hide_index=True)


def actions(path: Path) -> None:
    st.page_link("views/report.py", label="Validation report", icon=":material/fact_check:", query_params={"artifact": path.name})
    st.page_link("views/playground.py", label="Try it in the playground", icon=":material/science:", query_params={"artifact": path.name})
    with st.popover("Delete…", icon=":material/delete:"):
        st.write(f"Delete **{path.name}** ({ui.fmt_mb(ui.folder_size(path))}) from the workspace? This cannot be undone.")
        if st.button("Delete for good", type="primary", key=f"delete-{path.name}"):
            # Renamed aside, then deleted: never a half-deleted artifact under its name; a link only unlinked.
            path.unlink() if path.is_symlink() else remove_tree(path)
            st.query_params.pop("artifact", None)
            st.toast(f"Deleted {path.name}")
            st.rerun()


def open_artifact(workspace: Workspace) -> None:
    path = ui.artifact_picker(workspace, label="Open an artifact")
    if path is None:
        return
    try:
        manifest = read_manifest(path)
    except NeuronExportError as error:
        ui.show_error(error)
        return
    left, right = st.columns([3, 2])
    with left:
        details(path, manifest)
    with right:
        actions(path)


def main() -> None:
    workspace = ui.services().workspace
    st.title("Artifacts")
    st.caption(f"Compiled models in `{workspace.artifacts_dir}`. The backend column says what made each one and where it can run.")
    manifests = ui.artifact_manifests(workspace)
    if not manifests:
        st.info("No compiled artifact yet: compile one on the **Compile** page.")
        return
    library_table(manifests)
    for path in workspace.list_artifacts():
        if path not in manifests:
            st.warning(f"{path.name}: its manifest cannot be read; it may be damaged.", icon=":material/warning:")
    st.divider()
    open_artifact(workspace)


main()
