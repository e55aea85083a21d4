"""The ledger and its store kept in step: memory changes only when the store has committed.

With a store that can serve as the ledger's archive (both stores here can), the ledger keeps only
a working set in memory: open auctions and a bounded cache of finished ones; the rest is read
back from the store on demand. A restart then reads the saved state (digest, counts) back and is
ready at once; nothing is replayed (``p2pauction check`` re-validates everything on demand).

Every call that may accept events is atomic: the ledger journals its changes (``Ledger.begin``),
the accepted events are appended to the store, and only when that commit succeeded are the
changes kept; a failed write (disk full, I/O error: ``StoreWriteError``) rolls the ledger back,
so its state, digest, heads and views are exactly what they were, and the error reaches the
caller. The next write after the cause is fixed simply works: nothing is left half-applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Iterable, Sequence, cast

from p2pauction.errors import StoreError
from p2pauction.logs import get_logger
from p2pauction.state.events import Event
from p2pauction.state.identity import SignatureVerifier
from p2pauction.state.ledger import AuctionView, Ledger, Outcome, OutcomeKind, Status, Unresolved
from p2pauction.state.store import ArchiveStore, AuctionState, DerivedState, EventStore

log = get_logger(__name__)
CACHE_AUCTIONS = 1024    # finished auctions kept in memory beyond the open ones (least recently used evicted)


class Replica:
    """A Ledger rebuilt from its store on construction; every event the ledger accepts is
    appended to the store (one transaction per call, or per ``batch()``) and kept in memory only
    once that transaction has committed."""

    def __init__(self, net: str, store: EventStore, *, verifier: SignatureVerifier | None = None,
                 pending_max_count: int = 10_000, pending_max_bytes: int = 16 * 2**20,
                 cache_auctions: int | None = CACHE_AUCTIONS) -> None:
        """``cache_auctions``: finished auctions kept in memory besides the open ones; None keeps
        every auction in memory and replays the store at start (what the ledger did before the
        working set; tests compare the two)."""
        check = getattr(store, "check_net", None)
        if callable(check):
            check(net)
        self.net = net
        self.store = store
        self.ledger = Ledger(net, verifier=verifier, pending_max_count=pending_max_count,
                             pending_max_bytes=pending_max_bytes)
        self._batch_depth = 0
        self._batch_error: StoreError | None = None   # a write inside the open batch failed
        self._batch_touched: dict[str, None] = {}      # auctions the open batch changed
        self._batch_authors: dict[str, None] = {}      # authors of the events it accepted
        self._batch_events: dict[str, Event] = {}      # accepted in the open batch, written at its end
        archive = (cast(ArchiveStore, store) if cache_auctions is not None
                   and callable(getattr(store, "archive_ready", None)) else None)
        saved = archive.load_derived() if archive is not None else None
        if archive is not None and cache_auctions is not None:
            if archive.archive_ready() and (saved is not None or len(store) == 0):
                # a restart without replay: the saved state of the last commit, the rest on demand
                self.ledger.attach(archive, cache_auctions, restored=saved or (0, 0))
                return
            self._rebuild(save_all=True)   # once: a store from before the working set
            self.ledger.attach(archive, cache_auctions)
        else:
            self._rebuild(save_all=False)

    def _rebuild(self, *, save_all: bool) -> None:
        """Replay the store: its bytes were verified before they were stored, so skip signatures.
        Then save the derived state whole if the store lacks it (or ``save_all``)."""
        bad = 0
        for raw in self.store.iter_raw():
            outcome = self.ledger.load_trusted_raw(raw)
            if outcome.kind is not OutcomeKind.ACCEPTED and outcome.kind is not OutcomeKind.DUPLICATE:
                bad += 1
        if bad:
            log.warning("store_replay_rejected", count=bad, reason="stored events that no longer validate")
        load = getattr(self.store, "load_derived", None)
        saved = load() if callable(load) else None
        if saved is not None and saved != (self.ledger.digest, self.ledger.counters.accepted):
            log.warning("store_derived_mismatch", reason="the saved digest differs from the replayed one; "
                        "run `p2pauction check` with the node stopped")
        if callable(load) and (saved is None or save_all):
            try:
                self._save_all_derived()
            except StoreError as exc:  # best effort: the next commit writes the state it changes
                log.warning("store_write_failed", what="derived state", error=str(exc))

    def receive_raw(self, raw: bytes, *, origin: str | None = None) -> Outcome:
        """One event from the wire; ``origin`` (the sender) comes back in take_unresolved()."""
        with self._atomic():
            outcome = self.ledger.receive_raw(raw, origin=origin)
            self._store(outcome.accepted)
        return outcome

    def receive(self, event: Event, *, origin: str | None = None) -> Outcome:
        with self._atomic():
            outcome = self.ledger.receive(event, origin=origin)
            self._store(outcome.accepted)
        return outcome

    def receive_many(self, raws: Iterable[bytes], *, origin: str | None = None) -> list[Outcome]:
        """Several events from the wire, stored in ONE transaction (durable when this returns)."""
        with self._atomic():
            outcomes = [self.ledger.receive_raw(raw, origin=origin) for raw in raws]
            self._store([e for o in outcomes for e in o.accepted])
        return outcomes

    def sweep_pending(self) -> int:
        """Expire long-unresolved pending events (see Ledger.sweep_pending); nothing is stored."""
        return self.ledger.sweep_pending()

    def take_unresolved(self) -> list[Unresolved]:
        """Pending events that left the buffer unresolved since the last call, with their origin."""
        return self.ledger.take_unresolved()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every call inside is one atomic change, committed when the block ends: the store's
        ``transaction()`` and the ledger's journal together. Outcomes returned inside are final
        only when the block ends without an error, so the caller acknowledges or forwards
        nothing before then. If a write inside fails, the rest of the block still runs (in
        memory) and the block ends with that StoreWriteError, every change of the block undone.
        If the block raises, everything is undone too. (A store without ``transaction()`` keeps
        what it wrote before a failure: it may hold more than memory, never less.)"""
        if self._batch_depth:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
            return
        transaction = getattr(self.store, "transaction", None)
        self.ledger.begin()
        self._batch_depth = 1
        try:
            with transaction() if callable(transaction) else _no_transaction():
                yield
                self._write_batch_events()
                if self._batch_error is None and self._batch_touched:
                    # the derived state once per batch, in its transaction (not once per event)
                    self._save_derived(self._batch_touched, self._batch_authors)
                if self._batch_error is not None:
                    raise self._batch_error  # (also rolls the store's transaction back)
        except BaseException:
            self.ledger.rollback()
            raise
        finally:
            self._batch_depth = 0
            self._batch_error = None
            self._batch_touched = {}
            self._batch_authors = {}
            self._batch_events = {}
        self.ledger.commit()

    def _write_batch_events(self) -> None:
        """The batch's accepted events in one append at its end: one statement for all of them,
        and the finished auctions' analytics rows written once each, as they stand at the end."""
        if self._batch_error is not None or not self._batch_events:
            return
        try:
            self._append(list(self._batch_events.values()))
        except StoreError as exc:
            self._batch_error = exc

    def get_raw(self, event_id: str) -> bytes | None:
        """Stored bytes; inside a batch also those of an event it accepted (written at its end)."""
        raw = self.store.get_raw(event_id)
        if raw is None and self._batch_events:
            event = self._batch_events.get(event_id)
            return event.raw if event is not None else None
        return raw

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """One call's changes: joined to the open batch, else kept only if the block succeeds."""
        if self._batch_depth:
            yield
            return
        self.ledger.begin()
        try:
            yield
        except BaseException:
            self.ledger.rollback()
            raise
        self.ledger.commit()

    def _store(self, accepted: Sequence[Event]) -> None:
        if not accepted:
            return
        if self._batch_depth:
            # written when the batch ends (a failure then ends the batch with it, all undone)
            if self._batch_error is None:
                self._batch_events.update((e.id, e) for e in accepted)
            return
        self._append(accepted)

    def _append(self, accepted: Sequence[Event]) -> None:
        """The events, the analytics rows of the auctions they finished and the ledger's derived
        state (digest, count, changed auctions), in ONE transaction."""
        finished = self._finished(accepted)
        touched = dict.fromkeys(e.auction_id for e in accepted)
        # only an event that names its author can change the author's claim (the ledger's _claim)
        authors = dict.fromkeys(e.author for e in accepted if getattr(e.body, "name", None) is not None)
        transaction = getattr(self.store, "transaction", None)
        deferred = self._batch_depth > 0   # the batch saves the derived state once, at its end
        with transaction() if callable(transaction) and not deferred else _no_transaction():
            if finished:
                self.store.append(accepted, finished)
            else:   # the plain form: stores written against the original one-argument append work
                self.store.append(accepted)
            if deferred:
                self._batch_touched.update(touched)
                self._batch_authors.update(authors)
            else:
                self._save_derived(touched, authors)

    def _save_derived(self, auctions: Iterable[str], authors: Iterable[str]) -> None:
        save = getattr(self.store, "save_derived", None)
        if callable(save):
            try:
                save(self._derived(auctions, authors))
            except StoreError as exc:
                if not self._batch_depth:
                    raise
                self._batch_error = exc

    def _derived(self, auctions: Iterable[str], authors: Iterable[str], *, complete: bool = False) -> DerivedState:
        """The state to save with a commit: the auctions it changed, the claims of its authors
        (the ledger reads them back from the store once they are saved)."""
        ledger = self.ledger
        claims = ((author, ledger.claim_of(author)) for author in authors)
        # (the restart reads the counts back; O(1) with a working set, O(auctions) without)
        counts = tuple(ledger.status_counts().items())
        return DerivedState(ledger.digest, ledger.counters.accepted,
                            tuple(AuctionState.of(ledger.auction(aid), ledger.heads(aid)) for aid in auctions),
                            tuple((author, *claim) for author, claim in claims if claim is not None), complete,
                            counts)

    def _save_all_derived(self) -> None:
        """A store written before the derived state (or the claims) were kept: write it once,
        whole; a restart then reads it back instead of replaying the store."""
        save = getattr(self.store, "save_derived", None)
        if not callable(save) or len(self.store) == 0:
            return
        transaction = getattr(self.store, "transaction", None)
        with transaction() if callable(transaction) else _no_transaction():
            save(self._derived((v.id for v in self.ledger.auctions()), self.ledger.claimants(), complete=True))

    def _finished(self, accepted: Iterable[Event]) -> list[AuctionView]:
        """Views of the finished auctions ``accepted`` changed: a close finished it (or made it
        disputed), or a late bid arrived after it finished. Their analytics rows are rewritten,
        so that they depend on the set of events, not on the order they came in."""
        touched = dict.fromkeys(e.auction_id for e in accepted)
        ledger = self.ledger
        return [ledger.auction(aid) for aid in touched if ledger.status_of(aid) is not Status.OPEN]


@contextmanager
def _no_transaction() -> Iterator[None]:
    yield
