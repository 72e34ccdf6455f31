"""benchmark/alternate.py and the spread figures of stats.py: how the benchmark and the playground time sides."""

import time

from neuron_export.benchmark.alternate import alternate, calls_per_round, time_calls
from neuron_export.benchmark.stats import percentile, spread, too_noisy


def recording_turns(log, names):
    return [lambda calls, name=name: log.append((name, calls)) or ([0.001] * calls, 0.0) for name in names]


def test_turns_rotate_round_after_round_and_every_side_gets_every_call():
    log = []
    timings = alternate(recording_turns(log, "ABC"), iterations=7, rounds=3)
    assert [name for name, _ in log] == list("ABCBCACAB")  # ABC BCA CAB: no side always goes first
    assert [calls for name, calls in log if name == "A"] == calls_per_round(7, 3) == [3, 2, 2]
    assert [len(seconds) for seconds, _ in timings] == [7, 7, 7]


def test_a_failed_turn_adds_nothing_and_the_others_carry_on():
    timings = alternate([lambda calls: None, lambda calls: ([0.5] * calls, 0.1)], iterations=4, rounds=2)
    assert timings[0] == ([], 0.0) and timings[1][0] == [0.5] * 4 and abs(timings[1][1] - 0.2) < 1e-9


def test_past_the_deadline_no_round_starts_after_the_first_two():
    log = []
    timings = alternate(recording_turns(log, "AB"), iterations=10, rounds=5, deadline=time.perf_counter() - 1)
    assert [name for name, _ in log] == list("ABBA") and [len(s) for s, _ in timings] == [4, 4]


def test_time_calls_makes_one_untimed_call_first():
    made = []
    seconds, cpu_seconds = time_calls(lambda: made.append(1), 3)
    assert len(made) == 4 and len(seconds) == 3 and all(s >= 0 for s in seconds) and cpu_seconds >= 0


def test_a_difference_smaller_than_the_spread_is_too_noisy():
    steady_fast, steady_slow = [10.0, 10.1, 10.2, 10.1], [12.0, 12.1, 12.2, 12.1]
    erratic = [8.0, 14.0, 11.0, 16.0]
    assert spread(erratic) == percentile(erratic, 75) - percentile(erratic, 25) > 2
    assert not too_noisy(steady_fast, steady_slow)
    assert too_noisy(steady_fast, erratic)
