"""The dashboard reads model folders only under its model roots (the workspace and
$NEURON_EXPORT_MODEL_ROOTS), and answers the same whether a path is missing, a file or not allowed."""

import os

import pytest

from neuron_export.errors import NeuronExportError
from studio.environment import MODEL_ROOTS_ENV
from studio.workspace import Workspace


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.delenv(MODEL_ROOTS_ENV, raising=False)
    return Workspace(tmp_path / "ws")


def refusal(workspace: Workspace, typed: str) -> str:
    with pytest.raises(NeuronExportError) as caught:
        workspace.model_folder(typed)
    return str(caught.value).replace(repr(typed), "PATH")


def test_folders_in_the_workspace_are_allowed(workspace):
    model = workspace.root / "models" / "bert"
    model.mkdir(parents=True)
    assert workspace.model_folder(f"  {model}  ") == model


def test_missing_file_and_outside_get_one_answer(workspace, tmp_path):
    (workspace.root / "notes.txt").write_text("a file in the workspace")
    outside = tmp_path / "outside"
    outside.mkdir()
    answers = {refusal(workspace, typed) for typed in (
        "/etc/passwd", "/etc", "/root/.ssh", "/no/such/folder", str(outside),
        str(workspace.root / "missing"), str(workspace.root / "notes.txt"), "relative/path", f"{workspace.root}/../outside",
    )}
    assert len(answers) == 1, answers
    [answer] = answers
    assert "is a file" not in answer and "does not exist" not in answer and str(workspace.root) in answer


def test_a_symlink_out_of_the_roots_is_not_followed(workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace.root / "sneaky").symlink_to(outside)
    assert refusal(workspace, str(workspace.root / "sneaky")) == refusal(workspace, "/no/such/folder")


def test_model_roots_add_folders(workspace, tmp_path, monkeypatch):
    models = tmp_path / "models"
    (models / "bert").mkdir(parents=True)
    with pytest.raises(NeuronExportError):
        workspace.model_folder(str(models / "bert"))
    monkeypatch.setenv(MODEL_ROOTS_ENV, os.pathsep.join([str(tmp_path / "other"), str(models)]))
    assert workspace.model_folder(str(models / "bert")) == models / "bert"
