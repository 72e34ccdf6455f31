"""`neuron-export benchmark`: its arguments and its run, over neuron_export.benchmark (the CLI's other
commands are in neuron_export/cli.py, which registers this one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import EventFile
from ..errors import NeuronExportError


def add_benchmark_parser(commands) -> None:
    from .peers import PEERS

    p = commands.add_parser("benchmark", help="time a compiled artifact against eager PyTorch and ONNX Runtime, in one run")
    p.add_argument("artifact", help="a compiled artifact folder (made by `export`)")
    p.add_argument("--iterations", type=int, default=30, help="timed calls per side and batch size (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up calls per side and batch size first (default 5)")
    p.add_argument("--batch_size", type=int, nargs="+", dest="batch_sizes", metavar="N",
                   help="batch sizes to time (default: the compiled one; others need a --dynamic-batch-size artifact)")
    p.add_argument("--threads", type=int, help="intra-op threads of every side (default: all cores)")
    p.add_argument("--rounds", type=int, default=10, help="interleave the sides in this many rounds (default 10)")
    p.add_argument("--steps", type=int, default=10, help="denoising steps per image of a Stable Diffusion pipeline (default 10)")
    p.add_argument("--pipeline", metavar="CLASS", help="a Stable Diffusion artifact: the pipeline class to time, e.g. "
                   "NeuronStableDiffusionImg2ImgPipeline (default: the class the artifact's source was saved as "
                   "(an SDXL refiner: img2img), else the task's first)")
    p.add_argument("--sequence_length", type=_lengths, dest="lengths", metavar="L,L,...",
                   help="a bucketed artifact: time inputs of these lengths on the bucket each picks, against its largest bucket only")
    p.add_argument("--no-onnx", dest="onnx", action="store_false", help="leave out the peers (they run the model exported to ONNX)")
    p.add_argument("--peers", nargs="+", metavar="PEER", choices=PEERS,
                   help=f"peers to run ({', '.join(PEERS)}; default: the fp32 ones, and the int8 ones for an --quantize artifact)")
    p.add_argument("--prompt_length", type=int, help="generative models: prompt tokens (default: a quarter of the sequence length)")
    p.add_argument("--new_tokens", type=int, help="generative models: tokens generated per call (default: up to 32)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let the eager side run the source model's own code (never implied by the artifact's manifest)")
    p.add_argument("--json", help="also write the results to this file (they are always stored in ARTIFACT/benchmarks/)")
    p.add_argument("--events", help=argparse.SUPPRESS)  # JSON-lines progress for the dashboard's job runner
    p.set_defaults(handler=run_benchmark)


def _lengths(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive lengths separated by commas, e.g. 10,50,200")
    return [int(part) for part in parts]


def run_benchmark(args: argparse.Namespace) -> int:
    from ..artifact import write_json
    from . import BenchmarkOptions, benchmark, format_report, headline
    from .buckets import benchmark_lengths, format_lengths_report

    events = EventFile(args.events)
    try:
        if args.lengths and args.batch_sizes:
            raise NeuronExportError("--sequence_length times the compiled batch size; leave out --batch_size")
        options = BenchmarkOptions(iterations=args.iterations, warmup=args.warmup, batch_sizes=args.batch_sizes,
                                   onnx=args.onnx, peers=args.peers, threads=args.threads, rounds=args.rounds, steps=args.steps,
                                   prompt_length=args.prompt_length, new_tokens=args.new_tokens,
                                   trust_remote_code=args.trust_remote_code, pipeline=args.pipeline)
        if args.lengths:
            report = benchmark_lengths(args.artifact, args.lengths, options, on_event=events.write)
        else:
            report = benchmark(args.artifact, options, on_event=events.write)
    except NeuronExportError as error:
        events.write({"type": "error", "message": str(error), "exit_code": error.exit_code})
        raise
    if args.lengths:
        print("\n".join(format_lengths_report(report)))
        events.write({"type": "done", "artifact": report["artifact"], "results": report.get("saved_to")})
        return 0
    print("\n".join(format_report(report)))
    if args.json:
        write_json(Path(args.json), report)
    events.write({"type": "stage", "stage": "done", "fraction": 1.0, "message": headline(report)})
    events.write({"type": "done", "artifact": report["artifact"], "results": report.get("saved_to")})
    return 0
