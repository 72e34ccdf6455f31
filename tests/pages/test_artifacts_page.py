"""AppTest of the Artifacts page on real artifacts: the library table says what each manifest says,
an opened artifact shows its details, a damaged one is flagged, Delete removes the folder; the
dashboard's start-up removes temporary folders of killed exports."""

import json
import os
import subprocess
import sys

from page_helpers import APP, no_exception, open_in_app, submit
from streamlit.testing.v1 import AppTest

from neuron_export import read_manifest
from studio import ui


def test_library_table_has_a_row_per_artifact_from_its_manifest(workspace):
    at = open_in_app("artifacts.py")
    no_exception(at)
    rows = {row["name"]: row for row in at.dataframe[0].value.to_dict("records")}
    assert set(rows) == {path.name for path in workspace.list_artifacts()}
    for name, row in rows.items():
        manifest = read_manifest(workspace.artifacts_dir / name)
        assert (row["model"], row["task"]) == (manifest.source, manifest.task)
        assert row["backend · runs on"] == "torchscript · CPU · not Neuron"
        assert row["created"] == manifest.created.replace("T", " ")[:19]
    assert rows["tiny-bert"]["shapes"] == "batch size 1 · sequence length 16"
    assert rows["tiny-bert"]["options"] == "-O2"
    assert rows["tiny-bert"]["validation"] == "validated ✓" and rows["unvalidated"]["validation"] == "not validated"


def test_an_opened_pipeline_lists_its_components(workspace):
    at = open_in_app("artifacts.py", "tiny-sd")
    no_exception(at)
    manifest = read_manifest(workspace.artifacts_dir / "tiny-sd")
    details = next(m.value for m in at.markdown if m.value.startswith("**Model:**"))
    assert f"`{manifest.source}`" in details and f"**Task:** {manifest.task}" in details
    assert any(m.value == "**Components:** " + ", ".join(manifest.components) for m in at.markdown)


def test_a_pipelines_compile_time_is_labelled_and_charted_by_component_and_stage(workspace):
    at = open_in_app("artifacts.py", "tiny-sd")
    no_exception(at)
    timings = read_manifest(workspace.artifacts_dir / "tiny-sd").timings
    table = at.dataframe[1].value  # the library table comes first
    names = {"text_encoder": "Text encoder", "unet": "UNet", "vae_encoder": "VAE encoder", "vae_decoder": "VAE decoder",
             "pipeline": "Pipeline"}
    verbs = {"loading": "load", "tracing": "trace", "compiling": "compile", "saving": "save", "validating": "validate"}
    expected = [f"{names[key.split('.')[0]]} · {verbs[key.split('.')[1]]}" for key in timings]
    # four components, five stages each, then the whole pipeline's end-to-end image check
    assert len(expected) == 21 and list(table["step"]) == expected and expected[-1] == "Pipeline · validate"
    assert "UNet · compile" in expected
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["data"][0]["y"] == expected and chart["data"][0]["x"] == list(timings.values())
    assert any(m.value.startswith("**Compile time:**") and m.value.endswith(" in all") for m in at.markdown)


def test_a_damaged_manifest_is_flagged_and_left_out_of_the_table(workspace, artifact_copy):
    (artifact_copy / "manifest.json").write_text("{not json")
    at = open_in_app("artifacts.py")
    no_exception(at)
    assert artifact_copy.name not in list(at.dataframe[0].value["name"])
    assert any(artifact_copy.name in w.value and "cannot be read" in w.value for w in at.warning)


def test_delete_removes_the_artifact_folder(workspace, artifact_copy):
    at = open_in_app("artifacts.py", artifact_copy.name)
    at = submit(at, "Delete for good")
    no_exception(at)
    assert not artifact_copy.exists()
    assert artifact_copy.name not in list(at.dataframe[0].value["name"])


def test_an_artifact_made_by_a_newer_tool_is_flagged(workspace, artifact_copy):
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    (artifact_copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    at = open_in_app("artifacts.py")
    no_exception(at)
    assert any(artifact_copy.name in w.value for w in at.warning)


def test_the_dashboards_start_up_removes_what_killed_exports_left(fresh_workspace):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    stale = fresh_workspace.artifacts_dir / f".killed.tmp-{finished.pid}-0123abcd"
    live = fresh_workspace.artifacts_dir / f".running.tmp-{os.getpid()}-89abcdef"  # a writer that still runs
    for folder in (stale, live):
        folder.mkdir()
        (folder / "model.pt").write_bytes(b"partial")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    ui.warm_up().join(timeout=120)  # the clean-up runs in the background once the first page is drawn
    assert not stale.exists() and live.exists()
