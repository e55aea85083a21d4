"""The gossip machines' counters: typed fields, one slotted dataclass per machine.

A misspelt counter is an AttributeError (and a mypy error), not a silent new key. ``to_json()``
gives the same names, in the same order, as the string-keyed dicts these replaced, so ``stats()``
and the simulator's report are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Counters:
    """Base: every field is an int counter, reported under its own name."""

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class LinkCounters(Counters):
    """Connections, frames and the link layer's refusals (``LinkHost``)."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    conns_in: int = 0
    conns_out: int = 0
    handshakes_ok: int = 0
    handshake_failed: int = 0
    handshake_timeouts: int = 0
    malformed: int = 0
    violations: int = 0
    rate_limited: int = 0
    inbound_rejected: int = 0
    banned_rejected: int = 0
    bans: int = 0
    peer_errors: int = 0
    internal_errors: int = 0
    dead_links: int = 0
    duplicate_links: int = 0
    handshake_evicted: int = 0
    frame_timeouts: int = 0
    undecryptable: int = 0
    inbound_evicted: int = 0


@dataclass(slots=True)
class CoreCounters(Counters):
    """Events, anti-entropy, catch-up and dialing of a node's core (``stats()["events"]``)."""

    copies_received: int = 0
    duplicates: int = 0
    accepted: int = 0
    own: int = 0
    pending: int = 0
    rejected: int = 0
    store_failures: int = 0
    unresolved: int = 0
    ae_rounds: int = 0
    ae_events_received: int = 0
    ae_events_served: int = 0
    ae_accepted: int = 0
    graft_served: int = 0
    serve_throttled: int = 0
    bootstrap_dials: int = 0
    dials: int = 0
    dial_failures: int = 0
    samples_asked: int = 0
    shuffles: int = 0
    wanta_sent: int = 0
    wanta_ids_sent: int = 0
    wanta_served: int = 0
    serve_queued: int = 0
    serve_dropped: int = 0
    push_deferred: int = 0


@dataclass(slots=True)
class PlumtreeCounters(Counters):
    """IHAVE / GRAFT / PRUNE traffic and the tree's repairs (``stats()["plumtree"]``)."""

    ihave_sent: int = 0
    ihave_ids_sent: int = 0
    ihave_recv: int = 0
    ihave_ids_recv: int = 0
    ihave_dropped: int = 0
    graft_sent: int = 0
    graft_recv: int = 0
    prune_sent: int = 0
    prune_recv: int = 0
    missing_dropped: int = 0
    optimized: int = 0
    ihave_ids_skipped: int = 0
    prune_protected: int = 0
    tree_repairs: int = 0       # GRAFTs sent because no push may reach us (tree_repair)


@dataclass(slots=True)
class DiscoveryCounters(Counters):
    """What a discovery (bootstrap) node served."""

    registered: int = 0
    heartbeats: int = 0
    samples: int = 0
    expired: int = 0


@dataclass(slots=True)
class TypeTraffic(Counters):
    """Frames and bytes (length prefix included) of one message type, each way."""

    in_frames: int = 0
    in_bytes: int = 0
    out_frames: int = 0
    out_bytes: int = 0


@dataclass(slots=True)
class TransportCounters(Counters):
    """What the asyncio adapter saw on real sockets (``Transport.stats()``)."""

    connections_in: int = 0
    connections_out: int = 0
    dials: int = 0
    dials_failed: int = 0
    conn_cap_refused: int = 0
    slow_peer_dropped: int = 0
    read_timeouts: int = 0
    write_timeouts: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    sends_to_closed: int = 0
    core_errors: int = 0
    callback_errors: int = 0


@dataclass(slots=True)
class ReconcileCounters(Counters):
    """Anti-entropy v2 sessions (``gossip/reconcile.py``; ``stats()["reconcile"]`` when enabled)."""

    rsync_sent: int = 0
    rsync_received: int = 0
    agreed: int = 0              # an rsync equal to our symbol 0: nothing sent back
    replaced: int = 0            # a session replaced by a newer one with the same peer
    symbols_sent: int = 0
    symbols_received: int = 0
    decoded: int = 0             # responder sessions that decoded the whole difference
    failed: int = 0              # responder sessions that gave up (rfail sent)
    fallbacks: int = 0           # rfail received: one prefix-tree round with that peer
    ids_pushed: int = 0          # ids the peer lacked, handed to serving (held ones leave)
    prefixes_wanted: int = 0     # 8-byte prefixes asked for in rwant
    prefix_ids_served: int = 0   # ids matched by the peer's rwant prefixes (at most 2 each)
    timeouts: int = 0            # sessions dropped after reconcile_timeout without an answer
    stale: int = 0               # rmore / rsym / rfail with no session of ours (late or unsolicited)
