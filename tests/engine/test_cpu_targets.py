"""CPU artifacts for older CPUs (--cpu_isa), honest threads, and FLOP counting, against eager PyTorch.

An AVX2-only host is emulated with ATEN_CPU_CAPABILITY=avx2 (torch then uses AVX2 kernels only, and
neuron_export counts the AVX-512 flags as absent); the machine code itself is checked by disassembly.
Budget: two tiny AOTInductor compiles (~1-2 min on 2 busy cores) and a few subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

from support import ROOT, run_cli
from neuron_export import ExportOptions, export, load_artifact, read_manifest
from neuron_export import cpu
from neuron_export.benchmark.flops import count_flops
from neuron_export.benchmark.peak import host_peak
from neuron_export.reference import reference_module

# Portable CPU levels are built with Inductor's cpp.march (torch >= 2.13); older torch refuses them.
HAS_MARCH = hasattr(torch._inductor.config.cpp, "march")
needs_march = pytest.mark.skipif(not HAS_MARCH, reason="--cpu_isa avx2/avx512 needs torch >= 2.13 (Inductor's cpp.march)")

SEQUENCE_LENGTH = 16
AVX2_HOST = {**os.environ, "PYTHONPATH": str(ROOT), "ATEN_CPU_CAPABILITY": "avx2"}
needs_avx512 = pytest.mark.skipif(cpu.host_level() != "avx512", reason="building AVX-512 code needs an AVX-512 host")


def test_flop_count_of_a_linear_stack_is_the_analytic_count():
    torch.manual_seed(0)
    stack = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 8, bias=False))
    for shape, rows in (((5, 64), 5), ((2, 7, 64), 14)):
        assert count_flops(stack, (torch.randn(*shape),)).total == 2 * rows * (64 * 256 + 256 * 32 + 32 * 8)


def test_flop_count_includes_cpu_attention():
    class Attention(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    batch, heads, tokens, dim = 2, 3, 16, 8
    q, k, v = (torch.randn(batch, heads, tokens, dim) for _ in range(3))
    # Q K^T and (softmax) V: two matmuls of 2 * tokens^2 * dim FLOPs per head
    assert count_flops(Attention(), (q, k, v)).total == 2 * 2 * batch * heads * tokens * tokens * dim


def test_flop_count_of_bert_base_is_22_35_gflop_at_batch_1_sequence_128():
    from transformers import BertConfig, BertModel

    with torch.device("meta"):  # shapes only: no 440 MB of weights
        model = BertModel(BertConfig()).eval()
    ids = torch.zeros(1, 128, dtype=torch.long, device="meta")
    count = count_flops(model, (), {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    layers, hidden, intermediate, tokens = 12, 768, 3072, 128
    linears = 2 * tokens * layers * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = layers * 2 * 2 * tokens * tokens * hidden
    pooler = 2 * hidden * hidden  # one token
    assert count.total == linears + attention + pooler
    assert round(count.total / 1e9, 2) == 22.35


def test_peak_follows_the_isa_torch_is_allowed_to_use(monkeypatch):
    host_peak.cache_clear()
    native = host_peak()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    host_peak.cache_clear()
    try:
        capped = host_peak()
    finally:
        host_peak.cache_clear()
    assert capped.isa.startswith("AVX2") and "avx512" not in capped.isa
    assert capped.flop_per_cycle["int8"] <= native.flop_per_cycle["int8"]
    assert capped.gflops("fp32", 2) == pytest.approx(capped.flop_per_cycle["fp32"] * capped.clock_ghz * min(2, capped.cores))
    assert f"{capped.clock_ghz:.2f} GHz" in capped.assumptions("fp32", 1)


@pytest.fixture(scope="module")
def avx2_artifact(tmp_path_factory):
    output = tmp_path_factory.mktemp("isa") / "avx2"
    options = ExportOptions(backend="inductor", task="feature-extraction", sequence_length=SEQUENCE_LENGTH, cpu_isa="avx2",
                            threads=2, use_cache=False)
    export("demo:tiny-bert", output, options)
    return output


def shared_objects_disassembly(package) -> str:
    listings = []
    with zipfile.ZipFile(package) as archive:
        for name in archive.namelist():
            if name.endswith(".so"):
                path = package.parent / "disassembled.so"
                path.write_bytes(archive.read(name))
                listings.append(subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)], capture_output=True,
                                               text=True, check=True).stdout)
                path.unlink()
    return "\n".join(listings)


def generated_sources(package) -> str:
    with zipfile.ZipFile(package) as archive:
        return "\n".join(archive.read(n).decode() for n in archive.namelist() if n.endswith("kernel.cpp"))


@needs_march
def test_avx2_artifact_holds_no_avx512_code_and_matches_eager(avx2_artifact):
    manifest = read_manifest(avx2_artifact)
    assert manifest.validation.passed and manifest.validation.atol == 1e-4
    assert manifest.cpu_isa == "avx2" and manifest.cpu_flags == sorted(cpu.ISA_LEVELS["avx2"].flags)
    assert "AVX2 (x86-64-v3) or better" in manifest.runs_on
    code = shared_objects_disassembly(avx2_artifact / "model.pt2")
    assert "ymm" in code  # vectorized ...
    assert "zmm" not in code and "vpdpbusd" not in code  # ... with no AVX-512 register or instruction


@needs_march
def test_avx2_artifact_runs_on_an_avx2_host_like_eager(avx2_artifact):
    """In a process that sees an AVX2-only CPU: it loads, and gives eager PyTorch's outputs."""
    script = f"""
import torch
from neuron_export import load_artifact, read_manifest
from neuron_export.reference import reference_model
torch.manual_seed(1)
compiled = load_artifact({str(avx2_artifact)!r})
ids = torch.randint(5, 90, (1, {SEQUENCE_LENGTH}))
inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))
inputs["attention_mask"][0, -3:] = 0
want = reference_model(read_manifest({str(avx2_artifact)!r}))(**inputs)["last_hidden_state"]
got = compiled(**inputs)["last_hidden_state"]
print(torch.backends.cpu.get_cpu_capability(), float(want.abs().max()), float((got - want).abs().max()))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=AVX2_HOST, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    capability, scale, diff = result.stdout.split()
    assert capability == "AVX2" and float(scale) > 0.5 and float(diff) <= 1e-4


@needs_march
def test_gemm_threads_are_recorded_and_every_thread_count_gives_the_same_outputs(avx2_artifact, caplog):
    """The template's GEMMs are split for --threads 2 (recorded); the other kernels take the caller's count."""
    manifest = read_manifest(avx2_artifact)
    assert manifest.threads == 2
    assert "#pragma omp parallel num_threads" not in generated_sources(avx2_artifact / "model.pt2")
    module = reference_module(manifest)
    ids = torch.randint(5, 90, (1, SEQUENCE_LENGTH))
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))
    with torch.no_grad():
        want = module(*inputs.values())[0]
    before = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            caplog.clear()
            got = load_artifact(avx2_artifact)(**inputs)["last_hidden_state"]
            assert (got - want).abs().max() <= 1e-4, threads
            warned = [r.getMessage() for r in caplog.records if "split for 2 threads" in r.getMessage()]
            assert bool(warned) == (threads > 2)
    finally:
        torch.set_num_threads(before)


@needs_avx512
@needs_march
def test_avx512_artifact_is_refused_on_an_avx2_host_in_one_line(tmp_path):
    output = tmp_path / "avx512"
    export("demo:tiny-bert", output, ExportOptions(backend="inductor", sequence_length=SEQUENCE_LENGTH, cpu_isa="avx512",
                                                   optlevel=1, use_cache=False))
    manifest = read_manifest(output)
    assert manifest.validation.passed and manifest.cpu_isa == "avx512"
    assert set(cpu.ISA_LEVELS["avx512"].flags) <= set(manifest.cpu_flags)
    assert not {"avx512_bf16", "avx512_vnni"} & set(manifest.cpu_flags)  # fp32 code: no extension beyond the level
    assert "zmm" in shared_objects_disassembly(output / "model.pt2")
    result = subprocess.run([sys.executable, "-m", "neuron_export", "benchmark", str(output)], capture_output=True,
                            text=True, env=AVX2_HOST, cwd=ROOT, timeout=300)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "needs avx512bw, avx512cd, avx512dq, avx512f, avx512vl" in result.stderr
    assert "re-export it with --cpu_isa avx2" in result.stderr


@needs_march
def test_cpu_isa_the_host_lacks_is_refused_before_anything_is_written(tmp_path):
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "neuron_export", "export", "--model", "demo:tiny-bert", "--backend", "inductor",
                             "--cpu_isa", "avx512", str(output)], capture_output=True, text=True, env=AVX2_HOST, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 2 and not output.exists()
    assert result.stderr.strip() == ("error: --cpu_isa avx512: this host lacks avx512bw, avx512cd, avx512dq, avx512f, avx512vl, "
                                     "so it can neither build nor check such code (highest level here: avx2)")


def test_cpu_isa_and_threads_are_warnings_for_torchscript(tmp_path):
    result = run_cli("export", "--model", "demo:tiny-bert", "--backend", "torchscript", "--sequence_length", "8",
                     "--cpu_isa", "avx2", "--threads", "4", "--no-cache", str(tmp_path / "ts"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "ts" / "manifest.json").read_text())
    assert manifest["cpu_flags"] == [] and manifest["threads"] is None
    assert any("--cpu_isa: torchscript artifacts hold no machine code" in w for w in manifest["warnings"])
    assert any("--threads: torchscript artifacts hold no machine code" in w for w in manifest["warnings"])


@needs_march
def test_bucketed_avx2_artifact_records_its_cpu_needs_and_keeps_prepacked_weights_per_bucket(tmp_path):
    """Buckets x --cpu_isa: each bucket is AVX2 code through the C++ GEMM template, which needs pre-packed
    weights (so no shared copy at -O2), the manifest records what loading checks, and each bucket
    matches eager (validation at its own shape)."""
    output = tmp_path / "avx2-buckets"
    result = export("demo:tiny-bert", output, ExportOptions(backend="inductor", task="feature-extraction", sequence_length=(8, 16),
                                                            cpu_isa="avx2", threads=2, use_cache=False))
    manifest = result.manifest
    assert result.validation_passed and [b.validation.passed for b in manifest.buckets] == [True, True]
    assert manifest.validation.atol == 1e-4
    assert manifest.cpu_isa == "avx2" and manifest.cpu_flags == sorted(cpu.ISA_LEVELS["avx2"].flags) and manifest.threads == 2
    assert not manifest.bucketing.shared_weights and "AVX2 code (Inductor's C++ GEMM template)" in manifest.bucketing.weights_note
    code = shared_objects_disassembly(output / "model.pt2")
    assert "ymm" in code and "zmm" not in code


@pytest.mark.skipif(HAS_MARCH, reason="this torch builds portable CPU levels")
def test_cpu_isa_on_a_torch_without_march_is_refused_in_one_line(tmp_path):
    result = run_cli("export", "--model", "demo:tiny-bert", "--backend", "inductor", "--sequence_length", "8",
                     "--cpu_isa", "avx2", "--no-cache", str(tmp_path / "avx2"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--cpu_isa avx2 needs torch >= 2.13" in result.stderr and not (tmp_path / "avx2").exists()
