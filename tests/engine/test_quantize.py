"""--quantize int8-dynamic: the real all-MiniLM-L6-v2 with int8 linears (PT2E + X86 Inductor quantizer)
against eager fp32 within the stated tolerance, and the backends that refuse it, in one line.

Budget: one AOTInductor compile of MiniLM at sequence 32 (~1 min on 2 busy cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
import torch
import transformers

from support import ROOT, python_path, run_cli
from neuron_export import ExportOptions, cpu, load_artifact, read_manifest, read_validation
from neuron_export.backends import BACKENDS
from neuron_export.demo import minilm_path
from neuron_export.errors import NeuronExportError
from neuron_export.export.plan import QUANTIZE_ATOL

SEQUENCE_LENGTH = 32
SENTENCES = ("A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply on Monday.")


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory):
    pytest.importorskip("torchao")
    output = tmp_path_factory.mktemp("int8") / "minilm-int8"
    result = run_cli("export", "--model", "demo:minilm", "--backend", "inductor", "--sequence_length", str(SEQUENCE_LENGTH),
                     "--quantize", "int8-dynamic", "--no-cache", str(output))
    assert result.returncode == 0, result.stderr
    assert f"all values close (atol: {QUANTIZE_ATOL['int8-dynamic']:g})" in result.stdout
    return output


def test_int8_artifact_runs_int8_linears_and_reports_its_accuracy_cost(int8_artifact):
    manifest = read_manifest(int8_artifact)
    assert manifest.options.quantize == "int8-dynamic" and manifest.validation.passed
    report = read_validation(int8_artifact)
    assert report["atol"] == QUANTIZE_ATOL["int8-dynamic"] and report["atol_source"] == "default for --quantize int8-dynamic"
    # The accuracy cost is there to read: int8 moves the outputs (fp32 AOTInductor stays within 1e-5).
    assert all(output["max_abs_diff"] > 1e-3 for output in report["outputs"])
    with zipfile.ZipFile(int8_artifact / "model.pt2") as archive:
        wrapper = "".join(archive.read(n).decode() for n in archive.namelist() if n.endswith("wrapper.cpp"))
    assert wrapper.count("qlinear_pointwise") >= 6 * 6  # every linear of the 6 layers runs oneDNN's int8 kernel


def test_int8_sentence_embeddings_stay_close_to_eager_fp32_and_keep_their_meaning(int8_artifact):
    tokenizer = transformers.AutoTokenizer.from_pretrained(int8_artifact)
    eager = transformers.AutoModel.from_pretrained(minilm_path()).eval()
    compiled = load_artifact(int8_artifact)
    got, want = [], []
    for sentence in SENTENCES:
        inputs = tokenizer(sentence, return_tensors="pt", padding="max_length", max_length=SEQUENCE_LENGTH)
        got.append(compiled(**inputs)["sentence_embedding"][0])
        with torch.no_grad():
            tokens = eager(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        want.append(torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)[0])
    got, want = torch.stack(got), torch.stack(want)
    assert (got - want).abs().max() <= QUANTIZE_ATOL["int8-dynamic"]
    assert torch.nn.functional.cosine_similarity(got, want).min() >= 0.99
    similarity = got @ got.T
    assert similarity[0, 1] > 0.6 and similarity[0, 1] > similarity[0, 2] + 0.4  # similar pair vs unrelated


def test_backends_that_cannot_quantize_refuse_in_one_line(tmp_path):
    options = ExportOptions(quantize="int8-dynamic")
    assert "neuronx-cc has no int8 quantization" in BACKENDS["neuron"].quantization_problem(options)
    assert "--auto_cast matmul" in BACKENDS["neuron"].quantization_problem(options)
    assert BACKENDS["neuron"].quantization_problem(ExportOptions()) is None
    result = run_cli("export", "--model", "demo:tiny-bert", "--backend", "torchscript", "--quantize", "int8-dynamic",
                     str(tmp_path / "out"))
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr.strip() == ("error: --quantize int8-dynamic: the torchscript backend does not quantize; "
                                     "use --backend inductor")
    with pytest.raises(NeuronExportError, match="both lower the matmuls' precision"):
        ExportOptions(quantize="int8-dynamic", auto_cast="matmul")


def test_int8_for_avx2_code_is_refused(monkeypatch):
    """On AVX2, oneDNN runs the int8 linears with its reference kernel (ONEDNN_MAX_CPU_ISA=AVX2: ref_int8,
    seconds per GEMM), so an int8 artifact is AVX-512 code only."""
    pytest.importorskip("torchao")
    inductor = BACKENDS["inductor"]
    problem = inductor.quantization_problem(ExportOptions(backend="inductor", quantize="int8-dynamic", cpu_isa="avx2"))
    assert problem.startswith("--quantize int8-dynamic needs AVX-512 code, and --cpu_isa avx2 would run")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # an AVX2-only host, native code
    assert "this CPU, which has no AVX-512" in inductor.quantization_problem(ExportOptions(backend="inductor", quantize="int8-dynamic"))


def test_int8_export_on_an_avx2_host_is_refused_in_one_line_before_anything_is_written(tmp_path):
    """The whole CLI, in a process that sees an AVX2-only CPU (ATEN_CPU_CAPABILITY=avx2): exit 2, one line."""
    pytest.importorskip("torchao")
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "neuron_export", "export", "--model", "demo:tiny-bert", "--backend", "inductor",
                             "--quantize", "int8-dynamic", str(output)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONPATH": python_path(), "ATEN_CPU_CAPABILITY": "avx2"})
    assert result.returncode == 2 and not output.exists()
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --quantize int8-dynamic needs AVX-512 code, and this CPU, which has no AVX-512")


def test_int8_with_a_torchao_that_does_not_fit_this_torch_is_refused_in_one_line(tmp_path):
    """requirements-neuron.txt (torch 2.9) leaves torchao out; one paired with another torch fails on import."""
    if not cpu.is_x86():
        pytest.skip("--quantize is refused earlier off x86")
    fake = tmp_path / "site" / "torchao"
    (fake / "quantization").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "quantization" / "__init__.py").write_text("raise ImportError('cannot import name Foo from torch._inductor')\n")
    # older than transformers' torchao minimum, so transformers leaves it alone (as it would torch 2.9's torchao 0.14)
    metadata = tmp_path / "site" / "torchao-0.14.0.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: torchao\nVersion: 0.14.0\n")
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "neuron_export", "export", "--model", "demo:tiny-bert", "--backend", "inductor",
                             "--sequence_length", "8", "--quantize", "int8-dynamic", str(output)], capture_output=True, text=True,
                            cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), python_path()])})
    assert result.returncode == 2 and not output.exists()
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: --quantize int8-dynamic: this torchao does not work with torch {torch.__version__} "
                                    "(cannot import name Foo from torch._inductor)")
