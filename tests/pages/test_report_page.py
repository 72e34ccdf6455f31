"""AppTest of the Validation report page on real artifacts: the tables hold validation.json's values,
a pipeline has a tab per component, a skipped validation says why, a damaged report warns, and the
plain-language verdict says "safe to use" for a passing report and not for a real failing one."""

import json
import shutil

from page_helpers import no_exception, open_in_app

from neuron_export import ExportOptions, export


def test_report_table_has_the_values_of_validation_json(workspace):
    at = open_in_app("report.py", "tiny-bert")
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
    at = open_in_app("report.py", "tiny-sd")
    no_exception(at)
    manifest = json.loads((workspace.artifacts_dir / "tiny-sd" / "manifest.json").read_text())
    components = manifest["components"]
    assert [tab.label.split()[0] for tab in at.tabs] == components
    assert manifest["validation"]["passed"]
    assert at.success[0].value.startswith(f"Every compiled component ({', '.join(manifest['validation']['components'])})")
    for tab, name in zip(at.tabs, components):
        report = json.loads((workspace.artifacts_dir / "tiny-sd" / name / "validation.json").read_text())
        outputs = tab.dataframe[1].value
        assert list(outputs["Output"]) == [o["name"] for o in report["outputs"]]
        assert list(outputs["Max abs diff"]) == [o["max_abs_diff"] for o in report["outputs"]]


def test_report_says_why_validation_was_skipped(workspace):
    at = open_in_app("report.py", "unvalidated")
    no_exception(at)
    assert any("skipped" in i.value and "--disable-validation" in i.value for i in at.info)
    assert not at.dataframe


def test_report_with_a_damaged_validation_file_warns(workspace, artifact_copy):
    (artifact_copy / "validation.json").write_text("{not json")
    at = open_in_app("report.py", artifact_copy.name)
    no_exception(at)
    assert any("validation.json" in w.value for w in at.warning)


def test_report_of_a_generative_artifact_shows_its_generation_check(workspace):
    at = open_in_app("report.py", "tiny-llama")
    no_exception(at)
    components = json.loads((workspace.artifacts_dir / "tiny-llama" / "manifest.json").read_text())["components"]
    assert [tab.label.split()[0] for tab in at.tabs] == components == ["prefill_48", "decode"]
    assert not any(h.value == "End-to-end image check" for h in at.subheader)  # Stable Diffusion's only
    report = json.loads((workspace.artifacts_dir / "tiny-llama" / "decode" / "validation.json").read_text())
    outputs = at.tabs[1].dataframe[1].value
    assert list(outputs["Output"]) == ["prefill logits", "decode logits", "greedy tokens"] == [o["name"] for o in report["outputs"]]
    assert list(outputs["Within atol"]) == ["✓"] * 3


def test_verdict_of_a_passing_report_is_plain_and_links_to_the_playground(workspace):
    at = open_in_app("report.py", "tiny-bert")
    no_exception(at)
    report = json.loads((workspace.artifacts_dir / "tiny-bert" / "validation.json").read_text())
    assert report["passed"]
    (verdict,) = at.success
    largest = max(output["max_abs_diff"] for output in report["outputs"])
    assert verdict.value.startswith(f"The compiled model gives the same answers as the original, to within {report['atol']:g}")
    assert verdict.value.endswith("safe to use.") and (f"{largest:.2g}" in verdict.value or largest == 0)
    assert not at.error
    links = [link for link in at.get("page_link") if link.proto.page.endswith("playground")]
    assert links and "artifact=tiny-bert" in links[0].proto.query_string
    assert at.metric[0].help and "difference allowed" in at.metric[0].help


def test_verdict_of_a_failing_report_says_it_is_not_safe(fresh_workspace, monkeypatch):
    # A real failing report: bf16 matmuls against a float32 eager model, with an atol no bf16 result meets.
    monkeypatch.setenv("NEURON_EXPORT_DEMO_DIR", str(fresh_workspace.demo_dir))
    artifact = fresh_workspace.artifacts_dir / "bf16-strict"
    result = export("demo:tiny-bert", artifact, ExportOptions(backend="torchscript", sequence_length=8, auto_cast="all",
                                                               auto_cast_type="bf16", atol=1e-6))
    assert result.manifest.validation.passed is False
    report = json.loads((artifact / "validation.json").read_text())
    at = open_in_app("report.py", "bf16-strict")
    no_exception(at)
    assert not at.success
    verdict = next(e.value for e in at.error if e.value.startswith("The compiled model does not give the same answers"))
    far = [o for o in report["outputs"] if not o["values_close"]]
    assert far and all(o["name"] in verdict for o in far)
    assert f"{max(o['max_abs_diff'] for o in far):.2g}" in verdict and "more than the 1e-06 allowed" in verdict
    assert "safe to use" not in verdict


def test_report_of_a_pipeline_shows_its_end_to_end_image_check(workspace):
    at = open_in_app("report.py", "tiny-sd")
    no_exception(at)
    check = json.loads((workspace.artifacts_dir / "tiny-sd" / "manifest.json").read_text())["validation"]["image_check"]
    assert any(h.value == "End-to-end image check" for h in at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["PSNR"] == f"{check['psnr']:.1f} dB"
    assert metrics["Largest pixel difference"] == f"{check['max_pixel_diff']:.2g}"
    assert any("passed ✓" in m.value for m in at.markdown) and not at.error
    assert at.success[0].value.endswith("and the whole pipeline draws the original's image: safe to use.")
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
        at = open_in_app("report.py", "diverged-sd")
        no_exception(at)
        assert any("diverged at step 2 of 5" in e.value and "Every component passed" in e.value for e in at.error)
        # The verdict at the top: components within atol, but not safe to use.
        assert at.error[0].value.startswith("Every compiled component passes its own check, but the whole pipeline's image")
        assert "diverged at step 2 of 5" in at.error[0].value
        assert all(s.value.startswith("The compiled model") for s in at.success)  # only the components' own tabs pass
        assert not any("safe to use" in e.value for e in at.error)
        assert any("failed ✗" in m.value for m in at.markdown)
        assert any("image_check/" in w.value for w in at.warning)  # missing images: a warning, not a traceback
    finally:
        shutil.rmtree(copy)
