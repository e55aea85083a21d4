"""The ledger and its store kept in step: whatever the ledger accepts is stored before returning."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Iterable, Sequence

from p2pauction.logs import get_logger
from p2pauction.state.events import Event, Kind
from p2pauction.state.identity import SignatureVerifier
from p2pauction.state.ledger import AuctionView, Ledger, Outcome, OutcomeKind, Status
from p2pauction.state.store import EventStore

log = get_logger(__name__)


class Replica:
    """A Ledger rebuilt from its store on construction; every event the ledger accepts is
    appended to the store (one transaction per call) before the call returns."""

    def __init__(self, net: str, store: EventStore, *, verifier: SignatureVerifier | None = None,
                 pending_max_count: int = 10_000, pending_max_bytes: int = 16 * 2**20) -> None:
        check = getattr(store, "check_net", None)
        if callable(check):
            check(net)
        self.net = net
        self.store = store
        self.ledger = Ledger(net, verifier=verifier, pending_max_count=pending_max_count,
                             pending_max_bytes=pending_max_bytes)
        self._rebuild()

    def _rebuild(self) -> None:
        """Replay the store: its bytes were verified before they were stored, so skip signatures."""
        bad = 0
        for raw in self.store.iter_raw():
            outcome = self.ledger.load_trusted_raw(raw)
            if outcome.kind is not OutcomeKind.ACCEPTED and outcome.kind is not OutcomeKind.DUPLICATE:
                bad += 1
        if bad:
            log.warning("store_replay_rejected", count=bad, reason="stored events that no longer validate")

    def receive_raw(self, raw: bytes) -> Outcome:
        outcome = self.ledger.receive_raw(raw)
        self._persist(outcome)
        return outcome

    def receive(self, event: Event) -> Outcome:
        outcome = self.ledger.receive(event)
        self._persist(outcome)
        return outcome

    def receive_many(self, raws: Iterable[bytes]) -> list[Outcome]:
        """Several events from the wire, stored in ONE transaction (durable when this returns)."""
        outcomes = [self.ledger.receive_raw(raw) for raw in raws]
        self._store([e for o in outcomes for e in o.accepted])
        return outcomes

    def batch(self) -> AbstractContextManager[None]:
        """Appends inside go to the store in one transaction, committed when the block ends, for
        a caller that acknowledges nothing before then (a store without transactions writes as it
        goes)."""
        transaction = getattr(self.store, "transaction", None)
        return transaction() if callable(transaction) else nullcontext()

    def get_raw(self, event_id: str) -> bytes | None:
        return self.store.get_raw(event_id)

    def _persist(self, outcome: Outcome) -> None:
        self._store(outcome.accepted)

    def _store(self, accepted: Sequence[Event]) -> None:
        if not accepted:
            return
        finished = self._finished(accepted)
        if finished:
            self.store.append(accepted, finished)
        else:   # the plain form: stores written against the original one-argument append work
            self.store.append(accepted)

    def _finished(self, accepted: Iterable[Event]) -> list[AuctionView]:
        """Views of the auctions a close among ``accepted`` finished (or made disputed)."""
        closed = {e.auction_id: None for e in accepted if e.kind is Kind.CLOSE}
        views = [self.ledger.auction(aid) for aid in closed]
        return [v for v in views if v.status is not Status.OPEN]
