"""Backends: neuronx-cc flags built from the options, the neuron backend's "not usable here" reasons,
the auto choice, and device integration tests that run only where the hardware is (< 10 s here).
The neuron path end to end against the stand-in SDK is in tests/neuron.
"""

from __future__ import annotations

import glob
import itertools
import sys

import pytest
import torch
import transformers

from neuron_export import ExportOptions, export, load_artifact
from neuron_export.backends import choose_backend
from neuron_export.backends.neuron import import_torch_neuronx, neuron_compiler_args, neuron_device_present, torch_neuronx_importable
from neuron_export.demo import build_tiny_text_model
from neuron_export.errors import BackendUnavailableError, NeuronExportError


def flag_value(args: list[str], flag: str):
    """The value given to `flag` (as `--flag value` or `--flag=value`), None when absent."""
    for index, arg in enumerate(args):
        if arg == flag:
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


AUTO_CAST_SPELLING = {"none": "none", "matmul": "matmult", "all": "all"}  # neuronx-cc's own spelling


@pytest.mark.parametrize(
    "auto_cast,auto_cast_type,optlevel,instance_type",
    list(itertools.product(["none", "matmul", "all"], [None, "bf16", "fp16", "tf32"], [1, 2, 3], [None, "inf2", "trn1"])),
)
def test_neuron_compiler_args(auto_cast, auto_cast_type, optlevel, instance_type):
    options = ExportOptions(auto_cast=auto_cast, auto_cast_type=auto_cast_type, optlevel=optlevel, instance_type=instance_type)
    args = neuron_compiler_args(options, "transformer")
    assert flag_value(args, "--auto-cast") == AUTO_CAST_SPELLING[auto_cast]
    # The cast type means nothing without a cast; bf16 is the default cast type.
    assert flag_value(args, "--auto-cast-type") == (None if auto_cast == "none" else auto_cast_type or "bf16")
    assert flag_value(args, "--optlevel") == str(optlevel)
    assert flag_value(args, "--target") == instance_type
    assert flag_value(args, "--model-type") == "transformer"
    assert "--logfile" not in args


@pytest.mark.parametrize("model_kind", ["generic", "transformer", "unet-inference"])
def test_neuron_model_type(model_kind):
    assert flag_value(neuron_compiler_args(ExportOptions(), model_kind), "--model-type") == model_kind


def test_neuron_compiler_workdir_keeps_the_log(tmp_path):
    args = neuron_compiler_args(ExportOptions(compiler_workdir=str(tmp_path)), "generic")
    assert flag_value(args, "--logfile").startswith(str(tmp_path))


def test_families_pick_the_neuron_model_type():
    from neuron_export.registry import get_architecture

    assert get_architecture("bert").family.neuron_model_type == "transformer"
    assert get_architecture("vit").family.neuron_model_type == "generic"


@pytest.fixture(autouse=True)
def restore_target_override(monkeypatch):
    # Compiling for an --instance_type sets this process-wide; keep it from leaking into other tests.
    monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", "")
    monkeypatch.delenv("NEURON_PLATFORM_TARGET_OVERRIDE")


def test_missing_torch_neuronx(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)  # makes `import torch_neuronx` fail
    with pytest.raises(BackendUnavailableError, match="torch-neuronx is not installed; install the real Neuron SDK"):
        import_torch_neuronx()
    with pytest.raises(BackendUnavailableError, match="pip install --extra-index-url https://pip.repos.neuron.amazonaws.com"):
        choose_backend(ExportOptions(backend="neuron"))
    with pytest.raises(BackendUnavailableError, match="torch-neuronx"):
        choose_backend(ExportOptions(instance_type="inf2"))  # auto + --instance_type means neuron


def test_auto_picks_inductor_here_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    backend, reason = choose_backend(ExportOptions())
    assert backend.name == "inductor"
    assert "torch-neuronx is not installed" in reason


@pytest.mark.skipif(torch_neuronx_importable() and neuron_device_present(), reason="this host has a Neuron device")
def test_auto_choice_on_this_host():
    backend, reason = choose_backend(ExportOptions())
    assert backend.name == "inductor"
    assert reason.startswith("auto: ") and ("not installed" in reason or "no Neuron device" in reason)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(backend="torchscript", instance_type="inf2"), "--instance_type compiles for Neuron"),
        (dict(backend="inductor", auto_cast="matmul", auto_cast_type="tf32"), "tf32 exists on NVIDIA GPUs and Neuron only"),
    ],
)
def test_options_a_backend_cannot_honour(options, message):
    with pytest.raises(NeuronExportError, match=message):
        choose_backend(ExportOptions(**options))


def _export_and_compare(tmp_path, options: ExportOptions):
    """Export a tiny classifier and compare the loaded artifact with transformers eager on CPU."""
    model_dir = build_tiny_text_model("bert", "text-classification", tmp_path / "model")
    result = export(model_dir, tmp_path / "artifact", options.replace(sequence_length=16, use_cache=False))
    compiled = load_artifact(result.artifact)
    tokenizer = transformers.AutoTokenizer.from_pretrained(result.artifact)
    inputs = dict(tokenizer("the quick brown fox", padding="max_length", max_length=16, return_tensors="pt"))
    with torch.no_grad():
        expected = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir)(**inputs).logits
    torch.testing.assert_close(compiled(**inputs)["logits"].cpu(), expected, rtol=0, atol=1e-3)
    return result


@pytest.mark.neuron
@pytest.mark.skipif(not (torch_neuronx_importable() and glob.glob("/dev/neuron*")), reason="needs the real torch-neuronx and a Neuron device")
def test_neuron_export_on_inferentia(tmp_path):
    result = _export_and_compare(tmp_path, ExportOptions(backend="neuron"))
    assert result.validation_passed is True
    assert result.manifest.backend == "neuron" and (result.artifact / "model.neuron").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inductor_on_cuda(tmp_path):
    result = _export_and_compare(tmp_path, ExportOptions(backend="inductor", device="cuda"))
    assert result.validation_passed is True
    assert result.manifest.device == "cuda"
