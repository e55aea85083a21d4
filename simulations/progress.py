"""Progress on stderr: a live line on a terminal, or one plain line every N seconds otherwise.

``--progress auto`` (the default) picks ``tty`` when stderr is a terminal and ``lines`` when it is
not (a log file, CI); ``off`` prints nothing. Wall time is read here for the display only, never by
the simulation: :class:`RunMonitor` is a callback the run's own scheduler calls every
``SAMPLE_EVERY`` virtual seconds; it does nothing to the simulated network, so the trace hash is
the same with or without it. It also records the timeline (pending events, open links) that the
report's second panel plots.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from simulations.runner import Simulation

MODES = ("auto", "tty", "lines", "off")
TTY_REFRESH = 0.2          # wall seconds between two redraws of the live line
SAMPLE_EVERY = 0.25        # virtual seconds between two timeline samples / progress checks


def resolve_mode(mode: str, stream: TextIO) -> str:
    if mode != "auto":
        return mode
    isatty = getattr(stream, "isatty", None)
    return "tty" if isatty is not None and isatty() else "lines"


def clock_text(seconds: float) -> str:
    """0:07, 12:34, 1:02:03."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Display:
    """Throttled status text: redraws one line on a terminal, prints a line every ``every`` s otherwise."""

    def __init__(self, mode: str = "auto", *, stream: TextIO | None = None, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.every = every
        self.clock = clock
        self._last = clock()
        self._drawn = False

    def due(self) -> bool:
        """Whether an update now would be shown (so callers compute costly text only then)."""
        if self.mode == "off":
            return False
        gap = TTY_REFRESH if self.mode == "tty" else self.every
        return self.clock() - self._last >= gap

    def update(self, text: str, *, force: bool = False) -> None:
        if self.mode == "off" or not (force or self.due()):
            return
        self._last = self.clock()
        if self.mode == "tty":
            # one screen line: a wrapped line could not be redrawn in place
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\x1b[K" + text[:width])
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the live line (before other output goes to the same terminal)."""
        if self.mode == "tty" and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        """End the live line so what follows starts on a fresh line."""
        if self.mode == "tty" and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def eta_text(done: float, total: float, elapsed: float) -> str:
    """Remaining wall time at the rate so far, or '?' before anything is done."""
    if done <= 0 or total <= done:
        return "?" if total > done else "0:00"
    return clock_text(elapsed * (total - done) / done)


class RunMonitor:
    """Samples one run's timeline and shows its phase, virtual and wall time and an ETA."""

    def __init__(self, sim: Simulation, display: Display, clock: Callable[[], float] = time.monotonic) -> None:
        self.sim = sim
        self.display = display
        self.clock = clock
        self.started = clock()
        # (virtual time, pending callbacks, open links)
        self.timeline: list[tuple[float, int, int]] = []

    def attach(self) -> None:
        """Start sampling; call after ``sim.build()``."""
        self.started = self.clock()
        self.sim.world.sched.at(0.0, self._sample)

    def phase(self) -> str:
        now, sim = self.sim.world.now, self.sim
        if now < sim.warmup:
            return "warm-up"
        if now < sim.heal:
            return "faults"
        return "heal: waiting for one digest"

    def status(self) -> str:
        sim, w = self.sim, self.sim.world
        now = w.now
        wall = self.clock() - self.started
        end = sim.heal + sim.cfg.bound
        if now < sim.heal:
            eta = eta_text(now, sim.heal, wall)
            eta_part = f"ETA to heal {eta}"
        else:
            rate = now / wall if wall > 0 else 0.0
            eta_part = f"at most {clock_text((end - now) / rate)} left" if rate > 0 else "ETA ?"
        return (f"[sim] {self.phase():<28} virtual {now:7.1f}s / heal {sim.heal:.1f}s (bound +{sim.cfg.bound:.0f}s)  "
                f"wall {clock_text(wall)}  {eta_part}  live {len(w.honest_live())}  "
                f"digests {len(w.digests())}")

    def _sample(self) -> None:
        w = self.sim.world
        self.timeline.append((w.now, w.sched.pending(), w.net.open_links()))
        if self.display.due():  # status() walks every node: only when it will be shown
            self.display.update(self.status(), force=True)
        w.sched.at(w.now + SAMPLE_EVERY, self._sample)

    def finish(self) -> None:
        self.display.close()
