"""An artifact whose checkpoint had no trained head for its task (a base model exported for text
classification) carries a warning badge naming the weights on the Report, Playground and Artifacts pages."""

import shutil

import pytest
from page_helpers import no_exception, open_in_app

from neuron_export import ExportOptions, export, read_manifest
from neuron_export.demo import build_tiny_text_model


@pytest.fixture
def headless_artifact(workspace, tmp_path):
    base = build_tiny_text_model("bert", "feature-extraction", tmp_path / "base")  # a BertModel: no classifier
    artifact = workspace.artifacts_dir / "headless"
    export(base, artifact, ExportOptions(backend="torchscript", sequence_length=8, task="text-classification", use_cache=False))
    yield artifact
    shutil.rmtree(artifact, ignore_errors=True)


def assert_flagged(at, artifact) -> None:
    no_exception(at)
    assert read_manifest(artifact).untrained_weights == ["classifier.bias", "classifier.weight"]
    assert any("badge" in m.value and "untrained head" in m.value for m in at.markdown)
    assert any("has no trained text-classification head: classifier.bias, classifier.weight" in w.value for w in at.warning)


@pytest.mark.parametrize("page", ["report.py", "playground.py"])
def test_report_and_playground_flag_the_untrained_head(page, headless_artifact):
    assert_flagged(open_in_app(page, headless_artifact.name), headless_artifact)


def test_artifacts_page_flags_it_too(headless_artifact):
    assert_flagged(open_in_app("artifacts.py", headless_artifact.name), headless_artifact)


def test_a_trained_artifact_has_no_such_badge(workspace):
    at = open_in_app("report.py", "tiny-bert")
    no_exception(at)
    assert not any("untrained head" in m.value for m in at.markdown)
