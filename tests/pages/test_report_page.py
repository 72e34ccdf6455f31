"""AppTest of the Validation report page on real artifacts: the tables hold validation.json's values,
a pipeline has a tab per component, a skipped validation says why, a damaged report warns."""

import json

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
    report = json.loads((workspace.artifacts_dir / "tiny-llama" / "decode" / "validation.json").read_text())
    outputs = at.tabs[1].dataframe[1].value
    assert list(outputs["Output"]) == ["prefill logits", "decode logits", "greedy tokens"] == [o["name"] for o in report["outputs"]]
    assert list(outputs["Within atol"]) == ["✓"] * 3
