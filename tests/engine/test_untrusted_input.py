"""Bad input is exit 2 and one line, never exit 3 ("internal error"), and nothing is written: JSON of
the wrong kind, a config value of the wrong type, a corrupt tokenizer, shapes no host can hold, an
infinite atol, a symlink out of the model folder, a damaged manifest given to `benchmark`.

Real `neuron-export` subprocesses. Budget: about 1 minute.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from support import run_cli
from neuron_export.demo import resolve_demo

SHAPES = ["--backend", "torchscript", "--sequence_length", "16", "--no-cache"]


@pytest.fixture
def out(tmp_path) -> Path:
    parent = tmp_path / "out"
    parent.mkdir()
    return parent / "artifact"


def one_line_exit_2(result, pattern: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.stdout + result.stderr
    assert pattern in lines[0], lines[0]
    return lines[0]


def model_copy(tmp_path: Path, edit=None) -> Path:
    """A private copy of the tiny BERT classifier; `edit(folder)` damages it."""
    folder = shutil.copytree(resolve_demo("demo:tiny-bert"), tmp_path / "model")
    if edit:
        edit(folder)
    return folder


def edit_config(**changes):
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        config.update(changes)
        (folder / "config.json").write_text(json.dumps(config))

    return edit


def write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


def link_outside(folder: Path) -> None:
    secret = folder.parent / "secret.txt"
    secret.write_text("not yours")
    (folder / "shadow_link").symlink_to(secret)


# (case id, damage to the model copy, extra arguments, what the one error line says)
BAD_MODELS = [
    ("config-is-a-list", write("config.json", "[1, 2, 3]"), [], "config.json must hold a JSON object, not an array"),
    ("config-is-a-string", write("config.json", '"bert"'), [], "must hold a JSON object, not a string"),
    ("max-positions-a-string", edit_config(max_position_embeddings="128"), [],
     "max_position_embeddings' expected int, got str"),
    ("architectures-not-a-list", edit_config(architectures="BertModel"), [], "architectures must be a list"),
    ("corrupt-tokenizer", write("tokenizer.json", '{"version": "1.0", "model": {"type": "WordPiece", "vocab": 7'), [],
     "tokenizer or preprocessor files of"),
    ("tokenizer-of-another-kind", write("tokenizer.json", "[]"), [], "tokenizer or preprocessor files of"),
    ("symlink-out-of-the-folder", link_outside, [], "shadow_link in"),
    ("huge-batch", None, ["--batch_size", "100000000000"], "--batch_size 100000000000, --sequence_length 16: the model's inputs alone"),
    ("infinite-atol", None, ["--atol", "inf"], "--atol must be a positive finite number, got inf"),
    ("nan-atol", None, ["--atol", "nan"], "--atol must be a positive finite number, got nan"),
]


@pytest.mark.parametrize("damage,extra,pattern", [case[1:] for case in BAD_MODELS], ids=[case[0] for case in BAD_MODELS])
def test_bad_model_folders_and_options_are_exit_2(damage, extra, pattern, tmp_path, out):
    folder = model_copy(tmp_path, damage)
    one_line_exit_2(run_cli("export", "--model", str(folder), *SHAPES, *extra, str(out)), pattern)
    assert not out.exists() and not any(out.parent.iterdir())


def test_a_link_inside_the_model_folder_is_fine(tmp_path, out):
    def link_inside(folder: Path) -> None:
        (folder / "tokenizer-copy.json").symlink_to(folder / "tokenizer.json")

    folder = model_copy(tmp_path, link_inside)
    result = run_cli("export", "--model", str(folder), *SHAPES, str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "tokenizer-copy.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    assert not (out / "tokenizer-copy.json").is_symlink()


def test_nan_weights_with_infinite_atol_never_validate(tmp_path, out):
    """NaN weights and --atol inf once printed "all values close"; inf is refused outright now."""
    from safetensors.torch import load_file, save_file

    def nan_weights(folder: Path) -> None:
        weights = load_file(folder / "model.safetensors")
        weights["classifier.bias"] = weights["classifier.bias"] * float("nan")
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})

    folder = model_copy(tmp_path, nan_weights)
    one_line_exit_2(run_cli("export", "--model", str(folder), *SHAPES, "--atol", "inf", str(out)), "positive finite")
    assert not out.exists()


@pytest.mark.parametrize(
    "manifest, pattern",
    [([1, 2], "is not a JSON object"), ({"format_version": 1, "task": "text-classification"}, "is not a valid manifest"),
     ({"format_version": 1}, "is not a valid manifest"), ("not json", "is corrupt")],
    ids=["a-list", "lacks-fields", "only-a-version", "not-json"],
)
def test_benchmark_of_a_damaged_manifest_is_exit_2(manifest, pattern, tmp_path):
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    one_line_exit_2(run_cli("benchmark", str(artifact), "--no-onnx"), pattern)


def test_benchmark_of_a_manifest_naming_files_outside_the_artifact_is_exit_2(tmp_path):
    artifact = tmp_path / "artifact"
    assert run_cli("export", "--model", "demo:tiny-bert", *SHAPES, str(artifact)).returncode == 0
    manifest = json.loads((artifact / "manifest.json").read_text())
    for model_file, pattern in (("/etc/passwd", "'/etc/passwd' is not a file name inside the artifact"),
                                ("../../x", "'../../x' is not a file name inside the artifact")):
        manifest["model_file"] = model_file
        (artifact / "manifest.json").write_text(json.dumps(manifest))
        one_line_exit_2(run_cli("benchmark", str(artifact), "--no-onnx", "--iterations", "1"), pattern)


def test_benchmark_of_a_huge_batch_is_exit_2(tmp_path):
    artifact = tmp_path / "dynamic"
    assert run_cli("export", "--model", "demo:tiny-bert", *SHAPES, "--dynamic-batch-size", str(artifact)).returncode == 0
    one_line_exit_2(run_cli("benchmark", str(artifact), "--no-onnx", "--batch_size", "100000000000"),
                    "--batch_size 100000000000: the model's inputs alone")


def test_a_pipeline_with_a_corrupt_tokenizer_is_exit_2(tmp_path, out):
    pipeline = shutil.copytree(resolve_demo("demo:tiny-sd"), tmp_path / "sd")
    (pipeline / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0", "model": {')
    one_line_exit_2(run_cli("export", "--model", str(pipeline), "--backend", "torchscript", str(out)),
                    "the tokenizer of")
    assert not out.exists() and not any(out.parent.iterdir())
