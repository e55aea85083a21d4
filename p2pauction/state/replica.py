"""The ledger and its store kept in step: whatever the ledger accepts is stored before returning."""

from __future__ import annotations

from typing import Iterable

import structlog

from p2pauction.state.events import Event, Kind
from p2pauction.state.identity import SignatureVerifier
from p2pauction.state.ledger import Ledger, Outcome, OutcomeKind, Status
from p2pauction.state.store import EventStore

log = structlog.get_logger(__name__)


class Replica:
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
        accepted = [e for o in outcomes for e in o.accepted]
        if accepted:
            self.store.append(accepted)
            self._record(accepted)
        return outcomes

    def get_raw(self, event_id: str) -> bytes | None:
        return self.store.get_raw(event_id)

    def _persist(self, outcome: Outcome) -> None:
        if outcome.accepted:
            self.store.append(outcome.accepted)
            self._record(outcome.accepted)

    def _record(self, accepted: Iterable[Event]) -> None:
        closed = {e.auction_id: None for e in accepted if e.kind is Kind.CLOSE}
        for aid in closed:
            view = self.ledger.auction(aid)
            if view.status is not Status.OPEN:
                self.store.record_finished(view)
