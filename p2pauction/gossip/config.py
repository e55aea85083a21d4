"""GossipConfig: every timer and limit of the gossip core, with the spec's defaults.

Times are seconds of the monotonic ``now`` clock. The same dataclass configures the discovery
node (DiscoveryCore reads the link, limit and heartbeat fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2pauction.gossip.framing import MAX_FRAME_BYTES

DEFAULT_NET = "p2pauction-main"  # the network a node joins unless told otherwise


@dataclass
class GossipConfig:
    net: str
    listen_addr: str | None = None           # advertised "host:port" (0.0.0.0 is fixed up by peers)
    bootstraps: list[str] = field(default_factory=list)  # discovery nodes, or any node's address

    # membership (HyParView-flavoured)
    target_degree: int = 6
    min_degree: int = 3
    max_degree: int = 12
    passive_max: int = 100
    shuffle_interval: float = 10.0
    shuffle_size: int = 8
    dials_per_tick: int = 2                  # new outbound dials per housekeeping tick
    # Every refresh interval a node at its target degree dials one random passive peer and then
    # drops one of its *lazy* links: the overlay keeps mixing (and heals after a partition) while
    # the Plumtree eager tree is left alone. 0 disables it.
    refresh_interval: float = 30.0
    dial_backoff_base: float = 1.0
    dial_backoff_cap: float = 60.0
    housekeeping_interval: float = 1.0       # granularity of timeouts, pings and maintenance

    # links
    handshake_timeout: float = 5.0
    ping_after: float = 10.0                 # idle seconds before a PING
    dead_after: float = 30.0                 # silent seconds before the link is dropped
    max_frame_bytes: int = MAX_FRAME_BYTES
    # Before the handshake completes only handshake-sized frames are accepted (Noise message 2
    # is about 600 bytes with the longest address), checked from the length prefix, so an
    # unauthenticated connection parks at most this much. Frames that follow the handshake in the
    # same read are split after it completed, under ``max_frame_bytes``.
    handshake_frame_bytes: int = 1024
    # Once its first byte arrived a frame must be complete within this (slowloris guard).
    frame_timeout: float = 20.0

    # discovery (client side and server side)
    heartbeat_interval: float = 5.0
    heartbeat_missed: int = 3                # the bootstrap expires an entry after this many
    sample_size: int = 16
    sample_interval: float = 5.0             # min seconds between SAMPLE requests
    discovery_max_entries: int = 100_000

    # dissemination
    dissemination: str = "plumtree"          # "plumtree" | "flood" | "none" (anti-entropy only)
    ihave_interval: float = 0.25
    ihave_batch: int = 256
    ihave_queue_max: int = 4096              # per peer; overflow is dropped (anti-entropy covers it)
    graft_timeout: float = 1.0
    graft_retry: float = 0.5
    missing_max: int = 10_000
    hops_memory: int = 4096                  # recent events whose hop count is remembered
    # Plumtree's optimisation (re-route the tree through a lazy peer that saves hops), judged on
    # the mean gain over ``optimize_samples`` events per (announcer, parent) pair; 0 disables it.
    # Off by default: under many concurrent sources it raised duplicates (docs/protocol.md).
    optimize_threshold: int = 0
    optimize_samples: int = 8
    optimize_cooldown: float = 1.0           # at most one re-rooting per this many seconds (damping)
    # Tree stability under concurrent sources (see Plumtree.on_duplicate and add_peer):
    prune_protect: float = 0.3               # no PRUNE of a peer that gave us a first copy this recently
    prune_one_way: bool = True               # a duplicate PRUNEs its sender; we keep pushing to it
    lazy_new_links: bool = True              # a link added once the tree formed starts lazy
    # Tree repair under many sources (issue 13; off by default until a 1,000-seed sweep ran with
    # them: benchmarks/late_deliveries.py measures both, docs/protocol.md says why):
    tree_repair: bool = False                # GRAFT when no push may reach us (protocol.md)
    source_parents: int = 0                  # no PRUNE of the first pusher of the last N sources

    # dependency-aware catch-up: the missing deps of pending events are asked for (WANTA)
    fetch_interval: float = 0.25             # how often missing deps are looked at
    fetch_timeout: float = 3.0               # an unanswered request is sent again (to another peer)
    fetch_ancestors: int = 512               # events one WANTA answer walks back, at most
    fetch_peers: int = 2                     # peers asked at once, for disjoint ids
    fetch_track_max: int = 10_000            # missing dep ids remembered (oldest forgotten first)
    # pacing: events served (GRAFT, anti-entropy and WANTA answers) leave at most this many bytes
    # per second per peer, the rest waits in a bounded per-peer queue for the next ticks; pushes
    # of new events over their own budget are announced (IHAVE) instead. A large catch-up or a
    # burst of thousands of events therefore never floods a peer's send queue.
    serve_pace_bytes: float = 1 * 2**20
    serve_pace_burst: float = 1 * 2**20
    serve_queue_max: int = 8192              # ids waiting to be served per peer; more are dropped
    serve_tick: float = 0.05                 # how often the serve queues are drained
    serve_backlog_max: int = 1 * 2**20      # a peer with more queued unsent (driver's count) waits
    # ... for at most this long; a peer that has read nothing meanwhile is not reading: sending
    # resumes and the transport drops it when its send queue overflows (slow_peer_dropped).
    serve_backlog_patience: float = 10.0
    push_rate_bytes: float = 1 * 2**20
    push_burst_bytes: float = 2 * 2**20

    # anti-entropy
    anti_entropy: bool = True
    ae_interval: float = 10.0
    ae_jitter: float = 0.2                   # fraction of the interval, +-
    ae_followup: float = 0.5                 # next round this soon after a round that repaired something
    ae_depth: int = 4                        # leaf depth of the 16-ary prefix tree
    ae_serve_max: int = 512                  # events served per request
    ae_expand_max: int = 256                 # differing buckets handled per TREE message
    ae_ids_max: int = 8                      # a differing bucket this small is answered by its ids, not its subtree
    ae_announce: bool = True                 # IHAVE events recovered by anti-entropy to other peers
    ae_push_max: int = 8                     # an EVENTS answer this small is pushed on like new events
    events_chunk_bytes: int = 256 * 1024
    # Which anti-entropy opens a round: "prefix" (the prefix tree, SYNC/TREE/IDS) or "riblt"
    # (anti-entropy v2, docs/protocol.md: rateless IBLT symbols in binary frames, bytes growing with
    # the difference, not the history; the prefix tree stays as its fallback). Every node of a
    # network must use the same: a "prefix" node reads a binary frame as a malformed one.
    reconcile: str = "prefix"
    reconcile_timeout: float = 5.0           # a v2 session waiting this long for its peer is dropped
    # Coded symbols kept (and served per session) by v2: decodes a difference of up to about
    # capacity / 1.4 ids in one round (2,900 at 4,096); the same on every node of a network.
    reconcile_capacity: int = 4096
    # Events served per peer (GRAFT and anti-entropy answers): a small request must not buy a
    # large answer without bound (amplification); what is skipped is asked again later.
    serve_rate: float = 2000.0
    serve_burst: float = 10_000.0

    # eclipse resistance: of the ``max_degree`` node links, min(outbound_slots, target_degree)
    # are kept for links this node dialed. Inbound links beyond the rest evict an inbound peer
    # chosen by eviction.select_inbound_to_evict (never an outbound one), and the node keeps
    # dialing until it has that many outbound links, however many peers dialed it.
    outbound_slots: int = 4

    # limits
    max_inbound: int = 64
    max_inbound_per_ip: int = 8
    max_handshaking: int = 64                # connections not yet authenticated
    # never IP-banned nor per-IP capped: loopback by default, since local test networks share it
    exempt_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    discovery_max_inbound: int = 20_000     # the bootstrap keeps one link per registered node
    discovery_max_handshaking: int = 1024
    # Per-connection flood guards, far above honest traffic (an honest burst must never trip them:
    # the link is closed and the peer penalised when they do).
    rate_frames: float = 2000.0              # frames per second per connection
    rate_frames_burst: float = 10_000.0
    # Received bytes per authenticated peer: an honest peer's paced answers and pushes stay far
    # below (about 2 MiB/s at most), so large valid frames cannot monopolise the node.
    rate_bytes: float = 4 * 2**20            # bytes per second per connection
    rate_bytes_burst: float = 8 * 2**20
    score_threshold: float = 100.0
    ban_seconds: float = 600.0
    score_recovery: float = 0.1              # points per second back towards 0
    penalty_invalid_event: float = 20.0
    # per pending event of this peer that left the buffer unresolved (evicted, or its dep was
    # invalid): small, as an honest peer's events resolve; 400 in a short while ban a flooder
    penalty_unresolved_event: float = 0.25
    # the ledger expires pending events still unresolved after 10 sweeps, one every this many s
    pending_sweep_interval: float = 30.0
    penalty_malformed: float = 60.0         # two malformed frames in a short while: banned
    penalty_violation: float = 50.0
    penalty_rate_limit: float = 50.0

    def __post_init__(self) -> None:
        from p2pauction.errors import UsageError

        if not 1 <= self.min_degree <= self.target_degree <= self.max_degree:
            raise UsageError("degrees must satisfy 1 <= min_degree <= target_degree <= max_degree")
        if self.outbound_slots < 0:
            raise UsageError("outbound_slots must be 0 or more")
        if self.dissemination not in ("plumtree", "flood", "none"):
            raise UsageError(f"dissemination must be 'plumtree', 'flood' or 'none', not {self.dissemination!r}")
        if self.source_parents < 0:
            raise UsageError("source_parents must be 0 (off) or more (sources whose first pusher is kept)")
        if self.optimize_samples < 1:
            raise UsageError("optimize_samples must be at least 1 (events averaged before the tree re-routes)")
        if not 1 <= self.ae_depth <= 8:
            raise UsageError("ae_depth must be between 1 and 8")
        if self.reconcile not in ("prefix", "riblt"):
            raise UsageError(f"reconcile must be 'prefix' or 'riblt', not {self.reconcile!r}")
        if not 16 <= self.reconcile_capacity <= 1 << 16:
            raise UsageError("reconcile_capacity must be 16..65536 (coded symbols kept by anti-entropy v2)")
        if not self.reconcile_timeout > 0:
            raise UsageError("reconcile_timeout must be positive (seconds a v2 session waits for its peer)")
        if not 0 <= self.ae_ids_max <= 512:
            raise UsageError("ae_ids_max must be between 0 and 512 (the ids one bucket may list)")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs, typed like the GossipConfig field they override (UsageError)."""
    import dataclasses

    from p2pauction import errors

    fields = {f.name: f for f in dataclasses.fields(GossipConfig)}
    defaults = GossipConfig(net="x")
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields or key in ("net", "listen_addr", "bootstraps"):
            raise errors.UsageError(f"--set {item!r}: expected KEY=VALUE with KEY a gossip setting")
        current = getattr(defaults, key)
        try:
            if isinstance(current, bool):
                value: Any = text.lower() in ("1", "true", "yes", "on")
            elif isinstance(current, int):
                value = int(text)
            elif isinstance(current, float):
                value = float(text)
            elif isinstance(current, tuple):
                value = tuple(x for x in text.split(",") if x)
            else:
                value = text
        except ValueError:
            raise errors.UsageError(f"--set {item!r}: {text!r} is not a valid {type(current).__name__}") from None
        out[key] = value
    return out
