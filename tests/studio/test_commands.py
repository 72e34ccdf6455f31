"""studio.jobs.commands: the command lines of export and benchmark jobs mean, to the real CLI parser,
exactly the request they were built from. Budget: < 2 s."""

import sys

import pytest

from neuron_export import ExportOptions
from neuron_export.cli import build_parser
from studio.jobs import benchmark_command, export_command


def parse(command: list[str]):
    """The CLI's reading of a job's command (the part after `python -m neuron_export`)."""
    assert command[:3] == [sys.executable, "-m", "neuron_export"]
    return build_parser().parse_args(command[3:])


@pytest.mark.parametrize("options", [
    ExportOptions(),
    ExportOptions(backend="torchscript", sequence_length=16, batch_size=2, optlevel=3, dynamic_batch_size=True),
    ExportOptions(task="multiple-choice", num_choices=4, auto_cast="matmul", auto_cast_type="bf16", atol=1e-3,
                  disable_validation=True, use_cache=False, trust_remote_code=True, force=True, compiler_workdir="/w"),
    ExportOptions(backend="neuron", instance_type="inf2", optlevel=1, height=64, width=64, num_images_per_prompt=2),
])
def test_export_command_carries_every_option(options, tmp_path):
    args = parse(export_command("demo:tiny-bert", tmp_path / "out", options))
    assert (args.command, args.model, args.output) == ("export", "demo:tiny-bert", str(tmp_path / "out"))
    parsed = ExportOptions.from_dict({k: v for k, v in vars(args).items() if k not in ("model", "output")})
    assert parsed == options


def test_benchmark_command_carries_the_request(tmp_path):
    args = parse(benchmark_command(tmp_path / "a", iterations=7, warmup=2, steps=3, batch_sizes=[1, 4], onnx=False, threads=2,
                                   pipeline="NeuronStableDiffusionImg2ImgPipeline"))
    assert (args.command, args.artifact) == ("benchmark", str(tmp_path / "a"))
    assert (args.iterations, args.warmup, args.steps, args.batch_sizes, args.onnx, args.threads) == (7, 2, 3, [1, 4], False, 2)
    assert args.pipeline == "NeuronStableDiffusionImg2ImgPipeline"


def test_benchmark_command_defaults_to_the_compiled_batch_all_cores_and_onnx(tmp_path):
    args = parse(benchmark_command(tmp_path / "a", iterations=30, warmup=5, steps=10))
    assert (args.batch_sizes, args.threads, args.onnx, args.pipeline) == (None, None, True, None)


def test_export_commands_are_the_same_with_a_farm_set(tmp_path, monkeypatch):
    """The farm is the dispatcher's choice when a job starts (studio/jobs/farm.py), not the command's."""
    monkeypatch.setenv("NEURON_EXPORT_RAY_ADDRESS", "127.0.0.1:6390")
    args = parse(export_command("demo:tiny-bert", tmp_path / "out", ExportOptions(backend="torchscript")))
    assert (args.executor, args.ray_address, args.backend) == ("local", None, "torchscript")
