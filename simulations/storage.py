"""The simulated nodes' store: a MemoryStore whose commits fail when the fault plan says so.

It has SqliteStore's commit semantics (``transaction()`` applies every staged write or none), so a
failed commit in the simulator exercises the same code paths as a full disk or an I/O error on a
real node: the Replica rolls its ledger back, the gossip core drops the chunk's events.
"""

from __future__ import annotations

from collections.abc import Callable

from p2pauction.errors import StoreWriteError
from p2pauction.state.store import MemoryStore


class FaultyStore(MemoryStore):
    """``draw()`` returns the error text of a failing commit, or None (set by the node factory)."""

    def __init__(self) -> None:
        super().__init__()
        self.draw: Callable[[], str | None] | None = None
        self.failed_commits = 0

    def _check_commit(self) -> None:
        error = self.draw() if self.draw is not None else None
        if error is not None:
            self.failed_commits += 1
            raise StoreWriteError(f"simulated store: cannot save events: {error}")
