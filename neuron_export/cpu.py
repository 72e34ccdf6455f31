"""This host's CPU: its vector ISA level, the flags an artifact's machine code needs, its cores.

AOTInductor CPU artifacts are machine code. Built with `--cpu_isa native` they may use every
extension of the build host (-march=native); `--cpu_isa avx2` / `avx512` build for the
x86-64-v3 / x86-64-v4 levels, so they run on any CPU that has that level. The manifest records the
flags an artifact needs, and loading compares them with this host's: a CPU below them is refused
with one line instead of dying of SIGILL in the middle of a call.

The host's flags come from /proc/cpuinfo, capped by what torch itself uses: with
ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU (how an AVX2-only host is emulated here), the AVX-512
flags count as absent, for torch's own kernels and for this check alike.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional



@dataclass(frozen=True)
class IsaLevel:
    name: str
    march: str  # the gcc -march of the level: everything in it may appear in the machine code
    simdlen: int  # Inductor's vector width (bits) for the level
    flags: tuple[str, ...]  # /proc/cpuinfo flags a CPU needs to run that code


_V2 = ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")
_V3 = _V2 + ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
ISA_LEVELS = {
    "avx2": IsaLevel("avx2", "x86-64-v3", 256, _V3),
    "avx512": IsaLevel("avx512", "x86-64-v4", 512, _V4),
}
# Flags of the vector extensions -march=native may use: what a native build needs from a CPU.
SIMD_FLAG_PREFIXES = ("sse", "ssse3", "avx", "fma", "f16c", "bmi", "abm", "movbe", "popcnt", "amx", "vaes", "vpclmulqdq",
                      "gfni", "sha_ni", "adx")
# Instructions (objdump mnemonics) of extensions beyond a level, and the flag each needs.
EXTRA_INSTRUCTIONS = {
    "vpdpbusd": "avx512_vnni", "vpdpwssd": "avx512_vnni",
    "vdpbf16ps": "avx512_bf16", "vcvtneps2bf16": "avx512_bf16", "vcvtne2ps2bf16": "avx512_bf16",
    "tdpbusd": "amx_int8", "tdpbssd": "amx_int8", "tdpbf16ps": "amx_bf16", "ldtilecfg": "amx_tile",
}
# torch's capability names and the flags it stops using below each.
_CAPPED_BY_TORCH = {"AVX2": ("avx512",), "DEFAULT": ("avx", "fma", "f16c", "amx")}


@functools.cache
def proc_cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_flags() -> set[str]:
    """The CPU's own flags (/proc/cpuinfo; torch's checks where there is none)."""
    return set(proc_cpuinfo().get("flags", "").split()) or _flags_from_torch()


def host_flags() -> frozenset[str]:
    """CPU flags this host offers to compiled code: the CPU's, minus those torch was told not to use."""
    flags = cpu_flags()
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    for prefix in _CAPPED_BY_TORCH.get(capability, ()):
        flags = {flag for flag in flags if not flag.startswith(prefix)}
    return frozenset(flags)


def _flags_from_torch() -> set[str]:
    import torch

    flags = set()
    if torch.cpu._is_avx2_supported():
        flags.update(_V3)
    if torch.cpu._is_avx512_supported():
        flags.update(_V4)
    if torch.cpu._is_vnni_supported():
        flags.add("avx512_vnni")
    if torch.cpu._is_avx512_bf16_supported():
        flags.add("avx512_bf16")
    return flags


def host_level() -> Optional[str]:
    """The highest ISA level this host runs ("avx512", "avx2"), or None below AVX2 / off x86."""
    flags = host_flags()
    for name in ("avx512", "avx2"):
        if set(ISA_LEVELS[name].flags) <= flags:
            return name
    return None


def native_flags() -> list[str]:
    """What a `-march=native` build may need: every vector-extension flag of this CPU (gcc asks the
    CPU itself, so an ATEN_CPU_CAPABILITY cap does not narrow it)."""
    return sorted(flag for flag in cpu_flags() if flag.startswith(SIMD_FLAG_PREFIXES))


def missing_flags(required: Iterable[str]) -> list[str]:
    have = host_flags()
    return sorted(flag for flag in required if flag not in have)


def is_x86() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


def physical_cores() -> int:
    """Cores that can each run a thread at full speed (SMT siblings not counted where Linux says so)."""
    info = proc_cpuinfo()
    try:
        siblings, cores = int(info["siblings"]), int(info["cpu cores"])
        per_core = max(1, siblings // cores)
    except (KeyError, ValueError, ZeroDivisionError):
        per_core = 1
    return max(1, (os.cpu_count() or 1) // per_core)


def instructions_beyond_level(package: Path) -> list[str]:
    """Flags the machine code of an AOTInductor package needs beyond its ISA level (VNNI, bf16,
    AMX), found by disassembling its shared objects with objdump (binutils: gcc needs it too)."""
    import shutil
    import tempfile

    needed: set[str] = set()
    with zipfile.ZipFile(package) as archive, tempfile.TemporaryDirectory(prefix="neuron-export-isa-") as folder:
        for index, name in enumerate(n for n in archive.namelist() if n.endswith(".so")):
            target = Path(folder) / f"{index}.so"
            with archive.open(name) as member, open(target, "wb") as file:
                shutil.copyfileobj(member, file, 1 << 20)  # the weights live in it too: stream, don't hold
            needed |= _extra_flags(target)
            target.unlink()
    return sorted(needed)


def _extra_flags(shared_object: Path) -> set[str]:
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(shared_object)], capture_output=True, text=True,
                             check=True).stdout
    found = set()
    for line in listing.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            mnemonic = parts[1].split(" ", 1)[0].strip()
            if mnemonic in EXTRA_INSTRUCTIONS:
                found.add(EXTRA_INSTRUCTIONS[mnemonic])
    return found
