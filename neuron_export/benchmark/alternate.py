"""How the benchmark times: after warm-up calls, each side's timed calls run in rounds, side after
side in a rotating order (ABC BCA CAB ...), so a busy shared machine slows every side alike, and
every turn starts with one untimed call.

The benchmark (run.py) takes turns between sides in processes of their own; the dashboard's
playground takes them between the compiled and eager models it holds, in one process (one thread
count for both). Both measure with these functions.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

# A side that just ran may still spin its thread pool for a moment: pause before the next side.
HANDOFF_PAUSE_S = 0.02

# A side's turn: n timed calls -> (their seconds, CPU seconds of the process over them), or None when it failed.
Turn = Callable[[int], Optional[tuple[list[float], float]]]


def time_calls(call: Callable[[], Any], count: int) -> tuple[list[float], float]:
    """Seconds of `count` calls, after one untimed call (the side's turn starts with caches and
    thread pools that the other sides' turns left cold, which no steady-state caller sees), and
    the process's CPU seconds over them (all its threads)."""
    call()
    seconds = []
    cpu_start = time.process_time()
    for _ in range(count):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds, time.process_time() - cpu_start


def calls_per_round(iterations: int, rounds: int) -> list[int]:
    """`iterations` timed calls spread over at most `rounds` rounds (no empty round)."""
    per_round = [iterations // rounds + (r < iterations % rounds) for r in range(rounds)]
    return [n for n in per_round if n]


def alternate(turns: Sequence[Turn], iterations: int, rounds: int, on_round: Optional[Callable[[int, int], None]] = None,
              deadline: Optional[float] = None, min_rounds: int = 2) -> list[tuple[list[float], float]]:
    """Every side's `iterations` timed calls, in rounds of turns in a rotating order; per side (in
    the order given) its seconds and its CPU seconds. on_round(done, total) after each round. With a
    deadline (a time.perf_counter() value), no round after the first `min_rounds` starts past it."""
    timings: list[tuple[list[float], float]] = [([], 0.0) for _ in turns]
    per_round = calls_per_round(iterations, rounds)
    order = list(range(len(turns)))
    for round_index, calls in enumerate(per_round):
        if deadline is not None and round_index >= min_rounds and time.perf_counter() > deadline:
            break
        shift = round_index % len(turns)
        for index in order[shift:] + order[:shift]:
            timed = turns[index](calls)
            if timed:
                seconds, cpu_seconds = timings[index]
                timings[index] = (seconds + list(timed[0]), cpu_seconds + timed[1])
            time.sleep(HANDOFF_PAUSE_S)
        if on_round:
            on_round(round_index + 1, len(per_round))
    return timings
