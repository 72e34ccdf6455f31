"""The Neuron SDK's Python packages on this host: torch-neuronx and neuronx-cc, real or not, and why.

The real packages come from AWS's own index; PyPI's packages of the same names are placeholders
(torch-neuronx 1.0 raises "WRONG PACKAGE" on import; neuronx-cc 1.0.post1 installs no `neuronxcc`
module). A real torch-neuronx is built for one torch release, which its version starts with
("2.9.0.2.15.x" is for torch 2.9): under another torch it does not load (or worse, crashes), so
that case is recognised from the package's metadata before anything imports it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import first_line
from .portable import torch_release  # '2.9.0.2.15.1' -> '2.9' too

NEURON_INDEX = "https://pip.repos.neuron.amazonaws.com"
PLACEHOLDER_VERSIONS = {"torch-neuronx": ("1.0",), "neuronx-cc": ("1.0.post1",)}
PLACEHOLDER_MESSAGE = "WRONG PACKAGE"
INSTALL = f'pip install --extra-index-url {NEURON_INDEX} "torch==2.9.*" torch-neuronx neuronx-cc'
INSTALL_HINT = (
    f"install the real Neuron SDK on an inf2/trn1 instance: {INSTALL} "
    "(PyPI's packages of those names are placeholders), then this project with requirements-neuron.txt, which keeps that torch"
)


@dataclass(frozen=True)
class PackageState:
    """One Neuron package: state is real | placeholder | missing | broken | other-torch."""

    name: str
    state: str
    version: Optional[str] = None
    detail: str = ""  # the import error, or the torch a build is for
    fix: Optional[str] = None  # what to do; None when nothing is wrong

    @property
    def ok(self) -> bool:
        return self.state == "real"

    @property
    def problem(self) -> Optional[str]:
        """One line: what is wrong (None when it is real)."""
        if self.ok:
            return None
        return {
            "missing": f"{self.name} is not installed",
            "placeholder": f"the installed {self.name} {self.version or ''} is PyPI's placeholder, not the Neuron SDK".replace("  ", " "),
            "other-torch": f"{self.name} {self.version} {self.detail}",
            "broken": f"{self.name} does not import ({self.detail})",
        }[self.state]


def _installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_neuronx_state() -> PackageState:
    """Whether torch_neuronx is the real SDK and imports under this torch (imports it when it can)."""
    name = "torch-neuronx"
    version = _installed_version(name)
    if version in PLACEHOLDER_VERSIONS[name]:
        return PackageState(name, "placeholder", version, fix=f"pip uninstall -y {name}, then {INSTALL}")
    built_for = torch_release(version) if version and version.count(".") >= 3 else None
    if built_for and built_for != torch_release(torch.__version__):
        detail = f"is built for torch {built_for} and this environment has torch {torch.__version__} (an install replaced AWS's torch)"
        fix = (f'pip install --extra-index-url {NEURON_INDEX} "torch=={built_for}.*" {name}=={version}; '
               "install this project with requirements-neuron.txt, which keeps that torch")
        return PackageState(name, "other-torch", version, detail, fix)
    try:
        module = importlib.import_module("torch_neuronx")
    except ModuleNotFoundError as error:
        if error.name != "torch_neuronx":  # the package is there, one of its own imports is not
            return PackageState(name, "broken", version, first_line(error), f"reinstall it: {INSTALL}")
        return PackageState(name, "missing", fix=INSTALL_HINT)
    except Exception as error:  # a broken install fails with any error type
        if PLACEHOLDER_MESSAGE in str(error):
            return PackageState(name, "placeholder", version, fix=f"pip uninstall -y {name}, then {INSTALL}")
        return PackageState(name, "broken", version, f"{type(error).__name__}: {first_line(error)}", f"reinstall it: {INSTALL}")
    return PackageState(name, "real", version or getattr(module, "__version__", None), f"built for torch {built_for or 'unknown'}")


def neuronx_cc_state() -> PackageState:
    """Whether the Neuron compiler (the `neuronxcc` module of the neuronx-cc package) is the real one."""
    name = "neuronx-cc"
    version = _installed_version(name)
    if version in PLACEHOLDER_VERSIONS[name]:
        return PackageState(name, "placeholder", version, fix=f"pip uninstall -y {name}, then {INSTALL}")
    try:
        module = importlib.import_module("neuronxcc")
    except ModuleNotFoundError as error:
        if error.name != "neuronxcc":
            return PackageState(name, "broken", version, first_line(error), f"reinstall it: {INSTALL}")
        return PackageState(name, "missing", fix=INSTALL_HINT)
    except Exception as error:
        return PackageState(name, "broken", version, f"{type(error).__name__}: {first_line(error)}", f"reinstall it: {INSTALL}")
    return PackageState(name, "real", str(getattr(module, "__version__", None) or version or "unknown"))


def compiler_version_tuple(text: str) -> Optional[tuple[int, ...]]:
    """'neuronx-cc 2.21.18209.0+043b1bf7' or '2.21.18209.0' -> (2, 21, 18209, 0); None when there is no version."""
    word = text.split()[-1] if text.split() else ""
    numbers = []
    for part in word.split("+")[0].split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers) or None
