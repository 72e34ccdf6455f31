"""AppTest of the Validation report page on real artifacts: the tables hold validation.json's values,
a pipeline has a tab per component, a skipped validation says why, a damaged report warns."""

import json
import shutil

from page_helpers import no_exception, open_page


def test_report_table_has_the_values_of_validation_json(workspace):
    at = open_page("report.py", "tiny-bert")
    no_exception(at)
    report = json.loads((workspace.artifacts_dir / "tiny-bert" / "validation.json").read_text())
    runs, outputs = (frame.value for frame in at.dataframe)
    assert len(runs) == len(report["runs"]) and list(runs["input_ids"]) == ["1 × 16"] * len(report["runs"])
    assert list(outputs["Output"]) == [o["name"] for o in report["outputs"]]
    for row, expected in zip(outputs.to_dict("records"), report["outputs"]):
        assert row["Reference shape"] == " × ".join(map(str, expected["reference_shape"]))
        assert row["Compiled shape"] == " × ".join(map(str, expected["compiled_shape"]))
        assert row["Max abs diff"] == expected["max_abs_diff"] and row["Mean abs diff"] == expected["mean_abs_diff"]
        assert row["atol"] == expected["atol"] == report["atol"]
        assert row["Shape"] == row["Within atol"] == "✓"
    assert at.metric[0].value == f"{report['atol']:g}"
    assert any(report["atol_source"] in c.value for c in at.caption)
    assert any("badge" in m.value and "torchscript" in m.value and "not Neuron" in m.value for m in at.markdown)


def test_report_of_a_pipeline_has_a_tab_per_component(workspace):
    at = open_page("report.py", "tiny-sd")
    no_exception(at)
    components = json.loads((workspace.artifacts_dir / "tiny-sd" / "manifest.json").read_text())["components"]
    assert [tab.label.split()[0] for tab in at.tabs] == components
    for tab, name in zip(at.tabs, components):
        report = json.loads((workspace.artifacts_dir / "tiny-sd" / name / "validation.json").read_text())
        outputs = tab.dataframe[1].value
        assert list(outputs["Output"]) == [o["name"] for o in report["outputs"]]
        assert list(outputs["Max abs diff"]) == [o["max_abs_diff"] for o in report["outputs"]]


def test_report_says_why_validation_was_skipped(workspace):
    at = open_page("report.py", "unvalidated")
    no_exception(at)
    assert any("skipped" in i.value and "--disable-validation" in i.value for i in at.info)
    assert not at.dataframe


def test_report_with_a_damaged_validation_file_warns(workspace, artifact_copy):
    (artifact_copy / "validation.json").write_text("{not json")
    at = open_page("report.py", artifact_copy.name)
    no_exception(at)
    assert any("validation.json" in w.value for w in at.warning)


def test_report_of_a_generative_artifact_shows_its_generation_check(workspace):
    at = open_page("report.py", "tiny-llama")
    no_exception(at)
    components = json.loads((workspace.artifacts_dir / "tiny-llama" / "manifest.json").read_text())["components"]
    assert [tab.label.split()[0] for tab in at.tabs] == components == ["prefill_48", "decode"]
    assert not any(h.value == "End-to-end image check" for h in at.subheader)  # Stable Diffusion's only
    report = json.loads((workspace.artifacts_dir / "tiny-llama" / "decode" / "validation.json").read_text())
    outputs = at.tabs[1].dataframe[1].value
    assert list(outputs["Output"]) == ["prefill logits", "decode logits", "greedy tokens"] == [o["name"] for o in report["outputs"]]
    assert list(outputs["Within atol"]) == ["✓"] * 3


def test_report_of_a_pipeline_shows_its_end_to_end_image_check(workspace):
    at = open_page("report.py", "tiny-sd")
    no_exception(at)
    check = json.loads((workspace.artifacts_dir / "tiny-sd" / "manifest.json").read_text())["validation"]["image_check"]
    assert any(h.value == "End-to-end image check" for h in at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["PSNR"] == f"{check['psnr']:.1f} dB"
    assert metrics["Largest pixel difference"] == f"{check['max_pixel_diff']:.2g}"
    assert any("passed ✓" in m.value for m in at.markdown) and not at.error
    assert len(at.get("image")) == 2  # compiled and eager side by side
    assert len(at.get("plotly_chart")) >= 2  # the difference heat map and the drift per step (then the tabs' charts)
    assert any(check["prompt"] in c.value and check["scheduler"] in c.value for c in at.caption)


def test_report_names_the_step_where_a_pipeline_diverged(workspace):
    copy = workspace.artifacts_dir / "diverged-sd"
    shutil.copytree(workspace.artifacts_dir / "tiny-sd", copy)
    try:
        manifest = json.loads((copy / "manifest.json").read_text())
        check = manifest["validation"]["image_check"]
        check.update(passed=False, latent_drift=[2e-4, 3e-3, 9e-3, 2e-2, 4e-2], diverged_step=2)
        manifest["validation"]["passed"] = False
        (copy / "manifest.json").write_text(json.dumps(manifest))
        (copy / "image_check" / "eager.png").unlink()
        at = open_page("report.py", "diverged-sd")
        no_exception(at)
        assert any("diverged at step 2 of 5" in e.value and "Every component passed" in e.value for e in at.error)
        assert any("failed ✗" in m.value for m in at.markdown)
        assert any("image_check/" in w.value for w in at.warning)  # missing images: a warning, not a traceback
    finally:
        shutil.rmtree(copy)
