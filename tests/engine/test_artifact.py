"""Loaded artifacts (CompiledModel) never give silent garbage, load_artifact refuses what this host
cannot run, and a failed or interrupted export never leaves a half-written OUTPUT.

Budget: about 30 s (one AOTInductor compile, two torchscript exports).
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
import transformers

from neuron_export import ExportOptions, export, load_artifact
from neuron_export.backends.neuron import neuron_device_present, torch_neuronx_importable
from neuron_export.backends.torchscript import TorchScriptBackend
from neuron_export.demo import build_tiny_text_model
from neuron_export.errors import ArtifactError, InputMismatchError, NeuronExportError

SEQUENCE_LENGTH = 16


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("artifact")


@pytest.fixture(scope="module")
def model_dir(workdir):
    return build_tiny_text_model("bert", "text-classification", workdir / "model")


@pytest.fixture(scope="module")
def inductor_artifact(model_dir, workdir):
    # AOTInductor: the backend whose packages run wrong-shaped or strided inputs silently (facts.md).
    options = ExportOptions(backend="inductor", sequence_length=SEQUENCE_LENGTH, optlevel=1, use_cache=False)
    return export(model_dir, workdir / "inductor", options).artifact


@pytest.fixture(scope="module")
def torchscript_artifact(model_dir, workdir):
    options = ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH, batch_size=2, dynamic_batch_size=True,
                            use_cache=False)
    return export(model_dir, workdir / "torchscript", options).artifact


def tokenize(artifact, texts) -> dict[str, torch.Tensor]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(artifact)
    return dict(tokenizer(texts, padding="max_length", max_length=SEQUENCE_LENGTH, return_tensors="pt"))


def eager_logits(model_dir, inputs) -> torch.Tensor:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(**inputs).logits


def one_line_mismatch(compiled, inputs, pattern: str) -> None:
    with pytest.raises(InputMismatchError, match=pattern) as error:
        compiled(**inputs)
    assert "\n" not in str(error.value)


def test_wrong_shapes_are_refused(inductor_artifact):
    compiled = load_artifact(inductor_artifact)
    inputs = tokenize(inductor_artifact, "the quick brown fox")
    short = {name: t[:, :8] for name, t in inputs.items()}
    one_line_mismatch(compiled, short, r"'input_ids' has shape \(1, 8\); the model was compiled for \(1, 16\)")
    batch_of_two = {name: t.repeat(2, 1) for name, t in inputs.items()}
    one_line_mismatch(compiled, batch_of_two, r"has shape \(2, 16\); the model was compiled for \(1, 16\)")


def test_wrong_dtype_kind_is_refused(inductor_artifact):
    compiled = load_artifact(inductor_artifact)
    inputs = tokenize(inductor_artifact, "the quick brown fox")
    one_line_mismatch(compiled, {**inputs, "input_ids": inputs["input_ids"].float()}, "'input_ids' has dtype torch.float32; .*torch.int64")
    one_line_mismatch(compiled, {**inputs, "input_ids": inputs["input_ids"].tolist()}, "must be a torch.Tensor")


def test_missing_and_extra_input_names_are_refused(inductor_artifact):
    compiled = load_artifact(inductor_artifact)
    inputs = tokenize(inductor_artifact, "the quick brown fox")
    without_mask = {k: v for k, v in inputs.items() if k != "attention_mask"}
    one_line_mismatch(compiled, without_mask, r"missing \['attention_mask'\]")
    one_line_mismatch(compiled, {**inputs, "position_ids": inputs["input_ids"]}, r"unexpected \['position_ids'\]")


def test_strided_and_expanded_inputs_give_the_eager_result(inductor_artifact, model_dir):
    compiled = load_artifact(inductor_artifact)
    inputs = tokenize(inductor_artifact, "paris is the capital of france")
    expected = eager_logits(model_dir, inputs)
    # A view of every other column of a wider tensor; a stride-0 mask and token types, as
    # `torch.ones(1).expand(...)` gives: the package itself would read these as contiguous memory.
    wide_ids = torch.stack([inputs["input_ids"], torch.full_like(inputs["input_ids"], 7)], dim=-1).flatten(1)
    strided = {
        "input_ids": wide_ids[:, ::2],
        "attention_mask": torch.ones(1, 1, dtype=torch.int64).expand(1, SEQUENCE_LENGTH),
        "token_type_ids": torch.zeros(1, 1, dtype=torch.int64).expand(1, SEQUENCE_LENGTH),
    }
    padded_mask = inputs["attention_mask"]
    assert not strided["input_ids"].is_contiguous() and strided["attention_mask"].stride() == (1, 0)
    assert torch.equal(strided["input_ids"], inputs["input_ids"])

    full_mask = {**inputs, "attention_mask": torch.ones_like(padded_mask), "token_type_ids": torch.zeros_like(padded_mask)}
    torch.testing.assert_close(compiled(**strided)["logits"], eager_logits(model_dir, full_mask), rtol=0, atol=1e-4)
    torch.testing.assert_close(compiled(**full_mask)["logits"], compiled(**strided)["logits"], rtol=0, atol=0)
    torch.testing.assert_close(compiled(**inputs)["logits"], expected, rtol=0, atol=1e-4)


def test_int32_ids_are_converted(inductor_artifact, model_dir):
    compiled = load_artifact(inductor_artifact)
    inputs = tokenize(inductor_artifact, "john was born in london")
    as_int32 = {name: t.to(torch.int32) for name, t in inputs.items()}
    torch.testing.assert_close(compiled(**as_int32)["logits"], eager_logits(model_dir, inputs), rtol=0, atol=1e-4)


def test_torchscript_dynamic_batch_runs_in_compiled_size_chunks(torchscript_artifact, model_dir):
    compiled = load_artifact(torchscript_artifact)
    assert compiled.batch_size == 2 and compiled.dynamic_batch
    texts = ["i loved this movie", "the quick brown fox", "paris is the capital of france", "where does mary live", "hello"]
    for batch in (1, 3, 5):  # smaller than, between and beyond multiples of the compiled batch
        inputs = tokenize(torchscript_artifact, texts[:batch])
        logits = compiled(**inputs)["logits"]
        assert logits.shape == (batch, 2)
        torch.testing.assert_close(logits, eager_logits(model_dir, inputs), rtol=0, atol=1e-4)


# A torch release other than the running one (2.13 and 2.9 are both supported: see the torch 2.9 CI job).
OTHER_TORCH = "2.8.0+cpu" if torch.__version__.startswith("2.9.") else "2.9.0+cpu"


def edited_copy(artifact, destination, **manifest_changes):
    shutil.copytree(artifact, destination)
    manifest = json.loads((destination / "manifest.json").read_text())
    manifest.update(manifest_changes)
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


@pytest.mark.parametrize(
    "changes,message",
    [
        pytest.param(dict(device="cuda"), "compiled for an NVIDIA GPU \\(CUDA\\) and this host has none",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA"), id="cuda"),
        pytest.param(dict(torch_version=OTHER_TORCH), f"compiled with torch {OTHER_TORCH.rsplit('.', 1)[0]} and this host has torch", id="torch-version"),
        pytest.param(dict(backend="neuron", model_file="model.neuron"), "Neuron artifact",
                     marks=pytest.mark.skipif(torch_neuronx_importable() and neuron_device_present(), reason="a Neuron host"),
                     id="neuron"),
        pytest.param(dict(backend="tensorrt"), "backend 'tensorrt'", id="unknown-backend"),
        pytest.param(dict(format_version=99), "manifest format 99", id="format-version"),
        pytest.param(dict(model_file="missing.pt"), "incomplete: missing.pt is missing", id="model-file-missing"),
    ],
)
def test_load_artifact_refuses_what_this_host_cannot_run(torchscript_artifact, tmp_path, changes, message):
    with pytest.raises(ArtifactError, match=message) as error:
        load_artifact(edited_copy(torchscript_artifact, tmp_path / "copy", **changes))
    assert "\n" not in str(error.value)


def test_load_artifact_refuses_a_folder_without_manifest(tmp_path):
    with pytest.raises(ArtifactError, match="is not a compiled artifact"):
        load_artifact(tmp_path)


def test_load_artifact_refuses_a_corrupt_model_file(torchscript_artifact, tmp_path):
    copy = edited_copy(torchscript_artifact, tmp_path / "copy")
    (copy / "model.pt").write_bytes(b"not a torchscript archive")
    with pytest.raises(ArtifactError, match="cannot load .*model.pt"):
        load_artifact(copy)


@pytest.fixture
def failing_compile(monkeypatch):
    def install(error: BaseException):
        def compile(self, *args, **kwargs):
            raise error

        monkeypatch.setattr(TorchScriptBackend, "compile", compile)

    return install


def sibling_names(folder):
    return sorted(p.name for p in folder.parent.iterdir())


@pytest.mark.parametrize("error,expected", [(RuntimeError("out of memory"), NeuronExportError), (KeyboardInterrupt(), KeyboardInterrupt)])
def test_failed_export_leaves_nothing(model_dir, tmp_path, failing_compile, error, expected):
    failing_compile(error)
    output = tmp_path / "out" / "artifact"
    with pytest.raises(expected):
        export(model_dir, output, ExportOptions(backend="torchscript", sequence_length=SEQUENCE_LENGTH, use_cache=False))
    assert not output.exists()
    assert sibling_names(output) == []


def test_failed_forced_export_keeps_the_existing_artifact(model_dir, torchscript_artifact, tmp_path, failing_compile):
    output = tmp_path / "artifact"
    shutil.copytree(torchscript_artifact, output)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    failing_compile(RuntimeError("compiler crashed"))
    options = ExportOptions(backend="torchscript", sequence_length=8, force=True, use_cache=False)
    with pytest.raises(NeuronExportError, match="torchscript could not compile text-classification: compiler crashed"):
        export(model_dir, output, options)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert sibling_names(output) == ["artifact"]
    load_artifact(output)  # still a working artifact


def test_inductor_artifact_built_for_a_wider_isa_is_refused(tmp_path, monkeypatch):
    """An AOTInductor CPU package holds machine code for an ISA: loading it on a CPU without the flags
    its manifest lists would crash, so it is refused with a clear error (manifests from before
    cpu_flags was recorded: by the vector ISA torch reported at build)."""
    from neuron_export import cpu
    from neuron_export.backends.inductor import InductorBackend

    avx512 = SimpleNamespace(device="cpu", torch_version=torch.__version__, cpu_capability="AVX512", auto_cast="none",
                             auto_cast_type=None, cpu_isa="avx512", cpu_flags=list(cpu.ISA_LEVELS["avx512"].flags))
    older = SimpleNamespace(**{**vars(avx512), "cpu_isa": None, "cpu_flags": []})
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    problem = InductorBackend().runtime_problem(avx512)
    assert problem.startswith("its CPU code (--cpu_isa avx512) needs avx512bw, avx512cd, avx512dq, avx512f, avx512vl")
    assert problem.endswith("re-export it with --cpu_isa avx2 to run here") and "\n" not in problem
    assert "built for AVX512" in InductorBackend().runtime_problem(older)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    if set(cpu.ISA_LEVELS["avx512"].flags) <= cpu.cpu_flags():
        assert InductorBackend().runtime_problem(avx512) is None
    assert InductorBackend().runtime_problem(older) is None