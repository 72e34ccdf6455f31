"""`neuron-export doctor`: what this host can compile and run, one fact per line, each with its fix.

The same facts feed the dashboard's System page. Gathering them imports torch-neuronx when it is
usable (to know that it is) and runs `neuron-ls` when there is a device; nothing else is started.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch

from . import cpu, neuron_host
from .backends import BACKENDS
from .backends.neuron_sdk import neuronx_cc_state, torch_neuronx_state

GB = 1024**3
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")  # the ones compiled CPU kernels care about


@dataclass(frozen=True)
class Fact:
    name: str
    value: str
    ok: bool = True
    fix: Optional[str] = None

    def line(self) -> str:
        fix = f" — fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.value}{fix}"


@dataclass(frozen=True)
class BackendFacts:
    name: str
    is_neuron: bool
    compile_problem: Optional[str]  # None: it can compile here
    run_problem: Optional[str]  # None: what it compiles can run here
    note: str

    @property
    def can_compile(self) -> bool:
        return self.compile_problem is None

    @property
    def can_run(self) -> bool:
        return self.run_problem is None

    def line(self) -> str:
        parts = ["compiles here" if self.can_compile else f"cannot compile here ({self.compile_problem})",
                 "runs here" if self.can_run else f"cannot run here ({self.run_problem})"]
        mark = "✓" if self.can_compile and self.can_run else "~" if self.can_compile else "✗"
        note = f" — {self.note}" if self.note else ""
        return f"{mark} backend {self.name}: {'; '.join(parts)}{note}"


@dataclass(frozen=True)
class Report:
    facts: list[Fact]
    backends: list[BackendFacts]

    @property
    def ok(self) -> bool:
        """Some backend can both compile and run here."""
        return any(b.can_compile and b.can_run for b in self.backends)

    def lines(self) -> list[str]:
        verdict = ("this host can compile and run with: " + ", ".join(b.name for b in self.backends if b.can_compile and b.can_run)
                   if self.ok else "no backend can both compile and run here")
        return [f.line() for f in self.facts] + [b.line() for b in self.backends] + [f"{'✓' if self.ok else '✗'} {verdict}"]

    def to_dict(self) -> dict[str, Any]:
        backends = [{**asdict(b), "can_compile": b.can_compile, "can_run": b.can_run} for b in self.backends]
        return {"ok": self.ok, "facts": [asdict(f) for f in self.facts], "backends": backends}


def gather() -> Report:
    host = neuron_host.survey()
    facts = [_python(), _torch(), *_neuron_packages(host), *_neuron_devices(host), _cpu(), _cuda()]
    backends = []
    for backend in BACKENDS.values():
        support = backend.host_support()
        backends.append(BackendFacts(backend.name, backend.is_neuron, support.compile, support.run, support.note))
    return Report(facts, backends)


def _python() -> Fact:
    return Fact("python", f"{platform.python_version()} ({sys.prefix})")


def _torch() -> Fact:
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    return Fact("torch", f"{torch.__version__} ({build})")


def _neuron_packages(host: neuron_host.NeuronHost) -> list[Fact]:
    facts = []
    for state in (torch_neuronx_state(), neuronx_cc_state()):
        if state.ok:
            detail = f" ({state.detail})" if state.detail else ""
            facts.append(Fact(state.name, f"{state.version}{detail}"))
        elif state.state == "missing":
            # Needed to compile for Neuron (anywhere) and to run on it; expected to be absent elsewhere.
            needed = bool(host.nodes)
            value = "not installed" + ("" if needed else " (needed only to compile for or run on Neuron)")
            facts.append(Fact(state.name, value, not needed, state.fix))
        else:
            facts.append(Fact(state.name, state.problem or state.state, False, state.fix))
    return facts


def _neuron_devices(host: neuron_host.NeuronHost) -> list[Fact]:
    if not host.nodes:
        return [Fact("Neuron devices", "none (no /dev/neuron*): Neuron artifacts can be compiled here with --instance_type, not run")]
    where = f" on an {host.instance}" if host.instance else ""
    facts = [Fact("Neuron devices", f"{len(host.nodes)} ({', '.join(host.nodes)}){where}")]
    if host.neuron_ls is None:
        facts.append(Fact("NeuronCores", f"{len(host.cores)} (neuron-ls not found: counted from the devices)", False,
                          f"install the Neuron tools (aws-neuronx-tools), which put neuron-ls in {neuron_host.NEURON_TOOLS_DIR}"))
    elif host.neuron_ls_problem:
        facts.append(Fact("NeuronCores", host.neuron_ls_problem, False,
                          "check the Neuron driver (aws-neuronx-dkms) is loaded: lsmod | grep neuron"))
    else:
        memory = sum(d.memory for d in host.devices) / GB
        facts.append(Fact("NeuronCores", f"{len(host.cores)} usable by this process ({sum(len(d.cores) for d in host.devices)} on "
                                         f"{len(host.devices)} device(s), {memory:,.0f} GiB device memory; neuron-ls)"))
    return facts


def _cpu() -> Fact:
    """torch's vector ISA, and the --cpu_isa levels an inductor artifact can be built for here (cpu.py's detector)."""
    present = [flag for flag in CPU_FLAGS if flag in cpu.cpu_flags()]
    level = cpu.host_level()
    builds = f"--cpu_isa native, or a portable level up to {level}" if level else "--cpu_isa native only"
    return Fact("CPU vector ISA", f"{torch.backends.cpu.get_cpu_capability()} as torch uses it ({platform.machine()}; {builds}"
                                  + (f"; {' '.join(present)}" if present else "") + ")")


def _cuda() -> Fact:
    if not torch.version.cuda:
        return Fact("CUDA", "not in this torch build (CPU only)")
    if not torch.cuda.is_available():
        return Fact("CUDA", f"torch built for CUDA {torch.version.cuda}; no GPU visible")
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return Fact("CUDA", f"{torch.cuda.device_count()} GPU(s): {names} (CUDA {torch.version.cuda})")
