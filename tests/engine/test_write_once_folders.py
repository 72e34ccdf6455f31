"""artifact/folders.py and the typed manifest: what --force may replace, what a manifest may name,
and the guarded file that turns a C++ serializer's write failure into an OSError instead of abort().
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT
from neuron_export import ExportOptions, export, load_artifact
from neuron_export.artifact import Manifest, check_output_dir
from neuron_export.errors import ArtifactError, NeuronExportError


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("folders") / "artifact"
    export("demo:tiny-bert", output, ExportOptions(backend="torchscript", sequence_length=8, use_cache=False))
    return output


def test_force_replaces_only_a_manifest_of_this_tool(artifact, tmp_path):
    check_output_dir(artifact, force=True)  # ours: may be replaced
    empty = tmp_path / "empty"
    empty.mkdir()
    check_output_dir(empty, force=True)  # nothing to lose
    for name, manifest in {"no-marker": {**json.loads((artifact / "manifest.json").read_text()), "tool": ""},
                           "other-tool": {"tool": "neuron_export", "format_version": 1},  # marker, but not a manifest
                           "a-list": ["neuron_export"]}.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(NeuronExportError, match="not an artifact written by neuron-export"):
            check_output_dir(folder, force=True)


@pytest.mark.parametrize("relation", ["same", "inside", "contains"])
def test_output_must_stay_apart_from_the_model(relation, tmp_path):
    model = tmp_path / "models" / "bert"
    model.mkdir(parents=True)
    output = {"same": model, "inside": model / "out", "contains": tmp_path / "models"}[relation]
    with pytest.raises(NeuronExportError, match="the model folder"):
        check_output_dir(output, force=True, protected=[model])


def test_a_symlinked_output_to_the_model_is_caught(tmp_path):
    model = tmp_path / "bert"
    model.mkdir()
    (tmp_path / "alias").symlink_to(model)
    with pytest.raises(NeuronExportError, match="is the model folder"):
        check_output_dir(tmp_path / "alias", force=True, protected=[model])


@pytest.mark.parametrize("field, value", [("model_file", "/etc/passwd"), ("model_file", "../../x"), ("model_file", ".."),
                                          ("components", ["unet", "../../etc"]), ("components", ["/tmp"])])
def test_a_manifest_names_files_inside_its_artifact_only(artifact, field, value, tmp_path):
    data = json.loads((artifact / "manifest.json").read_text())
    data[field] = value
    with pytest.raises(ArtifactError, match="is not a file name inside the artifact"):
        Manifest.from_dict(data)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError):
        load_artifact(copy)


def test_a_damaged_validation_report_is_an_artifact_error(artifact, tmp_path):
    from neuron_export import read_validation

    assert read_validation(artifact)["passed"] is True
    for text in ("[1, 2]", '{"passed": true}', "not json"):
        copy = tmp_path / f"copy-{len(text)}"
        copy.mkdir()
        (copy / "validation.json").write_text(text)
        with pytest.raises(ArtifactError):
            read_validation(copy)


GUARDED_SAVE = """
import sys, torch
from pathlib import Path
from neuron_export.artifact.folders import guarded_file
module = torch.jit.script(torch.nn.Linear(64, 64))
target = Path(sys.argv[1])
try:
    if sys.argv[2] == "guarded":
        with guarded_file(target) as file:
            torch.jit.save(module, file)
    else:
        torch.jit.save(module, str(target))
except OSError as error:
    print("OSError", error.errno)
"""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (every write: no space left)")
def test_a_guarded_file_turns_a_full_disk_into_an_oserror():
    def save(how: str):
        return subprocess.run([sys.executable, "-c", GUARDED_SAVE, "/dev/full", how], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)

    guarded = save("guarded")
    assert guarded.returncode == 0 and guarded.stdout.split() == ["OSError", "28"], guarded.stderr[-500:]
    plain = save("plain")  # what torch does on its own: no Python exception at all
    assert "OSError" not in plain.stdout
