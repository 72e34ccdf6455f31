"""inspect_model (what the Compile form shows before compiling) and export_argv (what its jobs run)."""

import dataclasses

import pytest

from neuron_export.cli import build_parser, export_argv
from neuron_export.errors import NeuronExportError
from neuron_export.model_info import inspect_model
from neuron_export.options import ExportOptions
from neuron_export.registry import supported_tasks


@pytest.mark.parametrize(
    "demo, model_type, task, shape_options",
    [
        ("demo:tiny-bert", "bert", "text-classification", ["batch_size", "sequence_length"]),
        ("demo:tiny-roberta-mc", "roberta", "multiple-choice", ["batch_size", "num_choices", "sequence_length"]),
        ("demo:tiny-vit", "vit", "image-classification", ["batch_size", "num_channels", "height", "width"]),
        ("demo:minilm", "bert", "feature-extraction", ["batch_size", "sequence_length"]),
        ("demo:tiny-sd", "stable-diffusion", "stable-diffusion", ["batch_size", "height", "width", "num_images_per_prompt"]),
    ],
)
def test_inspect_demo_models(demo, model_type, task, shape_options):
    info = inspect_model(demo)
    assert (info.model_type, info.detected_task) == (model_type, task)
    # a sentence-transformers folder exports its pooled embeddings, whatever heads its encoder has
    assert info.tasks == ([task] if demo == "demo:minilm" else supported_tasks(model_type))
    assert info.shape_options(task) == shape_options
    assert all(name in info.default_shapes for name in shape_options)


def test_inspect_limits_follow_the_config():
    roberta = inspect_model("demo:tiny-roberta-mc")
    # RoBERTa numbers positions from pad_token_id + 1: those ids are not usable by tokens.
    assert roberta.shape_limits["sequence_length"] == 130 - 2
    assert inspect_model("demo:tiny-vit").default_shapes["height"] == 32
    assert inspect_model("demo:tiny-sd").default_shapes["height"] == 64


def test_inspect_reports_missing_folders(tmp_path):
    with pytest.raises(NeuronExportError, match="does not exist"):
        inspect_model(str(tmp_path / "missing"))


def test_export_argv_round_trips_every_option():
    options = ExportOptions(
        task="fill-mask", backend="torchscript", device="cpu", batch_size=2, sequence_length=32, num_choices=3,
        auto_cast="matmul", auto_cast_type="fp16", optlevel=3, dynamic_batch_size=True, compiler_workdir="/tmp/w",
        trust_remote_code=True, cache_dir="/tmp/c", output_hidden_states=True, output_attentions=True, atol=0.01,
        disable_validation=True, force=True, use_cache=False,
        lora_model_ids=("/tmp/a", "/tmp/b"), lora_weight_names=("a.safetensors", "b.safetensors"), lora_adapter_names=("a", "b"),
        lora_scales=(0.5, -1.0),
    )
    argv = export_argv("demo:tiny-bert", "/tmp/out", options)
    parsed = build_parser().parse_args(argv)
    assert (parsed.model, parsed.output) == ("demo:tiny-bert", "/tmp/out")
    assert ExportOptions.from_dict(vars(parsed)) == options
    # defaults are left out, so the job's command line stays readable
    assert export_argv("m", "o", ExportOptions()) == ["export", "--model", "m", "o"]
    assert {f.name for f in dataclasses.fields(ExportOptions)} <= set(vars(parsed))
