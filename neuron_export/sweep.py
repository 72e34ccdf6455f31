"""`neuron-export sweep PLAN.yaml`: a list of exports (models x shapes x backends x options), each
entry on its own, then a table of what succeeded, failed or hit the compile cache.

The plan is YAML with a top-level `exports:` list; each entry has `model` and `output` and any export
option under its CLI name with underscores (`task`, `backend`, `batch_size`, `no_cache`,
`disable_validation`, `optlevel`, ...). Every entry is checked by the export command's own parser
before anything runs, so a bad plan is one line naming the entry. A failing entry does not stop the
others. With --executor ray each entry is one Ray task (its components are built in that task: a
task waiting on tasks of its own could hold every CPU of a small cluster and never finish).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import NeuronExportError, first_line
from .options import ExportOptions

EXIT_SOME_FAILED = 1


@dataclass
class SweepEntry:
    label: str  # "entry 2 (demo:tiny-bert)"
    model: str
    output: str
    options: ExportOptions


@dataclass
class SweepOutcome:
    status: str  # ok | cache hit | failed
    seconds: float
    detail: str = ""


class _EntryParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def _export_parser() -> argparse.ArgumentParser:
    from .cli import add_export_parser

    commands = _EntryParser(prog="sweep").add_subparsers(dest="command", parser_class=_EntryParser)
    add_export_parser(commands)
    return commands.choices["export"]


def _option_flags() -> dict[str, Any]:
    """Plan key -> export flag: its CLI name with underscores (--no-cache: no_cache; -O: optlevel)."""
    from .cli import EXPORT_FLAGS

    return {("optlevel" if f.kind == "level" else f.flag.lstrip("-").replace("-", "_")): f for f in EXPORT_FLAGS}


def _entry_argv(label: str, entry: Any, flags: dict[str, Any]) -> list[str]:
    if not isinstance(entry, dict):
        raise NeuronExportError(f"{label}: expected a mapping with model, output and export options")
    for key in ("model", "output"):
        if not isinstance(entry.get(key), (str, int)) or not str(entry[key]).strip():
            raise NeuronExportError(f"{label}: `{key}` is missing")
    argv = ["--model", str(entry["model"]), str(entry["output"])]
    for key, value in entry.items():
        if key in ("model", "output"):
            continue
        flag = flags.get(key)
        if flag is None:
            raise NeuronExportError(f"{label}: unknown option {key!r} (export options, CLI names with underscores: {', '.join(sorted(flags))})")
        if flag.kind == "level":
            argv.append(f"-O{value}")
        elif flag.kind in ("switch", "negated"):
            if not isinstance(value, bool):
                raise NeuronExportError(f"{label}: {key} is true or false, not {value!r}")
            argv += [flag.flag] if value else []
        else:
            argv += [flag.flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return argv


def load_plan(path: str | Path) -> list[SweepEntry]:
    """The plan's entries, each checked as the export command checks its arguments (one-line errors)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise NeuronExportError(f"cannot read the sweep plan {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise NeuronExportError(f"{path} is not valid YAML: {first_line(error)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("exports"), list) or not data["exports"]:
        raise NeuronExportError(f"{path}: expected a top-level `exports:` list of exports")
    parser, flags, entries, outputs = _export_parser(), _option_flags(), [], {}
    for number, entry in enumerate(data["exports"], 1):
        label = f"entry {number}" + (f" ({entry.get('model')})" if isinstance(entry, dict) and entry.get("model") else "")
        argv = _entry_argv(label, entry, flags)
        try:
            args = parser.parse_args(argv)
        except ValueError as error:
            raise NeuronExportError(f"{label}: {error}") from None
        output = str(Path(args.output).expanduser().resolve())
        if output in outputs:
            raise NeuronExportError(f"{label}: output {args.output} is also the output of entry {outputs[output]}")
        outputs[output] = number
        options = ExportOptions.from_dict({k: v for k, v in vars(args).items() if k not in ("model", "output")})
        entries.append(SweepEntry(label, args.model, args.output, options))
    return entries


def run_entry(entry: SweepEntry) -> SweepOutcome:
    """One export of the sweep (here, or inside a Ray task): its outcome, never an exception."""
    from .export import export

    start = time.perf_counter()
    try:
        result = export(entry.model, entry.output, entry.options)
    except NeuronExportError as error:
        return SweepOutcome("failed", time.perf_counter() - start, first_line(error, 160))
    except Exception as error:  # one entry's crash is reported with the others, not raised
        return SweepOutcome("failed", time.perf_counter() - start, f"internal error ({type(error).__name__}: {first_line(error, 120)})")
    seconds = time.perf_counter() - start
    if result.validation_passed is False:
        return SweepOutcome("failed", seconds, f"validation failed (artifact kept in {result.artifact})")
    return SweepOutcome("cache hit" if result.cache_hit else "ok", seconds, str(result.artifact))


def run_sweep_entries(entries: list[SweepEntry], executor: str, address: Optional[str]) -> list[SweepOutcome]:
    if executor == "local":
        if address:
            raise NeuronExportError("--ray_address needs --executor ray")
        return [run_entry(entry) for entry in entries]
    from .farm.cluster import connect
    from .farm.executor import entry_task_options
    from ray.exceptions import RayError

    ray = connect(address)
    refs = [ray.remote(run_entry).options(name=f"neuron_export:sweep:{e.label}", **entry_task_options(e.options)).remote(e)
            for e in entries]
    outcomes = []
    try:
        for entry, ref in zip(entries, refs):
            try:
                outcomes.append(ray.get(ref))
            except RayError as error:  # its worker died (killed, out of memory), also when Ray ran it again
                outcomes.append(SweepOutcome("failed", 0.0, f"Ray task failed: {first_line(error, 120)}"))
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    return outcomes


def format_table(entries: list[SweepEntry], outcomes: list[SweepOutcome]) -> str:
    rows = [("#", "model", "output", "result", "time", "detail")]
    rows += [(str(i), e.model, e.output, o.status, f"{o.seconds:.1f} s", o.detail) for i, (e, o) in enumerate(zip(entries, outcomes), 1)]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    counts = {status: sum(o.status == status for o in outcomes) for status in ("ok", "cache hit", "failed")}
    return "\n".join([*lines, "Summary: " + ", ".join(f"{n} {status}" for status, n in counts.items())])


def run_sweep(args: argparse.Namespace) -> int:
    if args.executor == "ray":
        from .farm.cluster import import_ray

        import_ray()  # missing: one line naming the install, before the plan is read
    entries = load_plan(args.plan)
    outcomes = run_sweep_entries(entries, args.executor, args.ray_address)
    print(format_table(entries, outcomes), flush=True)
    return EXIT_SOME_FAILED if any(o.status == "failed" for o in outcomes) else 0
