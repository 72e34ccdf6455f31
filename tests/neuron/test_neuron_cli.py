"""The neuron backend from the real CLI on this host, which has no Neuron device, with the stand-in SDK:
cross-compiling for inf2 / trn1, and every bad Neuron install or request refused in one line with exit
code 2 and nothing written. Budget: ~60 s (CLI subprocesses)."""

import json
import os
import subprocess
import sys

import pytest

from neuron_export import ExportOptions
from neuron_export.backends import choose_backend
from support import ROOT

TINY = ["--model", "demo:tiny-bert", "--sequence_length", "16"]


def neuron_cli(sdk, *args, timeout=300):
    """`neuron-export ARGS` in a subprocess that has this stand-in SDK installed (None: no SDK at all)."""
    env = sdk.env() if sdk is not None else {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "neuron_export", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def one_line_error(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("instance_type", ["inf2", "trn1"])
def test_cross_compiling_for_an_instance_type_without_a_device(standin, tmp_path, instance_type):
    output = tmp_path / "bert"
    done = neuron_cli(standin, "export", *TINY, "--instance_type", instance_type, "--auto_cast", "matmul", "--no-cache", str(output))
    assert done.returncode == 0, done.stderr
    assert f"Backend: neuron (auto: --instance_type {instance_type} compiles for Neuron)" in done.stdout
    manifest = json.loads((output / "manifest.json").read_text())
    assert (manifest["backend"], manifest["is_neuron"], manifest["target"]) == ("neuron", True, instance_type)
    assert "portable" not in manifest["runs_on"] and instance_type in manifest["runs_on"]
    assert manifest["validation"]["passed"] is None and "cannot run here" in manifest["validation"]["skipped"]
    # What reached the compiler, read back from the compiled archive by the stand-in.
    describe = ("import json, sys, torch_neuronx; "
                "print(json.dumps(torch_neuronx.standin.describe(sys.argv[1])))")
    header = json.loads(subprocess.run([sys.executable, "-c", describe, str(output / "model.neuron")], env=standin.env(),
                                       capture_output=True, text=True, check=True).stdout)
    assert header["target"] == instance_type and header["cpu_backend"] is True
    args = " ".join(header["compiler_args"])
    assert "--model-type transformer" in args and "--auto-cast matmult --auto-cast-type bf16" in args

    if instance_type != "inf2":
        return
    # On this host the artifact is refused in one line that names the instance type it needs.
    done = neuron_cli(standin, "benchmark", str(output), "--iterations", "1")
    assert done.returncode == 2 and f"for {instance_type} and this host has no Neuron device" in one_line_error(done)
    done = neuron_cli(None, "benchmark", str(output), "--iterations", "1")
    assert done.returncode == 2
    assert f"Neuron artifact for {instance_type} NeuronCores and torch-neuronx is not installed" in one_line_error(done)
    assert not (output / "benchmarks").exists()


@pytest.mark.parametrize("variant, request_, message", [
    (dict(torch_neuronx="placeholder"), ["--backend", "neuron"], "torch-neuronx 1.0 is PyPI's placeholder, not the Neuron SDK; pip uninstall -y torch-neuronx"),
    (dict(built_for="2.1.0"), ["--instance_type", "inf2"], "torch-neuronx 2.1.0.2.15.0 is built for torch 2.1 and this environment has torch"),
    (dict(torch_neuronx="broken"), ["--backend", "neuron"], "torch-neuronx does not import (OSError: libnrt.so.1"),
    (dict(), ["--backend", "neuron"], "no Neuron device on this host (/dev/neuron*): pass --instance_type inf2"),
    (dict(neuronx_cc="missing"), ["--instance_type", "trn1"], "neuronx-cc is not installed; install the real Neuron SDK"),
])
def test_bad_neuron_installs_and_requests_are_one_line_and_write_nothing(sdk_variant, tmp_path, variant, request_, message):
    output = tmp_path / "out"
    done = neuron_cli(sdk_variant(**variant), "export", *TINY, *request_, "--no-cache", str(output))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in one_line_error(done)
    assert not output.exists() and not list(tmp_path.glob(".out*"))  # nor a staging folder


def test_auto_falls_back_to_the_portable_backend_and_says_why(sdk_variant, in_process):
    in_process(sdk_variant(torch_neuronx="placeholder"))
    backend, reason = choose_backend(ExportOptions())
    assert not backend.is_neuron and "portable" in backend.runs_on(ExportOptions())
    assert reason.startswith("auto: the installed torch-neuronx 1.0 is PyPI's placeholder")
