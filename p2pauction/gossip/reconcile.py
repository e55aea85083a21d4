"""Anti-entropy v2 sessions: the sans-IO machine around ``riblt`` (docs/protocol.md, "Anti-entropy v2").

A round has two sides, each at most one session per peer:

- The *initiator* (``open``) freezes a snapshot of its coded symbols, so the stream it serves is of
  one set while events keep arriving, and sends ``RSYNC`` (its size and symbol 0). It answers each
  ``RMORE`` with the next symbols (``RSYM``), at most the snapshot's ``capacity`` in all, serves
  the events an ``RWANT`` names by 8-byte id prefix (at most 2 per prefix: a mined prefix
  collision buys no amplification), and on ``RFAIL`` asks the core for one prefix-tree round.
- The *responder* (``on_rsync``) decodes the stream against its own snapshot. When symbol 0 agrees
  it sends nothing and keeps nothing (an agreeing round is one frame). Otherwise it asks for more
  (``RMORE``, sizes from ``Decoder.next_request``) until decoded, then hands the core the ids the
  initiator lacks (served as EVENTS in store order by the core's serving path: only events it
  holds leave) and sends ``RWANT`` with the prefixes of the ids it lacks; if the decoder gives up
  it does the same with what it recovered and sends ``RFAIL``.

Why state is bounded: a session is a snapshot (3 x capacity ints) or a decoder (bounded by
capacity), one per peer and direction, dropped on the last message, after ``reconcile_timeout``
of silence (driven by the core's ``now``: no clock here), or when the link closes. Anything a
peer sends that no honest peer could (a batch out of sequence, more symbols than the capacity,
symbols that decode to an impossible set) raises a ProtocolError (a ReconcileError from the
decoder): the link closes as a violation. A late answer to a session already dropped or
replaced, or an RMORE past the capacity, is ignored (counted ``stale``): an honest peer that was
merely slow, or that answered a round we replaced by a follow-up, sends those too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import ReconcileCounters
from p2pauction.gossip.messages import (
    MAX_WANT_PREFIXES, WANT_PREFIX_BYTES, Message, RFail, RMore, RSym, RSync, RWant,
)
from p2pauction.gossip.riblt import MAX_BATCH_SYMBOLS, Decoder, DecodeStatus, SymbolCache, SymbolPrefix

IDS_PER_PREFIX = 2        # events served per RWANT prefix, at most
HOPELESS_FACTOR = 1.4     # symbols an honest decode needs per differing id (about): a difference
                          # known to need more than the capacity fails at once, not after 170 KB
_U32 = (1 << 32) - 1


@dataclass
class Step:
    """What the core does after one v2 message: send ``replies`` on the link, serve ``serve`` (ids
    the peer lacks; the core keeps the ones it holds, in store order), and with ``fallback`` run
    one prefix-tree round (SYNC) with that peer."""

    replies: list[Message] = field(default_factory=list)
    serve: list[str] = field(default_factory=list)
    fallback: bool = False


@dataclass(slots=True)
class _Outgoing:
    """Initiator side: the frozen symbols served to one peer. ``snapshot`` is dropped (None) on the
    first RWANT; the record stays until RFAIL or the timer, so an RFAIL that follows the RWANTs
    of a failed decode still falls back."""

    conn: int
    snapshot: SymbolPrefix | None
    sent: int
    deadline: float


@dataclass(slots=True)
class _Incoming:
    """Responder side: the decoder of one peer's stream.

    An RSYM need not match our last RMORE's size: when the initiator replaced its round, the
    answers to our earlier RMOREs come from its new snapshot, in sequence with the decoder of
    the new RSYNC (one link is FIFO). The decoder's own checks (in sequence, within its limit,
    consistent) are what an RSYM must pass."""

    conn: int
    decoder: Decoder
    deadline: float


class Reconciler:
    """Every v2 session of one node, over its maintained :class:`SymbolCache`."""

    def __init__(self, config: GossipConfig, cache: SymbolCache,
                 counters: ReconcileCounters | None = None) -> None:
        self.cfg = config
        self.cache = cache
        self.counters = counters if counters is not None else ReconcileCounters()
        self._out: dict[str, _Outgoing] = {}
        self._in: dict[str, _Incoming] = {}

    # --- bookkeeping ----------------------------------------------------------------------------

    def sessions(self) -> tuple[int, int]:
        """(initiator sessions, responder sessions) held now."""
        return len(self._out), len(self._in)

    def forget(self, conn: int) -> None:
        """The link ``conn`` closed: drop every session that ran on it."""
        for table in (self._out, self._in):
            for key in [k for k, s in table.items() if s.conn == conn]:
                del table[key]

    def expire(self, now: float) -> None:
        """Drop the sessions whose peer stayed silent ``reconcile_timeout`` (the core's tick)."""
        for key in [k for k, s in self._out.items() if s.deadline <= now]:
            del self._out[key]     # an agreeing round ends this way: not counted
        for key in [k for k, s in self._in.items() if s.deadline <= now]:
            del self._in[key]
            self.counters.timeouts += 1

    # --- initiator ------------------------------------------------------------------------------

    def open(self, key: str, conn: int, now: float) -> RSync:
        """Start a round with ``key`` (replacing ours in progress): the RSYNC to send."""
        snapshot = self.cache.snapshot()
        if self._out.pop(key, None) is not None:
            self.counters.replaced += 1
        self._out[key] = _Outgoing(conn, snapshot, 1, now + self.cfg.reconcile_timeout)
        self.counters.rsync_sent += 1
        self.counters.symbols_sent += 1
        return RSync(size=min(self.cache.size, _U32), batch=snapshot.batch(0, 1))

    def on_rmore(self, key: str, conn: int, msg: RMore, now: float) -> Step:
        session = self._out.get(key)
        if session is None or session.conn != conn or session.snapshot is None:
            self.counters.stale += 1
            return Step()
        snapshot = session.snapshot
        if session.sent >= len(snapshot):
            # Past the capacity: nothing more to serve. Not a violation: the RMOREs of a round
            # we replaced (a follow-up round 0.5 s later) are served from the new snapshot, so
            # an honest peer can ask for more than one decoder would.
            self.counters.stale += 1
            return Step()
        batch = snapshot.batch(session.sent, msg.n)
        session.sent = batch.stop
        session.deadline = now + self.cfg.reconcile_timeout
        self.counters.symbols_sent += len(batch.symbols)
        return Step(replies=[RSym(batch=batch)])

    def on_rwant(self, key: str, conn: int, msg: RWant, lookup: Callable[[str], list[str]]) -> Step:
        """Serve the events whose ids start with the prefixes (``lookup``: hex prefix -> held ids).
        Served even without a session: a long RWANT takes several frames, and serving stays
        bounded (2 per prefix, 512 prefixes a frame, the serving budget)."""
        session = self._out.get(key)
        if session is not None and session.conn == conn:
            session.snapshot = None      # the round is over: free the symbols
        serve: list[str] = []
        for prefix in msg.prefixes:
            serve.extend(lookup(prefix.hex())[:IDS_PER_PREFIX])
        self.counters.prefix_ids_served += len(serve)
        return Step(serve=serve)

    def on_rfail(self, key: str, conn: int) -> Step:
        session = self._out.get(key)
        if session is None or session.conn != conn:
            self.counters.stale += 1
            return Step()
        del self._out[key]
        self.counters.fallbacks += 1
        return Step(fallback=True)

    # --- responder ------------------------------------------------------------------------------

    def on_rsync(self, key: str, conn: int, msg: RSync, now: float, known: Callable[[str], bool]) -> Step:
        """``known``: held or already on its way (not wanted again)."""
        self.counters.rsync_received += 1
        self.counters.symbols_received += 1
        if self._in.pop(key, None) is not None:
            self.counters.replaced += 1
        theirs = msg.batch.symbols[0]
        cache = self.cache
        mine = cache.snapshot(1).symbol(0)
        if (msg.size == min(cache.size, _U32) and theirs.id_xor == mine.id_xor
                and theirs.hash_xor == mine.hash_xor and theirs.count == mine.count % 256):
            self.counters.agreed += 1          # same set: nothing to send, nothing to keep
            return Step()
        decoder = Decoder(cache.snapshot(), remote_size=msg.size)
        session = _Incoming(conn, decoder, now + self.cfg.reconcile_timeout)
        return self._after(key, session, decoder.add(msg.batch), now, known)

    def on_rsym(self, key: str, conn: int, msg: RSym, now: float, known: Callable[[str], bool]) -> Step:
        session = self._in.get(key)
        if session is None or session.conn != conn:
            self.counters.stale += 1
            return Step()
        batch = msg.batch
        self.counters.symbols_received += len(batch.symbols)
        status = session.decoder.add(batch)     # out of sequence, over the limit, inconsistent: ReconcileError
        return self._after(key, session, status, now, known)

    def _after(self, key: str, session: _Incoming, status: DecodeStatus, now: float,
               known: Callable[[str], bool]) -> Step:
        decoder = session.decoder
        if status is DecodeStatus.NEED_MORE and decoder.lower_bound() * HOPELESS_FACTOR > decoder.max_symbols:
            status = DecodeStatus.FAILED        # e.g. a node back from a long absence: fall back now
        if status is DecodeStatus.NEED_MORE:
            n = min(decoder.next_request(), MAX_BATCH_SYMBOLS)
            session.deadline = now + self.cfg.reconcile_timeout
            self._in[key] = session
            return Step(replies=[RMore(n=n)])
        self._in.pop(key, None)
        step = Step(serve=decoder.local_only)
        self.counters.ids_pushed += len(step.serve)
        wanted = [bytes.fromhex(i[:2 * WANT_PREFIX_BYTES]) for i in decoder.remote_only if not known(i)]
        self.counters.prefixes_wanted += len(wanted)
        for at in range(0, len(wanted), MAX_WANT_PREFIXES):
            step.replies.append(RWant(prefixes=tuple(wanted[at:at + MAX_WANT_PREFIXES])))
        if not step.replies:
            step.replies.append(RWant(prefixes=()))   # tells the initiator the round is over
        if status is DecodeStatus.DONE:
            self.counters.decoded += 1
        else:
            self.counters.failed += 1
            step.replies.append(RFail())
        return step

