"""`neuron-export doctor` on this host (no Neuron device) under each state of the Neuron SDK: one line per
fact, a fix for each problem, --json, exit 0 when some backend compiles and runs here, else 1. The inf2
side is tests/neuron/inf2/host_cli.py. Budget: ~30 s."""

import json
import platform
import subprocess
import sys

import pytest
import torch

from neuron_export import backends, cli
from neuron_export.doctor import gather
from support import ROOT


def doctor(sdk, *args):
    env = sdk.env() if sdk is not None else None
    return subprocess.run([sys.executable, "-m", "neuron_export", "doctor", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def facts_of(done) -> dict:
    return {fact["name"]: fact for fact in json.loads(done.stdout)["facts"]}


def test_every_fact_has_its_line_and_the_portable_backends_work_here(standin):
    done = doctor(standin)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"✓ torch: {torch.__version__}" in lines[1]
    assert any(line.startswith(f"✓ torch-neuronx: {standin.torch_neuronx_version} (built for torch") for line in lines)
    assert f"✓ neuronx-cc: {standin.compiler_version}" in lines
    assert any(line.startswith("✓ Neuron devices: none (no /dev/neuron*)") for line in lines)
    assert any(line.startswith(f"✓ CPU vector ISA: {torch.backends.cpu.get_cpu_capability()}") and platform.machine() in line
               for line in lines)
    assert any(line.startswith("✓ CUDA: ") for line in lines)
    assert any(line.startswith("~ backend neuron: compiles here; cannot run here (no Neuron device") for line in lines)
    assert "✓ backend torchscript: compiles here; runs here" in done.stdout
    assert lines[-1].startswith("✓ this host can compile and run with:")


@pytest.mark.parametrize("variant, fact, state, fix", [
    (dict(torch_neuronx="placeholder"), "torch-neuronx", "is PyPI's placeholder", "pip uninstall -y torch-neuronx"),
    (dict(built_for="2.1.0"), "torch-neuronx", "is built for torch 2.1 and this environment has torch", '"torch==2.1.*"'),
    (dict(torch_neuronx="broken"), "torch-neuronx", "does not import (OSError: libnrt.so.1", "reinstall it"),
    (dict(neuronx_cc="placeholder"), "neuronx-cc", "is PyPI's placeholder", "pip uninstall -y neuronx-cc"),
])
def test_a_bad_neuron_install_is_a_fact_with_its_fix(sdk_variant, variant, fact, state, fix):
    done = doctor(sdk_variant(**variant), "--json")
    assert done.returncode == 0  # the portable backends still compile and run
    found = facts_of(done)[fact]
    assert not found["ok"] and state in found["value"] and fix in found["fix"]
    neuron = next(b for b in json.loads(done.stdout)["backends"] if b["is_neuron"])
    assert not neuron["can_compile"] and fix in neuron["compile_problem"]


def test_without_the_sdk_nothing_is_wrong_on_a_host_without_devices():
    done = doctor(None, "--json")
    facts = facts_of(done)
    assert facts["torch-neuronx"]["ok"] and "needed only to compile for or run on Neuron" in facts["torch-neuronx"]["value"]
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True


def test_exit_1_when_no_backend_can_compile_and_run(monkeypatch, capsys):
    neuron = next(b for b in backends.BACKENDS.values() if b.is_neuron)
    monkeypatch.setattr(backends, "BACKENDS", {neuron.name: neuron})
    monkeypatch.setattr("neuron_export.doctor.BACKENDS", {neuron.name: neuron})
    assert not gather().ok
    assert cli.main(["doctor"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "✗ no backend can both compile and run here"
