"""Stage events and timings of a long operation (an export, a benchmark), for logs and the job store."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

log = logging.getLogger("neuron_export")

EventSink = Callable[[dict[str, Any]], None]


class Progress:
    """Stage events (for the job store) and timings; `total` is the number of stages expected.

    A stage event says what runs as data, not only in words: `stage` (loading, tracing, compiling,
    ...), `component` (the pipeline part being built, e.g. "unet"; None for a single model, set by
    the caller as it moves from part to part), `key` (the timing's name) and step `index` of `total`.
    """

    def __init__(self, on_event: Optional[EventSink], total: int):
        self.on_event = on_event
        self.total = total
        self.done = 0
        self.component: Optional[str] = None
        self.timings: dict[str, float] = {}

    def emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event({**event, "time": time.time()})

    @contextmanager
    def stage(self, name: str, message: str, key: Optional[str] = None) -> Iterator[None]:
        self.emit({"type": "stage", "stage": name, "component": self.component, "key": key or name,
                   "index": self.done + 1, "total": self.total, "fraction": self.done / self.total, "message": message})
        log.info("[%d/%d] %s", self.done + 1, self.total, message)
        start = time.perf_counter()
        yield
        self.timings[key or name] = self.timings.get(key or name, 0.0) + time.perf_counter() - start
        self.done += 1
