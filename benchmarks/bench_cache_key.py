"""What hashing the model files costs the compile cache's key: every byte of the weights is read and
hashed on each export (a size-and-mtime memo would miss weights edited in place).

Writes a random weights file of --size_mb (default 420 MB: bert-base's safetensors) next to a small
config, then times CompileCache.files_digest over it --repeat times: the first read may come from
disk, the others from the page cache. Prints the host's CPU and ISA with the figures.

    python benchmarks/bench_cache_key.py [--size_mb 420] [--repeat 3] [--folder DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from neuron_export.benchmark.report import host_summary  # noqa: E402
from neuron_export.export.cache import CompileCache  # noqa: E402


def sha_extensions() -> str:
    """Whether the CPU has SHA instructions (OpenSSL uses them for sha256)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    return "sha_ni" if " sha_ni" in flags else "no sha_ni"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size_mb", type=int, default=420)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--folder", help="hash this model folder instead of a generated one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cache-key-") as scratch:
        folder = Path(args.folder) if args.folder else Path(scratch)
        if not args.folder:
            (folder / "config.json").write_text('{"model_type": "bert"}')
            with open(folder / "model.safetensors", "wb") as weights:
                for _ in range(args.size_mb):
                    weights.write(os.urandom(1 << 20))
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        seconds = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            CompileCache.files_digest(folder)
            seconds.append(time.perf_counter() - start)
    host = host_summary()
    print(f"host: {host['processor']} ({platform.machine()}, {host['cpu_count']} cores), torch ISA "
          f"{torch.backends.cpu.get_cpu_capability()}, {sha_extensions()}, OpenSSL {hashlib.sha256().name} via "
          f"{__import__('ssl').OPENSSL_VERSION}")
    print(f"files_digest of {size / 1e6:.0f} MB: first {seconds[0]:.2f} s, median {statistics.median(seconds):.2f} s "
          f"({size / 1e6 / statistics.median(seconds):.0f} MB/s) over {len(seconds)} runs")


if __name__ == "__main__":
    main()
