"""`neuron-export`: the command line over the engine. Argument names follow `optimum-cli export neuron`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .bucketing import format_shape_value, parse_shape_text
from .errors import NeuronExportError, first_line
from .options import AUTO_CAST, AUTO_CAST_TYPES, CPU_ISAS, DEVICES, INSTANCE_TYPES, MULTI_VALUE_FIELDS, QUANTIZATIONS, ExportOptions

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 3
INTERRUPT_AGAIN_S = 5.0  # an interrupt lost in a __del__ is raised again after this long


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


@dataclass(frozen=True)
class Flag:
    """The command-line spelling of one ExportOptions field (optimum-cli's names where it has them)."""

    field: str
    flag: str
    help: str
    kind: str = "value"  # value | switch (store_true) | negated (store_false) | level (-O1/-O2/-O3) | list (one or more)
    type: Optional[Callable[[str], Any]] = None
    choices: Optional[tuple] = None


def _shape(name: str, what: str) -> Flag:
    if name in MULTI_VALUE_FIELDS:
        return Flag(name, f"--{name}", f"{what}; several, comma-separated, compile one model each (buckets)", type=_shape_values(name))
    return Flag(name, f"--{name}", what, type=int)


def _shape_values(name: str) -> Callable[[str], Any]:
    """argparse type of a multi-value shape option: 128, 32,64,128 or auto:16-512."""

    def parse(text: str) -> Any:
        try:
            return parse_shape_text(f"--{name}", text)
        except NeuronExportError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"--{name} ")) from None

    return parse


def _lora_scale(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # most often OUTPUT, taken as one more scale: a list option takes every value after it
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (give OUTPUT before the --lora_* options, or end them with --)") from None


EXPORT_FLAGS: tuple[Flag, ...] = (
    Flag("task", "--task", "task to export for (default: auto-detected from the model)"),
    Flag("backend", "--backend", "neuron (Inferentia/Trainium), inductor or torchscript (portable); auto picks neuron where a Neuron device is present"),
    Flag("device", "--device", "device of the portable backends", choices=DEVICES),
    Flag("instance_type", "--instance_type", "compile for this Neuron instance on a host without a Neuron device (no validation possible)", choices=INSTANCE_TYPES),
    Flag("atol", "--atol", "validation tolerance (default: per model family)", type=float),
    Flag("cache_dir", "--cache_dir", "Hugging Face cache folder for hub downloads"),
    Flag("trust_remote_code", "--trust-remote-code", "allow models that ship their own code (runs that code)", "switch"),
    Flag("compiler_workdir", "--compiler_workdir", "keep the compiler's intermediate files in this folder"),
    Flag("disable_validation", "--disable-validation", "skip validation against eager PyTorch", "switch"),
    Flag("auto_cast", "--auto_cast", "cast fp32 operations to a lower precision", choices=AUTO_CAST),
    Flag("auto_cast_type", "--auto_cast_type", "the lower precision of --auto_cast (default bf16)", choices=AUTO_CAST_TYPES),
    Flag("dynamic_batch_size", "--dynamic-batch-size", "accept other batch sizes than the compiled one", "switch"),
    Flag("num_cores", "--num_cores", "NeuronCores for tensor parallelism (optimum-cli's; not supported: ignored with a warning)", type=int),
    Flag("unet", "--unet", "replace the UNet of a Stable Diffusion pipeline with this folder"),
    Flag("lora_model_ids", "--lora_model_ids", "LoRA folders fused into the Stable Diffusion UNet and text encoder(s) at compile time", "list"),
    Flag("lora_weight_names", "--lora_weight_names", "the LoRA file in each folder (default: pytorch_lora_weights.safetensors)", "list"),
    Flag("lora_adapter_names", "--lora_adapter_names", "a name for each LoRA (required for several)", "list"),
    Flag("lora_scales", "--lora_scales", "the weight of each LoRA, baked in (default 1.0)", "list", type=_lora_scale),
    Flag("classifier_free_guidance", "--no-classifier-free-guidance", "Stable Diffusion: compile the UNet for one row per image, "
         "to run at guidance_scale <= 1 only (SDXL Turbo: 0)", "negated"),
    Flag("controlnet_ids", "--controlnet_ids", "ControlNets (folders or hub ids, space- or comma-separated) added to a Stable Diffusion pipeline, each compiled", "list"),
    Flag("output_hidden_states", "--output_hidden_states", "also output the hidden states", "switch"),
    Flag("output_attentions", "--output_attentions", "also output the attentions", "switch"),
    _shape("batch_size", "batch size"),
    _shape("sequence_length", "sequence length (text); auto:LOW-HIGH lets a cost model pick the buckets"),
    Flag("length_histogram", "--length_histogram", "lengths of your traffic (JSON {length: count}, or one length per line): "
         "--sequence_length auto:LOW-HIGH then picks the buckets that pad them least"),
    _shape("num_beams", "number of beams (text generation; not exported by this tool)"),
    _shape("num_choices", "number of choices (multiple-choice)"),
    _shape("num_channels", "image channels (vision)"),
    _shape("width", "image width (vision: default the image processor's; stable diffusion)"),
    _shape("height", "image height (vision: default the image processor's; stable diffusion)"),
    _shape("num_images_per_prompt", "images per prompt (stable diffusion)"),
    _shape("audio_sequence_length", "audio samples per input (audio; 16000 = 1 s at 16 kHz)"),
    _shape("text_batch_size", "texts per call (CLIP; zero-shot: the most labels)"),
    _shape("image_batch_size", "images per call (CLIP)"),
    Flag("optlevel", "-O", "1: fast compile; 2: balance (default); 3: more speed, longer compile, more memory", "level"),
    Flag("force", "--force", "replace an existing artifact in OUTPUT", "switch"),
    Flag("use_cache", "--no-cache", "always compile; do not use the compile cache", "negated"),
    Flag("cpu_isa", "--cpu_isa", "CPU code for this host only (native, default) or for any CPU with avx2 / avx512 (inductor)", choices=CPU_ISAS),
    Flag("quantize", "--quantize", "int8-dynamic: linear layers in int8, activations quantized at each call (inductor, x86)", choices=QUANTIZATIONS),
    Flag("threads", "--threads", "CPU threads the artifact's GEMM kernels are split for (inductor, AVX2 code; default: this host's cores)", type=int),
)
OPTLEVEL_HELP = {1: "fast compile", 2: "balance (default)", 3: "more speed, longer compile, more memory"}


def add_export_parser(commands) -> None:
    from .backends import BACKENDS

    p = commands.add_parser("export", help="compile a model into an artifact folder and validate it")
    p.add_argument("-m", "--model", required=True, help="hub id, local model folder, or demo:NAME (see demo-models)")
    p.add_argument("output", help="folder to write the compiled artifact to")
    for flag in EXPORT_FLAGS:
        if flag.kind == "level":
            level = p.add_mutually_exclusive_group()
            for n, what in OPTLEVEL_HELP.items():
                level.add_argument(f"-O{n}", dest=flag.field, action="store_const", const=n, help=what)
        elif flag.kind in ("switch", "negated"):
            p.add_argument(flag.flag, dest=flag.field, action="store_true" if flag.kind == "switch" else "store_false", help=flag.help)
        elif flag.kind == "list":
            p.add_argument(flag.flag, dest=flag.field, nargs="+", type=flag.type, help=flag.help)
        else:
            choices = ("auto", *BACKENDS) if flag.field == "backend" else flag.choices
            p.add_argument(flag.flag, dest=flag.field, type=flag.type, choices=choices, help=flag.help)
    p.add_argument("--events", help=argparse.SUPPRESS)  # JSON-lines progress for the dashboard's job runner
    add_executor_arguments(p)
    p.set_defaults(handler=run_export, **{f.name: f.default for f in dataclasses.fields(ExportOptions)})


def export_argv(model: str, output: str | Path, options: ExportOptions) -> list[str]:
    """The `export` sub-command's arguments for these options (what the dashboard's jobs run)."""
    defaults = ExportOptions()
    argv = ["export", "--model", model, str(output)]
    for flag in EXPORT_FLAGS:
        value = getattr(options, flag.field)
        if value == getattr(defaults, flag.field):
            continue
        if flag.kind == "level":
            argv.append(f"-O{value}")
        elif flag.kind in ("switch", "negated"):
            argv.append(flag.flag)
        elif flag.kind == "list":
            argv += [flag.flag, *map(str, value)]
        else:
            argv += [flag.flag, format_shape_value(value) if isinstance(value, tuple) else str(value)]
    return argv


def run_export(args: argparse.Namespace) -> int:
    from .export import export
    from .export.executor import make_executor

    events = EventFile(args.events)
    options = ExportOptions.from_dict({k: v for k, v in vars(args).items() if k not in ("model", "output")})
    try:
        result = export(args.model, args.output, options, on_event=events.write, executor=make_executor(args.executor, args.ray_address))
    except NeuronExportError as error:
        events.write({"type": "error", "message": str(error), "exit_code": error.exit_code})
        raise
    events.write({"type": "done", "artifact": str(result.artifact), "validation_passed": result.validation_passed})
    if result.validation_passed is False:
        print(f"error: validation failed for {', '.join(result.failed_checks)}; the artifact and its report are kept in {result.artifact}", file=sys.stderr)
        return 1
    return 0


class EventFile:
    def __init__(self, path: Optional[str]):
        self.path = path

    def write(self, event: dict[str, Any]) -> None:
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(event, default=str) + "\n")


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    from .export.executor import EXECUTORS

    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: build here (default); ray: each component and bucket as a task on a Ray cluster")
    p.add_argument("--ray_address", help="the Ray cluster (default $NEURON_EXPORT_RAY_ADDRESS, else a local one on loopback)")


def add_sweep_parser(commands) -> None:
    from .sweep import run_sweep

    p = commands.add_parser("sweep", help="compile a list of exports from a YAML plan and print what succeeded, failed or hit the cache")
    p.add_argument("plan", help="YAML file with a top-level `exports:` list (see the README)")
    add_executor_arguments(p)
    p.set_defaults(handler=run_sweep)


def add_tasks_parser(commands) -> None:
    p = commands.add_parser("tasks", help="list the tasks an architecture (or model folder) can be exported for")
    p.add_argument("model", help="a model_type such as distilbert, or a model folder")
    p.set_defaults(handler=run_tasks)


def run_tasks(args: argparse.Namespace) -> int:
    from transformers import CONFIG_MAPPING

    from .model_info import inspect_model
    from .registry import ARCHITECTURES, supported_tasks

    if args.model in ARCHITECTURES or args.model in CONFIG_MAPPING:
        tasks = supported_tasks(args.model)
    else:  # a folder, demo:NAME or hub id: what its files export for (a sentence-transformers folder: its embeddings)
        tasks = inspect_model(args.model).tasks
    for task in tasks:
        print(task)
    return 0


def add_demo_parser(commands) -> None:
    p = commands.add_parser("demo-models", help="list the built-in demo models (no hub needed)")
    p.set_defaults(handler=run_demo_models)


def run_demo_models(args: argparse.Namespace) -> int:
    from .demo import DEMO_MODELS

    width = max(len(name) for name in DEMO_MODELS)
    for demo in DEMO_MODELS.values():
        print(f"{demo.name:<{width}}  {demo.task:<22}  {demo.description}")
    return 0


def add_cache_parser(commands) -> None:
    p = commands.add_parser("cache", help="list or clear the compile cache ($NEURON_EXPORT_CACHE, default ~/.cache/neuron_export/compiled)")
    p.add_argument("action", choices=("list", "clear"), help="list the stored artifacts, or delete them all")
    p.set_defaults(handler=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    from .export.cache import CompileCache

    cache = CompileCache()
    if args.action == "clear":
        count, size = cache.clear()
        print(f"Removed {count} compile cache entries ({_megabytes(size)}) from {cache.root}")
        return 0
    entries = cache.entries()
    print(f"Compile cache {cache.root}: {len(entries)} entries, {_megabytes(sum(e.size for e in entries))}")
    for entry in entries:
        record = entry.record
        if "corrupt" in record:
            print(f"{entry.key[:12]}  corrupt ({record['corrupt']}); it will be recompiled on use")
            continue
        shapes = " ".join(f"{k}={v}" for k, v in (record.get("shapes") or {}).items())
        print(f"{entry.key[:12]}  {_megabytes(entry.size):>9}  {record.get('stored', '')}  {record.get('task')}  "
              f"{record.get('backend')}  {shapes}  {record.get('source')}")
    return 0


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def add_benchmark_parser(commands) -> None:
    from .benchmark.command import add_benchmark_parser as add  # the benchmark package imports torch: only when parsing

    add(commands)


def add_doctor_parser(commands) -> None:
    p = commands.add_parser("doctor", help="what this host can compile and run (torch, torch-neuronx, devices, backends), with fixes")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    p.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    """Exit 0 when some backend can both compile and run here, else 1."""
    from .doctor import gather

    report = gather()
    print(json.dumps(report.to_dict(), indent=2) if args.json else "\n".join(report.lines()))
    return 0 if report.ok else 1


def add_download_parser(commands) -> None:
    p = commands.add_parser("download", help="download a precompiled Neuron model (optimum-neuron's layout) from the Hugging Face Hub")
    p.add_argument("repo_id", help="the model's id on the Hub, e.g. aws-neuron/bert-base-uncased-finetuned-sst2-neuron")
    p.add_argument("output", help="folder to write it to")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--force", action="store_true", help="replace an existing artifact in OUTPUT")
    p.add_argument("--events", help=argparse.SUPPRESS)  # JSON-lines progress for the dashboard's job runner
    p.set_defaults(handler=run_download)


def run_download(args: argparse.Namespace) -> int:
    from .hub import download_precompiled

    events = EventFile(args.events)
    try:
        artifact = download_precompiled(args.repo_id, args.output, force=args.force, revision=args.revision)
    except NeuronExportError as error:
        events.write({"type": "error", "message": str(error), "exit_code": error.exit_code})
        raise
    events.write({"type": "done", "artifact": str(artifact)})
    return 0


# Each entry adds one sub-command; its parser sets `handler`.
COMMANDS: list[Callable[[Any], None]] = [add_export_parser, add_tasks_parser, add_demo_parser, add_cache_parser, add_benchmark_parser,
                                         add_doctor_parser, add_download_parser, add_sweep_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="neuron-export", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    # The job runner cancels with SIGTERM: unwind like Ctrl-C so temporary folders are removed.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return args.handler(args)
    except NeuronExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        # The temporary folder is gone already. Exit now: compiler worker pools and threads left
        # mid-compile can re-raise the interrupt during interpreter shutdown (exit status -2).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    except Exception as error:  # never a traceback on screen; the debug switch shows it
        if os.environ.get("NEURON_EXPORT_DEBUG"):
            raise
        print(f"error: internal error ({type(error).__name__}: {first_line(error)}); set NEURON_EXPORT_DEBUG=1 for the traceback", file=sys.stderr)
        return EXIT_INTERNAL


def _raise_interrupt(signum, frame) -> None:
    # Unwind once: a second SIGTERM (e.g. from compiler worker pools shutting down) must not
    # interrupt the cleanup or escape at exit; a stuck process still yields to SIGKILL.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # An exception raised while a __del__ runs is swallowed ("Exception ignored in ..."), and the
    # export would carry on: until the process exits, interrupt its main thread again now and then.
    threading.Thread(target=_interrupt_again, daemon=True).start()
    raise KeyboardInterrupt


def _interrupt_again() -> None:
    while True:
        time.sleep(INTERRUPT_AGAIN_S)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal: it also wakes a main thread blocked in a call


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("transformers", "torch", "huggingface_hub", "diffusers", "torchao"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")  # diffusers sets its loggers' level from it when first imported
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:
        pass
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
