"""Stand-in `neuronx-cc` driver (tests only): the documented command line and nothing else.

Flags and values from the neuronx-cc API reference (awsdocs-neuron, compiler/neuronx-cc/
api-reference-guide): an unknown flag, a misspelt value (`--auto-cast matmul`: the compiler's
spelling is `matmult`) or a missing required one fails like the compiler, with a usage error and a
non-zero exit status. A passing compile writes its output file and log and prints the status.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Optional, Sequence

import neuronxcc

TARGETS = ("inf2", "trn1", "trn1n", "trn2")
LEVELS = ("debug", "info", "warning", "error", "critical")
EXIT_ARGUMENT_ERROR = 70  # NCC_EARG001: an argument the target does not support


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neuronx-cc", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"NeuronX Compiler version {neuronxcc.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    compile_ = commands.add_parser("compile", allow_abbrev=False)
    compile_.add_argument("model_files", nargs="+")
    compile_.add_argument("--framework", required=True, choices=("XLA",))
    compile_.add_argument("--target", required=True, choices=TARGETS)
    compile_.add_argument("--model-type", choices=("generic", "transformer", "unet-inference"), default="generic")
    compile_.add_argument("--auto-cast", choices=("none", "matmult", "all"), default="none")
    compile_.add_argument("--auto-cast-type", choices=("bf16", "fp16", "tf32", "fp8_e4m3"), default="bf16")
    compile_.add_argument("--optlevel", "-O", choices=("1", "2", "3"), default="2")
    compile_.add_argument("--logical-nc-config", "-lnc", choices=("1", "2"))
    compile_.add_argument("--native-int64", choices=("default", "enabled", "disabled"))
    compile_.add_argument("--implicit-integer-downcast")
    compile_.add_argument("--distribution-strategy", choices=("llm-training",))
    precision = compile_.add_mutually_exclusive_group()
    precision.add_argument("--enable-mixed-precision-accumulation", action="store_true")
    precision.add_argument("--disable-mixed-precision-accumulation", action="store_true")
    for switch in ("--enable-saturate-infinity", "--enable-fast-context-switch", "--enable-fast-loading-neuron-binaries"):
        compile_.add_argument(switch, action="store_true")
    compile_.add_argument("--logfile", default="log-neuron-cc.txt")
    compile_.add_argument("--output", default="file.neff")
    compile_.add_argument("--verbose", type=str.lower, choices=LEVELS, default="warning")
    commands.add_parser("list-operators", allow_abbrev=False).add_argument("--framework", required=True, choices=("XLA",))
    return parser


def main(argv: Optional[Sequence[str]] = None, cwd: Optional[Path] = None) -> int:
    """Run the driver; the exit status (relative paths are under `cwd`, as when run there)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command != "compile":
        return 0
    base = Path(cwd or ".")
    if args.logical_nc_config == "2" and args.target != "trn2":
        print(f"[NCC_EARG001] --logical-nc-config 2 is not supported on {args.target}", file=sys.stderr)
        return EXIT_ARGUMENT_ERROR
    missing = [f for f in args.model_files if not (base / f).is_file()]
    if missing:
        print(f"[NCC_EARG002] input file not found: {missing[0]}", file=sys.stderr)
        return EXIT_ARGUMENT_ERROR
    (base / args.output).write_bytes(b"NEFF (stand-in)\n")
    with contextlib.suppress(OSError):
        (base / args.logfile).write_text(f"neuronx-cc {neuronxcc.__version__}: {' '.join(argv or [])}\nCompiler status PASS\n")
    print("Compiler status PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
