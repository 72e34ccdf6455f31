"""Install the stand-in Neuron SDK (tests/neuron/standin) into a folder, as pip would install the real one.

`install_sdk(root)` writes `root/site` (the torch_neuronx and neuronxcc packages with their
dist-info, so importlib.metadata sees versions like the real ones) and `root/bin` (neuron-ls,
neuronx-cc). Variants reproduce the broken installs a user meets: PyPI's placeholders (the exact
files of torch-neuronx 1.0 and neuronx-cc 1.0.post1), a torch-neuronx built for another torch,
one that fails to load, or none at all.

`emulated_inf2(command, sdk)` runs a command as on an inf2.xlarge: in a private mount namespace
(`unshare --mount --propagation private`, root only) whose /dev holds a `neuron0` node; the host's
own /dev is untouched. The stand-in neuron-ls reports the instance type (as the real one does from
the instance metadata) from NEURON_STANDIN_INSTANCE_TYPE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from support import ROOT

STANDIN = Path(__file__).resolve().parent / "standin"
COMPILER_VERSION = "2.21.33363.0+82129205"
SDK_RELEASE = "2.15.0"  # the Neuron part of torch-neuronx's version: 2.9.0 + 2.15.0 for torch 2.9
PLACEHOLDER = 'raise ImportError("WRONG PACKAGE. Please install the package from Neuron Repository - pip.repos.neuron.amazonaws.com")\n'
BROKEN = 'raise OSError("libnrt.so.1: cannot open shared object file: No such file or directory")\n'
RUNTIME_MODULES = ("_neuron_standin_runtime.py", "_neuron_standin_devices.py")


@dataclass(frozen=True)
class StandinSdk:
    root: Path
    site: Path
    bin: Path
    torch_neuronx_version: Optional[str]
    compiler_version: Optional[str]

    def env(self, base: Optional[dict] = None) -> dict:
        """The environment of a process that has this SDK installed (its own code first on the path)."""
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(self.site)])
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        env.pop("NEURON_PLATFORM_TARGET_OVERRIDE", None)
        return env


def _dist_info(site: Path, name: str, version: str) -> None:
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def install_sdk(root: Path, torch_neuronx: str = "real", neuronx_cc: str = "real", built_for: Optional[str] = None,
                compiler_version: str = COMPILER_VERSION) -> StandinSdk:
    """torch_neuronx: real | placeholder | broken | missing; neuronx_cc: real | placeholder | missing;
    built_for: the torch version a real torch-neuronx is built for (default: the running torch)."""
    site, bin_ = root / "site", root / "bin"
    site.mkdir(parents=True)
    bin_.mkdir()
    for module in RUNTIME_MODULES:
        shutil.copy2(STANDIN / module, site / module)
    neuronx_version = None
    if torch_neuronx != "missing":
        neuronx_version = "1.0" if torch_neuronx == "placeholder" else f"{built_for or torch.__version__.split('+')[0]}.{SDK_RELEASE}"
        shutil.copytree(STANDIN / "torch_neuronx", site / "torch_neuronx", ignore=shutil.ignore_patterns("__pycache__"))
        if torch_neuronx != "real":
            (site / "torch_neuronx" / "__init__.py").write_text(PLACEHOLDER if torch_neuronx == "placeholder" else BROKEN)
        _dist_info(site, "torch-neuronx", neuronx_version)
    installed_compiler = None
    if neuronx_cc == "real":
        installed_compiler = compiler_version
        shutil.copytree(STANDIN / "neuronxcc", site / "neuronxcc", ignore=shutil.ignore_patterns("__pycache__"))
        _dist_info(site, "neuronx-cc", compiler_version)
    elif neuronx_cc == "placeholder":  # the PyPI wheel installs a folder named `neuronx-cc`: nothing imports as neuronxcc
        (site / "neuronx-cc").mkdir()
        (site / "neuronx-cc" / "__init__.py").write_text(PLACEHOLDER)
        _dist_info(site, "neuronx-cc", "1.0.post1")
    for tool in ("neuron-ls", "neuronx-cc"):
        if tool == "neuronx-cc" and neuronx_cc != "real":
            continue
        script = bin_ / tool
        script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(site)!r})\n" + (STANDIN / "bin" / tool).read_text())
        script.chmod(0o755)
    return StandinSdk(root, site, bin_, neuronx_version, installed_compiler)


# A private /dev: a tmpfs with the usual character devices bound in, shm and pts kept, and neuron0.
_PRIVATE_HOST = r"""
set -e
old=$(mktemp -d)
mount --rbind /dev "$old"
mount -t tmpfs -o mode=755,size=1m neuron-emulation /dev
for node in null zero full random urandom tty; do
  if [ -e "$old/$node" ]; then touch "/dev/$node"; mount --bind "$old/$node" "/dev/$node"; fi
done
mkdir /dev/shm /dev/pts
mount --rbind "$old/shm" /dev/shm
mount --rbind "$old/pts" /dev/pts
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
touch /dev/neuron0
exec "$@"
"""


def emulation_problem() -> Optional[str]:
    """None when this host can emulate an inf2 device, else why not (a reason to skip)."""
    if os.geteuid() != 0:
        return "emulating a Neuron device needs root (a private mount namespace)"
    if shutil.which("unshare") is None:
        return "emulating a Neuron device needs util-linux's unshare"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --mount is not permitted here: {probe.stderr.strip()}"
    return None


def emulated_inf2(command: list[str], sdk: StandinSdk, instance_type: str = "inf2.xlarge", **run) -> subprocess.CompletedProcess:
    """Run `command` on an emulated inf2 host with the stand-in SDK installed."""
    env = sdk.env(run.pop("env", None))
    env["NEURON_STANDIN_INSTANCE_TYPE"] = instance_type
    wrapped = ["unshare", "--mount", "--propagation", "private", "bash", "-c", _PRIVATE_HOST, "emulated-inf2", *command]
    return subprocess.run(wrapped, env=env, **run)
