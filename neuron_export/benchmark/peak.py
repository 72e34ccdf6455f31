"""The host's peak FLOP/s per precision, from its ISA, core count and clock, with the assumptions said.

peak = cores used x clock x FLOP per cycle per core. FLOP per cycle comes from the vector ISA the
CPU offers compiled code (cpu.host_flags(): an AVX2-capped torch caps it too) and what is known
of its FMA datapaths; the clock is measured (a chain of dependent integer adds runs at one add per
cycle, so adds per second is the clock the core really runs at, boost included), because a virtual
machine's /proc/cpuinfo shows the hypervisor's base clock, well below it.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import cpu

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# One dependent chain of 64 adds per loop trip: 64 cycles; the loop's own counter runs beside it.
_CLOCK_SOURCE = r"""
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
double adds_per_second(long trips, int tries) {
    double best = 0;
    for (int k = 0; k < tries; k++) {
        long x = 0;
        double start = now();
        for (long i = 0; i < trips; i++) __asm__ volatile(".rept 64\n\tadd $1, %0\n\t.endr" : "+r"(x));
        double rate = 64.0 * trips / (now() - start);
        if (rate > best) best = rate;
    }
    return best;
}
"""


@dataclass
class Peak:
    """Peak GFLOP/s of one core per precision, the clock, and how each number was arrived at."""

    clock_ghz: float
    clock_source: str
    flop_per_cycle: dict[str, int]  # per core, by precision
    why: dict[str, str]  # per precision: which instructions the figure assumes
    isa: str  # what the host offers compiled code, e.g. "AVX512 (avx512_bf16, avx512_vnni)"
    cores: int = 1
    notes: list[str] = field(default_factory=list)

    def gflops(self, precision: str, threads: int) -> float:
        """Peak GFLOP/s for `threads` threads (at most one per physical core)."""
        return self.flop_per_cycle[precision] * self.clock_ghz * min(threads, self.cores)

    def assumptions(self, precision: str, threads: int) -> str:
        used = min(threads, self.cores)
        return (f"{used} core{'s' if used > 1 else ''} x {self.clock_ghz:.2f} GHz ({self.clock_source}) x "
                f"{self.flop_per_cycle[precision]} {precision} FLOP/cycle ({self.why[precision]})")


def fp32_flop_per_cycle(flags: frozenset[str], vendor: str, family: Optional[int]) -> tuple[int, str]:
    """FMA lanes x 2 FLOP x FMA units, per core."""
    if "avx512f" in flags:
        if vendor == "AuthenticAMD" and family is not None and family < 0x1A:
            return 32, "Zen 4 runs AVX-512 on 256-bit FMA units: 2 x 8 lanes x 2"
        return 64, "2 AVX-512 FMA units x 16 lanes x 2"
    if "avx2" in flags and "fma" in flags:
        return 32, "2 AVX2 FMA units x 8 lanes x 2"
    if "avx" in flags:
        return 16, "AVX without FMA: 8 lanes x (1 add + 1 mul)"
    return 8, "SSE: 4 lanes x (1 add + 1 mul)"


def flop_per_cycle(flags: frozenset[str], vendor: str, family: Optional[int]) -> tuple[dict[str, int], dict[str, str]]:
    fp32, why32 = fp32_flop_per_cycle(flags, vendor, family)
    per = {"fp32": fp32}
    why = {"fp32": why32}
    if "amx_bf16" in flags:
        per["bf16"], why["bf16"] = 1024, "AMX-BF16 tiles"
    elif "avx512_bf16" in flags:
        per["bf16"], why["bf16"] = 2 * fp32, "avx512_bf16 dot products: 2 x fp32"
    else:
        per["bf16"], why["bf16"] = fp32, "no bf16 instructions: computed in fp32"
    if "avx512_fp16" in flags:
        per["fp16"], why["fp16"] = 2 * fp32, "AVX512-FP16: 2 x fp32"
    else:
        per["fp16"], why["fp16"] = fp32, "no fp16 arithmetic: computed in fp32"
    if "amx_int8" in flags:
        per["int8"], why["int8"] = 2048, "AMX-INT8 tiles"
    elif "avx512_vnni" in flags or "avx_vnni" in flags:
        per["int8"], why["int8"] = 4 * fp32, "VNNI dot products (4 int8 MACs per 32-bit lane): 4 x fp32"
    else:
        per["int8"], why["int8"] = 2 * fp32, "no VNNI: multiply-add pairs, about 2 x fp32"
    return per, why


@functools.cache
def measured_clock_ghz() -> Optional[float]:
    """The clock a core runs at, from a dependent add chain (best of many short tries, so time
    slices lost to other processes do not count); None without a C compiler."""
    try:
        with tempfile.TemporaryDirectory(prefix="neuron-export-clock-") as folder:
            source, library = Path(folder) / "clock.c", Path(folder) / "clock.so"
            source.write_text(_CLOCK_SOURCE)
            subprocess.run(["gcc", "-O1", "-shared", "-fPIC", str(source), "-o", str(library)], check=True,
                           capture_output=True, timeout=60)
            function = ctypes.CDLL(str(library)).adds_per_second
            function.restype, function.argtypes = ctypes.c_double, [ctypes.c_long, ctypes.c_int]
            return function(20_000, 40) / 1e9  # 40 tries of ~0.4 ms
    except (OSError, subprocess.SubprocessError):
        return None


def listed_clock_ghz() -> tuple[Optional[float], str]:
    """The clock the OS lists: cpufreq's maximum, else /proc/cpuinfo's (a VM's base clock)."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq maximum"
    except (OSError, ValueError):
        pass
    try:
        return float(cpu.proc_cpuinfo()["cpu MHz"]) / 1e3, "/proc/cpuinfo cpu MHz"
    except (KeyError, ValueError):
        return None, "unknown"


@functools.cache
def host_peak() -> Peak:
    flags = cpu.host_flags()
    info = cpu.proc_cpuinfo()
    try:
        family: Optional[int] = int(info["cpu family"])
    except (KeyError, ValueError):
        family = None
    per, why = flop_per_cycle(flags, info.get("vendor_id", ""), family)
    measured = measured_clock_ghz()
    listed, listed_source = listed_clock_ghz()
    notes = []
    if measured:
        clock, source = measured, "measured: dependent add chain"
        if listed:
            notes.append(f"the OS lists {listed:.2f} GHz ({listed_source})")
    else:
        clock, source = listed or 1.0, listed_source
    level = cpu.host_level() or "below AVX2"
    extras = sorted(f for f in flags if f in ("avx512_bf16", "avx512_vnni", "avx_vnni", "avx512_fp16", "amx_bf16", "amx_int8"))
    isa = level.upper() + (f" ({', '.join(extras)})" if extras else "")
    return Peak(clock, source, per, why, isa, cpu.physical_cores(), notes)
