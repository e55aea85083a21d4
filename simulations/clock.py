"""Virtual time: a heap of timed callbacks, the lowest layer of the simulator.

The queue is a heap of ``(time, seq, callback, args)``: ``seq`` breaks ties in scheduling order, so
one seed gives one run.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

INF = float("inf")


class Scheduler:
    """A heap of timed callbacks; ties keep scheduling order."""

    __slots__ = ("now", "_heap", "_seq", "steps", "_halted")

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.steps = 0         # callbacks run, brought up to date when run_until returns
        self._halted = False

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def pending(self) -> int:
        """Callbacks waiting in the queue (for the report's timeline)."""
        return len(self._heap)

    def next_time(self) -> float:
        return self._heap[0][0] if self._heap else INF

    def halt(self) -> None:
        """Make the running ``run_until`` return after the current callback (a callback's way to
        end the run: cheaper than a ``stop`` predicate asked after every step)."""
        self._halted = True

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> None:
        """Run callbacks due by ``t_end``, or until a callback calls :meth:`halt` (or, when given,
        until ``stop()`` is true after a callback)."""
        heap = self._heap
        pop = heapq.heappop
        steps = 0  # counted locally: an attribute write per step costs more than the step's bookkeeping
        try:
            while heap and heap[0][0] <= t_end:
                t, _, fn, args = pop(heap)
                self.now = t
                fn(*args)
                steps += 1
                if self._halted or (stop is not None and stop()):
                    self._halted = False
                    return
        finally:
            self.steps += steps
        if t_end != INF and self.now < t_end:
            self.now = t_end
