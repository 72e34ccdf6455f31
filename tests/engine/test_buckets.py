"""Buckets without compiling: multi-value shape options (parse, validate, CLI round trip), the cost
model against brute force, planning errors, manifest formats, and the neuron backend's per-bucket
trace / lazy_load / async_load logic against a stand-in torch_neuronx (< 15 s)."""

from __future__ import annotations

import itertools
import json
import random
import types

import pytest
import torch

from neuron_export import ExportOptions
from neuron_export.artifact import Manifest
from neuron_export.backends.neuron import NeuronBackend
from neuron_export.bucketing import (
    cheapest_buckets,
    expected_padded_length,
    format_shape_value,
    parse_resolutions,
    parse_shape_text,
    powers_of_two,
    propose_buckets,
    parse_auto,
    read_length_histogram,
)
from neuron_export.cli import build_parser, export_argv
from neuron_export.demo import build_tiny_stable_diffusion
from neuron_export.errors import ArtifactError, NeuronExportError
from neuron_export.export import make_plan


# ---- option values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [
    ("128", 128), ("32,64,128", (32, 64, 128)), (" 64 , 32 ", (64, 32)), ("16,", None), ("auto:16-512", "auto:16-512"),
    ("auto:16-512:4", "auto:16-512:4"), ("0", None), ("-3", None), ("32,x", None), ("auto:512-16", None), ("auto:16", None),
    ("auto:8-64:0", None), (",".join(["8"] * 17), None),
])
def test_shape_option_text(text, value):
    if value is None:
        with pytest.raises(NeuronExportError, match="--sequence_length"):
            parse_shape_text("--sequence_length", text)
    else:
        assert parse_shape_text("--sequence_length", text) == value


def test_options_normalise_and_refuse_multi_values():
    assert ExportOptions(sequence_length=[32, 64]).sequence_length == (32, 64)  # JSON lists
    assert ExportOptions(sequence_length=[64]).sequence_length == 64
    assert ExportOptions(height=(512, 768), width="512,768").width == (512, 768)
    for bad in ({"sequence_length": (32, 0)}, {"height": [True, 2]}, {"sequence_length": "auto:9"}, {"batch_size": (1, 2)}):
        with pytest.raises(NeuronExportError):
            ExportOptions(**bad)
    options = ExportOptions(sequence_length=(32, 64), length_histogram="h.json")
    assert ExportOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options


@pytest.mark.parametrize("options", [
    ExportOptions(sequence_length=(32, 64, 128)),
    ExportOptions(sequence_length="auto:16-512:3", length_histogram="/tmp/lengths.txt"),
    ExportOptions(height=(512, 768), width=(512, 768), backend="torchscript"),
    ExportOptions(sequence_length=128, dynamic_batch_size=True),
])
def test_export_argv_round_trips_through_the_cli(options):
    args = build_parser().parse_args(export_argv("demo:tiny-bert", "out", options))
    parsed = ExportOptions.from_dict({k: v for k, v in vars(args).items() if k not in ("model", "output")})
    assert parsed == options


def test_cli_refuses_a_bad_bucket_list_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["export", "-m", "demo:tiny-bert", "out", "--sequence_length", "32,abc"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--sequence_length" in error and "commas" in error


def test_resolutions_are_width_by_height():
    assert parse_resolutions("512x768, 768×512") == ((768, 512), (512, 768))
    assert format_shape_value((32, 64)) == "32,64"
    with pytest.raises(NeuronExportError, match="WIDTHxHEIGHT"):
        parse_resolutions("512 by 512")


# ---- the cost model --------------------------------------------------------------------------------


def test_powers_of_two():
    assert powers_of_two(16, 512) == [16, 32, 64, 128, 256, 512]
    assert powers_of_two(10, 100) == [16, 32, 64, 100]  # always ending at HIGH, so every length fits


@pytest.mark.parametrize("seed", range(6))
def test_cheapest_buckets_beat_every_other_choice(seed):
    """The dynamic programme against exhaustive search on random traffic."""
    rng = random.Random(seed)
    histogram = {rng.randint(1, 120): rng.randint(1, 50) for _ in range(rng.randint(3, 12))}
    high, count = 128, rng.randint(1, 4)
    candidates = sorted({min(high, -(-length // 8) * 8) for length in histogram})
    chosen = cheapest_buckets(histogram, count, high, candidates)
    assert chosen[-1] == high and len(chosen) <= count
    options = [c for c in candidates if c < high]
    best = min(expected_padded_length(histogram, list(combo) + [high])
               for k in range(count) for combo in itertools.combinations(options, k))
    assert expected_padded_length(histogram, chosen) == pytest.approx(best)


@pytest.mark.parametrize("content", ['{"5": 100, "12": 50, "30": 10, "100": 2}', "[5, 5, 12]", "5 100\n12 50\n# comment\n30\n"])
def test_length_histogram_files(tmp_path, content):
    path = tmp_path / "lengths"
    path.write_text(content)
    histogram = read_length_histogram(path)
    assert set(histogram) <= {5, 12, 30, 100} and 5 in histogram
    buckets, said = propose_buckets("--sequence_length", parse_auto("--sequence_length", "auto:8-128:3"), str(path))
    assert buckets[-1] == 128 and len(buckets) <= 3 and "padded tokens per call" in said


def test_length_histogram_errors(tmp_path):
    path = tmp_path / "lengths.json"
    path.write_text('{"600": 3}')
    with pytest.raises(NeuronExportError, match="raise HIGH"):
        propose_buckets("--sequence_length", parse_auto("--sequence_length", "auto:8-512"), str(path))
    path.write_text("not numbers")
    with pytest.raises(NeuronExportError, match="--length_histogram"):
        read_length_histogram(path)
    with pytest.raises(NeuronExportError, match="cannot read"):
        read_length_histogram(tmp_path / "absent")


# ---- planning (configs only, nothing compiled) -----------------------------------------------------


def test_plan_of_buckets_and_auto(tmp_path):
    plan = make_plan("demo:tiny-bert", ExportOptions(backend="torchscript", sequence_length=(32, 8, 16)))
    assert plan.buckets == [{"sequence_length": 8}, {"sequence_length": 16}, {"sequence_length": 32}]
    assert plan.shapes["sequence_length"] == 32 and plan.options.sequence_length == (8, 16, 32)
    histogram = tmp_path / "lengths.json"
    histogram.write_text(json.dumps({"3": 500, "10": 40, "60": 1}))
    plan = make_plan("demo:tiny-bert", ExportOptions(backend="torchscript", sequence_length="auto:8-64:2", length_histogram=str(histogram)))
    assert plan.buckets == [{"sequence_length": 8}, {"sequence_length": 64}]


@pytest.mark.parametrize("model,options,message", [
    ("demo:tiny-vit", {"height": (32, 64), "width": (32, 64)}, "--height takes one value for image-classification"),
    ("demo:tiny-bert", {"sequence_length": (8, 8)}, "listed twice"),
    ("demo:tiny-bert", {"sequence_length": (8, 4096)}, "beyond the model's max_position_embeddings"),
    ("demo:tiny-bert", {"sequence_length": 16, "length_histogram": "x.json"}, "auto shape option"),
    ("demo:tiny-bert", {"sequence_length": (8, 16), "length_histogram": "x.json"}, "lists them already"),
])
def test_plan_refuses_bad_buckets(model, options, message):
    with pytest.raises(NeuronExportError, match=message):
        make_plan(model, ExportOptions(backend="torchscript", **options))


def test_stable_diffusion_buckets_pair_by_position(tmp_path):
    folder = build_tiny_stable_diffusion(tmp_path / "sd")
    plan = make_plan(str(folder), ExportOptions(backend="torchscript", height=(96, 64), width=(96, 64)))
    assert plan.buckets == [{"height": 64, "width": 64}, {"height": 96, "width": 96}]
    assert {c.name: c.bucketed for c in plan.components} == {"text_encoder": False, "unet": True, "vae_encoder": True, "vae_decoder": True}
    with pytest.raises(NeuronExportError, match="pair by position"):
        make_plan(str(folder), ExportOptions(backend="torchscript", height=(64, 96, 128), width=(64, 96)))
    with pytest.raises(NeuronExportError, match="list the sizes"):
        make_plan(str(folder), ExportOptions(backend="torchscript", height="auto:64-128"))


# ---- manifests -------------------------------------------------------------------------------------


def _manifest_data(**changes):
    data = {"source": "x", "library": "transformers", "model_type": "bert", "task": "text-classification",
            "shapes": {"sequence_length": 16}, "backend": "torchscript", "backend_reason": "", "is_neuron": False,
            "device": "cpu", "target": None, "runs_on": "", "torch_version": "2.13.0", "compiler": "", "options": {},
            "model_file": "model.pt", "inputs": [{"name": "input_ids", "shape": [1, 16], "dtype": "int64", "axes": ["batch_size", "sequence_length"]}],
            "outputs": ["logits"], "format_version": 1}
    return {**data, **changes}


def test_manifest_formats():
    old = Manifest.from_dict(_manifest_data())  # written before buckets existed
    assert not old.is_bucketed and old.to_dict()["format_version"] == 1
    bucket = {"name": "16", "shapes": {"sequence_length": 16}, "inputs": _manifest_data()["inputs"], "location": "bucket_16",
              "validation": {"passed": True}, "compile_s": 1.5}
    bucketed = Manifest.from_dict(_manifest_data(format_version=2, buckets=[bucket],
                                                 bucketing={"axes": ["sequence_length"], "fit": "pad"}))
    assert bucketed.buckets[0].validation.passed and bucketed.buckets[0].compile_s == 1.5
    assert Manifest.from_dict(json.loads(json.dumps(bucketed.to_dict()))) == bucketed
    with pytest.raises(ArtifactError, match="format 3"):
        Manifest.from_dict(_manifest_data(format_version=3))


# ---- neuron: one trace per bucket, lazy / async load (a stand-in torch_neuronx) ---------------------


class _Doubler(torch.nn.Module):
    def forward(self, x):
        return x * 2


def _stand_in_torch_neuronx(calls: list):
    """The documented calls the neuron backend makes, recorded: trace -> a TorchScript module."""
    module = types.ModuleType("torch_neuronx")

    def trace(func, example_inputs, *_, compiler_workdir=None, compiler_args=None, inline_weights_to_neff=True, cpu_backend=False, **rest):
        assert not rest, f"undocumented keyword arguments {rest}"
        calls.append(("trace", tuple(example_inputs[0].shape), compiler_args))
        return torch.jit.trace(func, example_inputs)

    def flag(name):
        return lambda trace_module, **_: calls.append((name, id(trace_module)))

    module.trace = trace
    module.async_load, module.lazy_load = flag("async_load"), flag("lazy_load")
    module.dynamic_batch = lambda m: calls.append(("dynamic_batch",)) or m
    return module


def test_neuron_buckets_are_separate_traces_the_largest_loaded_at_start(tmp_path, monkeypatch):
    calls: list = []
    stand_in = _stand_in_torch_neuronx(calls)
    monkeypatch.setattr("neuron_export.backends.neuron.import_torch_neuronx", lambda target=None: stand_in)
    backend, options = NeuronBackend(), ExportOptions(backend="neuron", instance_type="inf2")
    compiled = {str(n): backend.compile_bucket(_Doubler(), (torch.ones(1, n),), options, None, "transformer") for n in (8, 16, 32)}
    assert [c[1] for c in calls if c[0] == "trace"] == [(1, 8), (1, 16), (1, 32)]
    assert all("--target" in c[2] for c in calls if c[0] == "trace")
    saved = backend.save_buckets(compiled, tmp_path, options)
    # lazy_load / async_load are set before torch.jit.save (they are stored in the archive): the largest async, the others lazy
    loads = [c for c in calls if c[0].endswith("_load")]
    assert loads == [("lazy_load", id(compiled["8"])), ("lazy_load", id(compiled["16"])), ("async_load", id(compiled["32"]))]
    assert saved.locations == {"8": "model.8.neuron", "16": "model.16.neuron", "32": "model.32.neuron"}
    assert saved.model_file is None and not saved.shared_weights
    assert all((tmp_path / name).is_file() for name in saved.locations.values())


def test_neuron_dynamic_batch_is_applied_to_every_bucket(monkeypatch):
    calls: list = []
    stand_in = _stand_in_torch_neuronx(calls)
    monkeypatch.setattr("neuron_export.backends.neuron.import_torch_neuronx", lambda target=None: stand_in)
    options = ExportOptions(backend="neuron", instance_type="inf2", dynamic_batch_size=True)
    for n in (8, 16):
        NeuronBackend().compile_bucket(_Doubler(), (torch.ones(1, n),), options, None)
    assert [c[0] for c in calls] == ["trace", "dynamic_batch", "trace", "dynamic_batch"]
