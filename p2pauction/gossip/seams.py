"""What the gossip core needs of the rest of the node: the replica seam, as typing Protocols.

The core never imports the replica's class: it names here the few calls it makes, so any object
with them fits (the real :class:`~p2pauction.state.replica.Replica` and its subclasses in the
simulator and the tests). mypy checks that they do, at the core's constructor call sites.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from p2pauction.gossip.secure import NodeSigner

if TYPE_CHECKING:
    from p2pauction.state.events import Event
    from p2pauction.state.idindex import IdIndex
    from p2pauction.state.ledger import Outcome, Unresolved

__all__ = ["NodeSigner", "PeerBook", "PendingLedger", "ReplicaPort"]


class PendingLedger(Protocol):
    """The ledger's two read-only answers the core asks for."""

    def is_pending(self, event_id: str) -> bool:
        """Held in the pending buffer (its deps are missing): asking for it again is useless."""
        ...

    def ids_in_order(self) -> Iterable[str]:
        """Every accepted id, in accept (causal) order: the anti-entropy summary is built from it
        when ``id_index`` gives none."""
        ...

    def id_index(self) -> IdIndex | None:
        """The store's index of accepted ids, which the summary then reads instead of holding
        every id (a ledger that keeps only a working set has one)."""
        ...


class PeerBook(Protocol):
    """Where the node keeps the addresses of peers it has met (the store), across restarts."""

    def remember_peer(self, public_hex: str, addr: str, seen_at: float) -> None: ...

    def known_peers(self, limit: int = 100) -> list[tuple[str, str]]: ...


class ReplicaPort(Protocol):
    """The ledger and its store kept in step: every event the core accepts goes through here."""

    @property
    def ledger(self) -> PendingLedger: ...

    @property
    def store(self) -> PeerBook: ...

    def receive(self, event: Event, *, origin: str | None = None) -> Outcome:
        """A locally authored event."""
        ...

    def receive_raw(self, raw: bytes, *, origin: str | None = None) -> Outcome:
        """One event from the wire; ``origin`` (the sender) comes back in ``take_unresolved``."""
        ...

    def receive_many(self, raws: Iterable[bytes], *, origin: str | None = None) -> list[Outcome]:
        """Several events from the wire in one store transaction."""
        ...

    def get_raw(self, event_id: str) -> bytes | None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Every receive inside is committed (or undone) as one when the block ends."""
        ...

    def take_unresolved(self) -> list[Unresolved]:
        """Pending events that left the buffer unresolved since the last call, with their origin."""
        ...

    def sweep_pending(self) -> int:
        """Expire long-unresolved pending events; returns how many."""
        ...
