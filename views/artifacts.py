"""Artifacts: the library of compiled models in the workspace."""

import shutil

import pandas as pd
import streamlit as st

from neuron_export import read_manifest
from neuron_export.errors import NeuronExportError
from studio import ui

services = ui.services()
workspace = services.workspace
st.title("Artifacts")
st.caption(f"Compiled models in `{workspace.artifacts_dir}`. The backend column says what made each one and where it can run.")


def options_summary(manifest: dict) -> str:
    parts = [f"-O{manifest.get('optlevel', 2)}"]
    if manifest.get("auto_cast") not in (None, "none"):
        parts.append(f"auto-cast {manifest['auto_cast']} {manifest.get('auto_cast_type')}")
    if manifest.get("dynamic_batch"):
        parts.append("dynamic batch")
    return ", ".join(parts)


def shapes_summary(manifest: dict) -> str:
    return " · ".join(f"{k.replace('_', ' ')} {v}" for k, v in (manifest.get("shapes") or {}).items()
                      if not k.startswith("unet_"))


manifests = ui.artifact_manifests(workspace)
broken = [p for p in workspace.list_artifacts() if p not in manifests]
if not manifests:
    st.info("No compiled artifact yet: compile one on the **Compile** page.")
    st.stop()

rows = []
for path, manifest in manifests.items():
    rows.append(
        {
            "name": path.name,
            "model": manifest.get("source", ""),
            "task": manifest.get("task", ""),
            "backend · runs on": ui.where_it_runs(manifest),
            "shapes": shapes_summary(manifest),
            "options": options_summary(manifest),
            "size": ui.fmt_mb(ui.folder_size(path)),
            "validation": ui.verdict(manifest)[0],
            "created": manifest.get("created", "").replace("T", " ")[:19],
        }
    )
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
for path in broken:
    st.warning(f"{path.name}: its manifest cannot be read; it may be damaged.", icon=":material/warning:")

st.divider()
path = ui.artifact_picker(workspace, label="Open an artifact")
if path is not None:
    try:
        manifest = read_manifest(path)
    except NeuronExportError as error:
        ui.show_error(error)
        st.stop()
    left, right = st.columns([3, 2])
    with left:
        st.subheader(path.name)
        ui.backend_badge(manifest)
        ui.verdict_badge(manifest)
        st.markdown(
            f"**Model:** `{manifest.get('source')}` ({manifest.get('model_type')})  \n"
            f"**Task:** {manifest.get('task')}  \n"
            f"**Shapes:** {shapes_summary(manifest)}  \n"
            f"**Options:** {options_summary(manifest)}  \n"
            f"**Compiler:** {manifest.get('compiler', '—')} · torch {manifest.get('torch_version', '—')}"
        )
        if manifest.get("components"):
            st.markdown("**Components:** " + ", ".join(manifest["components"]))
        timings = manifest.get("timings") or {}
        if timings:
            st.markdown("**Compile time:** " + " · ".join(f"{k.split('.')[-1]} {ui.fmt_duration(v)}" for k, v in timings.items()))
    with right:
        st.page_link("views/report.py", label="Validation report", icon=":material/fact_check:", query_params={"artifact": path.name})
        st.page_link("views/playground.py", label="Try it in the playground", icon=":material/science:", query_params={"artifact": path.name})
        with st.popover("Delete…", icon=":material/delete:"):
            st.write(f"Delete **{path.name}** ({ui.fmt_mb(ui.folder_size(path))}) from the workspace? This cannot be undone.")
            if st.button("Delete for good", type="primary", key=f"delete-{path.name}"):
                shutil.rmtree(path)
                st.query_params.pop("artifact", None)
                st.toast(f"Deleted {path.name}")
                st.rerun()
