"""Simulated (not measured) wall time of an SDXL-like export on a Ray farm: the per-component compile
times of one published SDXL log on Neuron (issue #17), scheduled as the Ray executor's units on N
workers (longest first, each to the worker free first). Loading, saving and validation are left out.

    python benchmarks/simulate_farm.py
"""

from __future__ import annotations

import heapq

# seconds, from the published log quoted in issue #17
SDXL = {"text_encoder": 33, "text_encoder_2": 82, "unet": 1026, "vae_encoder": 366, "vae_decoder": 693}
PER_RESOLUTION = ("unet", "vae_encoder", "vae_decoder")  # bucketed: one unit per resolution


def units(resolutions: int) -> list[float]:
    return [s for name, s in SDXL.items() for _ in range(resolutions if name in PER_RESOLUTION else 1)]


def makespan(durations: list[float], workers: int) -> float:
    free = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


def main() -> None:
    print("resolutions  workers  serial s  farm s  speed-up (simulated)")
    for resolutions in (1, 3):
        work = units(resolutions)
        for workers in (1, 2, 3, 5, 11):
            farm = makespan(work, workers)
            print(f"{resolutions:11d}  {workers:7d}  {sum(work):8.0f}  {farm:6.0f}  {sum(work) / farm:.2f}x")


if __name__ == "__main__":
    main()
