"""The in-memory network: connections between simulated nodes, with latency, loss and partitions.

The cores speak a byte-stream protocol (length-prefixed frames over TCP). The model keeps
TCP's shape -- connections are dialled, carry bytes in order, and end with a FIN -- and adds the
faults the issue asks for at the granularity of whole frames (so framing survives):

- latency: each connection gets a base one-way latency drawn from ``latency`` at dial time; each
  frame adds a uniform ``jitter``; frames stay FIFO unless reordered;
- loss / duplication / reordering: per frame, with the given probabilities. They model an
  unreliable *message* channel above the encrypted session. Its frames are AEAD records with
  counting nonces, so a frame cannot simply vanish, repeat or overtake another (the receiver
  would close the link, as it must on a real tampered stream). So a lost frame still reaches the
  receiving core, which decrypts it to keep its counter in step and drops the message
  (``discard_frames``: the message is lost, the channel is intact); a "reordered" frame is
  delayed and holds back those behind it; duplication is not modelled (``dup`` is ignored: TCP
  never duplicates and the channel would refuse a copy). The handshake frames (the first two an
  initiator sends, the first a responder sends) and plaintext ERRORs are exempt: on a real TCP
  link those bytes are retransmitted, never lost. With ``loss_mode="tcp"`` a lost frame is
  retransmitted after ``rto`` and holds back everything behind it on that connection
  (head-of-line blocking), as TCP does;
- partitions: every node has a group; a frame whose (src group, dst group) pair is not allowed is
  dropped (the link goes silent, as a real partition does; the cores notice by their timeouts),
  and dials across the partition time out. Symmetric, asymmetric and bridge partitions are just
  different sets of allowed pairs.

Deliveries are batched per receiving endpoint: every frame due by the time the delivery event
fires goes to one ``data_received`` call. Randomness comes from one ``random.Random`` handed in.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from simulations.clock import INF, Scheduler
from simulations.process import Endpoint, LostFrame, SimNode

_FIN = None  # inbox marker: the peer closed (or reset) the connection
_TRACE = struct.Struct("<dII")
_PLAIN_ERROR = b'{"t":"er'   # a plaintext ERROR frame body (before the channel exists): never lost


class Host(Protocol):
    """What the network needs of the world above it: the clock, the address book, and a way to
    run a node's core on an input (the world performs the actions the core returns)."""

    sched: Scheduler
    by_addr: dict[str, SimNode]

    @property
    def now(self) -> float: ...
    def call(self, node: SimNode, method: str, *args: object, **kwargs: object) -> None: ...
    def deliver_data(self, node: SimNode, ep: Endpoint, data: bytes) -> None: ...


@dataclass
class NetParams:
    """Link behaviour. Times are seconds of virtual time; probabilities are per frame."""

    latency: tuple[float, float] = (0.010, 0.050)
    jitter: float = 0.005
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    loss_mode: str = "message"     # "message": lost frames vanish; "tcp": they arrive ``rto`` late
    rto: float = 0.2
    dial_timeout: float = 3.0      # a dial into a partition (or to nobody) fails after this
    refused_after: float = 0.002   # a dial to a down node fails after this (RST)


@dataclass
class Partition:
    """Group of each node index (missing -> group 0) and the allowed (src, dst) group pairs."""

    groups: dict[int, int]
    allowed: frozenset[tuple[int, int]]
    kind: str = "symmetric"

    def blocks(self, src: int, dst: int) -> bool:
        return (self.groups.get(src, 0), self.groups.get(dst, 0)) not in self.allowed


def frame_spans(data: bytes) -> list[bytes]:
    """Split ``data`` into whole frames; anything not frame-aligned stays one opaque chunk."""
    n = len(data)
    if n >= 4 and int.from_bytes(data[:4], "big") + 4 == n:
        return [data]
    out: list[bytes] = []
    pos = 0
    while pos + 4 <= n:
        end = pos + 4 + int.from_bytes(data[pos:pos + 4], "big")
        if end > n:
            break
        out.append(data[pos:end])
        pos = end
    if pos < n:
        out.append(data[pos:])
    return out


@dataclass(slots=True)
class NetStats:
    frames_sent: int = 0
    frames_delivered: int = 0
    bytes_delivered: int = 0
    deliveries: int = 0             # data_received calls (batches)
    dropped_loss: int = 0
    dropped_partition: int = 0
    dropped_closed: int = 0
    duplicated: int = 0
    reordered: int = 0
    dials: int = 0
    dials_failed: int = 0
    connections: int = 0
    closes: dict[str, int] = field(default_factory=dict)


class Network:
    """Connections, in-flight frames and partitions; calls back into the world to run cores."""

    def __init__(self, world: Host, params: NetParams, rng: random.Random) -> None:
        self.world = world
        self.sched = world.sched   # the clock, read directly on the per-frame paths
        self.p = params
        self.rng = rng
        self.stats = NetStats()
        self.partition: Partition | None = None
        self.endpoints: dict[int, Endpoint] = {}
        self._next_cid = 1
        self.trace: Callable[[bytes], None] | None = None  # hash sink for delivered frames
        self.on_frames: Callable[[Endpoint, bytes], None] | None = None  # per-delivery observer
        # frame-level faults need frame boundaries; plain latency does not
        self._split = params.loss > 0 or params.dup > 0 or params.reorder > 0

    # --- partitions -------------------------------------------------------------------------

    def blocked(self, src: int, dst: int) -> bool:
        part = self.partition
        return part is not None and part.blocks(src, dst)

    # --- dialling ---------------------------------------------------------------------------

    def dial(self, node: SimNode, addr: str) -> None:
        self.stats.dials += 1
        target = self.world.by_addr.get(addr)
        w = self.world
        if target is None or target is node:
            w.sched.at(w.now + self.p.dial_timeout, self._dial_failed, node, node.incarnation, addr)
            return
        lat = self.rng.uniform(*self.p.latency)
        w.sched.at(w.now + lat, self._dial_arrive, node, node.incarnation, target, addr, lat)

    def _dial_arrive(self, node: SimNode, inc: int, target: SimNode, addr: str, lat: float) -> None:
        if not node.alive or node.incarnation != inc:
            return
        w = self.world
        if self.blocked(node.idx, target.idx) or self.blocked(target.idx, node.idx):
            # the SYN (or the SYN-ACK) vanishes: the dialler waits for its connect timeout
            w.sched.at(w.now + self.p.dial_timeout - lat, self._dial_failed, node, inc, addr)
            return
        if not target.alive:
            w.sched.at(w.now + lat + self.p.refused_after, self._dial_failed, node, inc, addr)
            return
        a = Endpoint(self._new_cid(), node, lat, True)
        b = Endpoint(self._new_cid(), target, lat, False)
        a.peer, b.peer = b, a
        self.endpoints[a.cid] = a
        self.endpoints[b.cid] = b
        node.eps[a.cid] = a
        target.eps[b.cid] = b
        self.stats.connections += 1
        # the listener learns of the connection now, the dialler one latency later (SYN-ACK)
        b.made = True
        w.call(target, "connection_made", b.cid, outbound=False,
               remote_addr=f"{node.ip}:{40000 + a.cid % 20000}")
        w.sched.at(w.now + lat, self._made_outbound, a, inc, addr)

    def _made_outbound(self, ep: Endpoint, inc: int, addr: str) -> None:
        node = ep.node
        if not node.alive or node.incarnation != inc:
            return
        if not ep.open:
            # reset before the dialler even saw it established
            self.world.call(node, "dial_failed", addr)
            self.stats.dials_failed += 1
            node.eps.pop(ep.cid, None)
            self.endpoints.pop(ep.cid, None)
            return
        ep.made = True
        self.world.call(node, "connection_made", ep.cid, outbound=True, remote_addr=addr)
        if ep.inbox:  # data that raced the SYN-ACK
            self._schedule(ep, ep.inbox[0][0])

    def _dial_failed(self, node: SimNode, inc: int, addr: str) -> None:
        if node.alive and node.incarnation == inc:
            self.stats.dials_failed += 1
            self.world.call(node, "dial_failed", addr)

    def _new_cid(self) -> int:
        cid = self._next_cid
        self._next_cid += 1
        return cid

    # --- sending ----------------------------------------------------------------------------

    def send(self, node: SimNode, cid: int, data: bytes) -> None:
        ep = node.eps.get(cid)
        if ep is None or not ep.open:
            self.stats.dropped_closed += 1
            return
        dst = ep.peer
        assert dst is not None
        if self.partition is not None and self.partition.blocks(node.idx, dst.node.idx):
            self.stats.dropped_partition += 1
            return
        now = self.sched.now
        p = self.p
        rng = self.rng
        if not self._split:
            arrival = now + ep.lat + p.jitter * rng.random()
            if arrival < ep.last_arrival:
                arrival = ep.last_arrival
            ep.last_arrival = arrival
            self.stats.frames_sent += 1
            self._push(dst, arrival, data)
            return
        tcp = p.loss_mode == "tcp"
        handshake_frames = 2 if ep.outbound else 1
        for frame in frame_spans(data):
            self.stats.frames_sent += 1
            ep.frames_sent += 1
            arrival = now + ep.lat + p.jitter * rng.random()
            item: bytes | LostFrame = frame
            if ep.frames_sent > handshake_frames and not frame.startswith(_PLAIN_ERROR, 4):
                if p.loss and rng.random() < p.loss:
                    self.stats.dropped_loss += 1
                    if tcp:
                        arrival += p.rto  # retransmitted; FIFO below holds back what follows
                    else:
                        item = LostFrame(frame)
                if p.reorder and not tcp and rng.random() < p.reorder:
                    self.stats.reordered += 1
                    arrival += rng.uniform(0.0, 2 * ep.lat + 4 * p.jitter)
            if arrival < ep.last_arrival:
                arrival = ep.last_arrival
            ep.last_arrival = arrival
            self._push(dst, arrival, item)

    def _push(self, dst: Endpoint, arrival: float, item: bytes | LostFrame | None) -> None:
        # arrivals on a link never go down (see send and _fin), so appending keeps the inbox in order
        dst.inbox.append((arrival, item))
        if arrival < dst.scheduled and dst.made:  # a dialler's inbox waits for its connection_made
            self._schedule(dst, arrival)

    def _schedule(self, ep: Endpoint, t: float) -> None:
        ep.scheduled = t
        self.sched.at(t, self._deliver, ep, t)

    # --- delivering -------------------------------------------------------------------------

    def _deliver(self, ep: Endpoint, token: float) -> None:
        if token != ep.scheduled:
            return  # superseded by an earlier delivery event
        ep.scheduled = INF
        node = ep.node
        if not ep.made:
            return
        if not ep.open or not node.alive:
            self.stats.dropped_closed += len(ep.inbox)
            ep.inbox.clear()
            self._reset_peer(ep)
            return
        now = self.sched.now
        inbox = ep.inbox
        chunks: list[bytes] = []
        fin = False
        while inbox and inbox[0][0] <= now:
            item = inbox.popleft()[1]
            if type(item) is bytes:  # the common case first
                chunks.append(item)
                continue
            if item is _FIN:
                fin = True
                break
            if isinstance(item, LostFrame):
                self._hand_over(ep, chunks)
                chunks = []
                self.world.call(node, "discard_frames", ep.cid, item.data)
                if not ep.open:
                    return
                continue
            chunks.append(item)  # bytes of another type (a core may send a bytearray)
        self._hand_over(ep, chunks)
        if fin and ep.open:
            ep.open = False
            inbox.clear()
            node.eps.pop(ep.cid, None)
            self.endpoints.pop(ep.cid, None)
            self.world.call(node, "connection_lost", ep.cid)
        elif inbox and ep.open:
            self._schedule(ep, inbox[0][0])

    def _hand_over(self, ep: Endpoint, chunks: list[bytes]) -> None:
        if not chunks:
            return
        node = ep.node
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        st = self.stats
        st.deliveries += 1
        st.frames_delivered += len(chunks) if self._split else _count_frames(data)
        st.bytes_delivered += len(data)
        if self.trace is not None:
            peer = ep.peer
            assert peer is not None
            self.trace(_TRACE.pack(self.sched.now, peer.node.idx, node.idx) + data)
        if self.on_frames is not None:
            self.on_frames(ep, data)
        self.world.deliver_data(node, ep, data)

    def _reset_peer(self, ep: Endpoint) -> None:
        """Bytes reached a dead endpoint: answer with a reset so the sender's link dies too."""
        peer = ep.peer
        if peer is not None and peer.open and not ep.rst_sent:
            ep.rst_sent = True
            self._fin(ep, peer)

    def _fin(self, src: Endpoint, dst: Endpoint) -> None:
        if self.blocked(src.node.idx, dst.node.idx):
            return
        arrival = max(self.sched.now + src.lat, src.last_arrival)
        src.last_arrival = arrival
        self._push(dst, arrival, _FIN)

    # --- closing ----------------------------------------------------------------------------

    def close(self, node: SimNode, cid: int, reason: str) -> None:
        """The core asked to close ``cid``: the peer gets a FIN after the data in flight."""
        ep = node.eps.pop(cid, None)
        if ep is None or not ep.open:
            return
        key = reason.split(":", 1)[0][:60]
        self.stats.closes[key] = self.stats.closes.get(key, 0) + 1
        self._end(ep)
        w = self.world
        w.sched.at(w.now, self._local_lost, node, node.incarnation, cid, ep.made)

    def _local_lost(self, node: SimNode, inc: int, cid: int, made: bool) -> None:
        if node.alive and node.incarnation == inc and made:
            self.world.call(node, "connection_lost", cid)

    def drop_node(self, node: SimNode) -> None:
        """A crash: every endpoint of ``node`` dies; peers get a reset (the OS sends RST)."""
        for cid in sorted(node.eps):
            self._end(node.eps[cid])
        node.eps.clear()

    def _end(self, ep: Endpoint) -> None:
        """This side of the connection is gone: drop what it had not read, tell the peer (FIN/RST)."""
        ep.open = False
        ep.inbox.clear()
        self.endpoints.pop(ep.cid, None)
        if ep.peer is not None and ep.peer.open:
            ep.rst_sent = True
            self._fin(ep, ep.peer)

    def open_links(self) -> int:
        return len(self.endpoints) // 2

    def snapshot(self) -> dict[str, Any]:
        out = asdict(self.stats)
        out["open_links"] = self.open_links()
        out["closes"] = dict(sorted(self.stats.closes.items()))
        return out


def _count_frames(data: bytes) -> int:
    n = len(data)
    if n >= 4 and int.from_bytes(data[:4], "big") + 4 == n:
        return 1
    return len(frame_spans(data))
