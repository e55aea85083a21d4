"""Rate limits, peer scores and temporary bans (sans-IO: time is passed in).

A misbehaving peer loses score (invalid events, malformed frames, protocol violations); below the
threshold its key (and, unless exempt, its IP) is banned for a while. Scores recover slowly so an
honest peer that once relayed one bad frame is not banned forever. Every table here is bounded.
"""

from __future__ import annotations

import random


def jittered(interval: float, jitter: float, rng: random.Random) -> float:
    """``interval`` give or take ``jitter`` of it: nodes started together do not act in step."""
    return interval * (1.0 + rng.uniform(-jitter, jitter))


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, amount: float, now: float) -> bool:
        """Spend ``amount`` tokens if available; False (and nothing spent) when over the limit."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


class ScoreBoard:
    """Scores per subject (``"key:<hex>"`` or ``"ip:<addr>"``) and bans with an expiry.

    Both tables are bounded (oldest entries dropped first) so a flood of fresh keys cannot grow
    memory; a dropped score simply restarts at zero.
    """

    def __init__(self, *, threshold: float = 100.0, ban_seconds: float = 600.0,
                 recovery_per_second: float = 0.1, max_entries: int = 10_000,
                 exempt_ips: tuple[str, ...] = ()) -> None:
        self.threshold = threshold
        self.ban_seconds = ban_seconds
        self.recovery = recovery_per_second
        self.max_entries = max_entries
        self.exempt_ips = exempt_ips
        self._scores: dict[str, tuple[float, float]] = {}  # subject -> (score, stamp)
        self._bans: dict[str, float] = {}                   # subject -> until
        self.bans_total = 0

    def score(self, subject: str, now: float) -> float:
        entry = self._scores.get(subject)
        if entry is None:
            return 0.0
        value, stamp = entry
        return min(0.0, value + max(0.0, now - stamp) * self.recovery)

    def penalise(self, subjects: list[str], amount: float, now: float) -> list[str]:
        """Lower the score of each subject; return the subjects now banned (empty: none; an
        exempt IP is never among them, so a caller logs only what was really banned)."""
        banned = False
        for subject in subjects:
            value = self.score(subject, now) - amount
            self._scores.pop(subject, None)
            self._scores[subject] = (value, now)
            if len(self._scores) > self.max_entries:
                del self._scores[next(iter(self._scores))]
            if value <= -self.threshold:
                banned = True
        if not banned:
            return []
        return [subject for subject in subjects if self.ban(subject, now)]

    def ban(self, subject: str, now: float) -> bool:
        """Ban ``subject``; False (nothing done) for an exempt IP."""
        if subject.startswith("ip:") and subject[3:] in self.exempt_ips:
            return False
        if subject not in self._bans:
            self.bans_total += 1
        self._bans.pop(subject, None)
        self._bans[subject] = now + self.ban_seconds
        self._scores.pop(subject, None)
        if len(self._bans) > self.max_entries:
            del self._bans[next(iter(self._bans))]
        return True

    def is_banned(self, subject: str, now: float) -> bool:
        until = self._bans.get(subject)
        if until is None:
            return False
        if now >= until:
            del self._bans[subject]
            return False
        return True

    def active_bans(self, now: float) -> int:
        return sum(1 for until in self._bans.values() if until > now)

    def expire(self, now: float) -> None:
        for subject in [s for s, until in self._bans.items() if until <= now]:
            del self._bans[subject]


class Backoff:
    """Exponential dial backoff per address, with jitter from the caller's rng draw."""

    def __init__(self, *, base: float = 1.0, cap: float = 60.0, max_entries: int = 4096) -> None:
        self.base = base
        self.cap = cap
        self.max_entries = max_entries
        self._state: dict[str, tuple[int, float]] = {}  # addr -> (failures, retry_at)

    def failed(self, addr: str, now: float, jitter: float) -> float:
        """Record a failure; return the time before which ``addr`` should not be dialed."""
        failures = self._state.pop(addr, (0, 0.0))[0] + 1
        delay = min(self.cap, self.base * float(2 ** min(failures - 1, 16))) * (1.0 + jitter)
        self._state[addr] = (failures, now + delay)
        if len(self._state) > self.max_entries:
            del self._state[next(iter(self._state))]
        return now + delay

    def succeeded(self, addr: str) -> None:
        self._state.pop(addr, None)

    def ready(self, addr: str, now: float) -> bool:
        entry = self._state.get(addr)
        return entry is None or now >= entry[1]
