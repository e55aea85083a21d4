"""The links machine of GossipCore and DiscoveryCore: framing, secure channel, limits, liveness.

``Links`` owns every connection the driver reports. It decodes frames, runs one
:class:`~p2pauction.gossip.secure.SecureSession` per connection (Noise XX bound to node keys: the
side that dialed sends message 1 on connect; every frame body before establishment is a handshake
message, every one after it is decrypted, then parsed; every message sent is encrypted),
enforces rate limits and inbound caps, keeps scores and bans, pings idle links, and hands every
authenticated message to its owner (``LinkOwner.on_message``). Each link's life is a
``LinkState``, moved only through ``LINK_TRANSITIONS``. Nothing a peer sends raises out of
``data_received``: a ProtocolError closes that connection only (after an ERROR frame with the
reason), and an unexpected exception (a bug of ours) is logged with its traceback, counted,
reported to ``on_internal_error`` (the simulator turns it into a violation) and also closes only
that connection.

Before the handshake completes the only plaintext a link sends or accepts is an ERROR (why the
connection is refused: banned, over a cap, wrong network); it carries no secret and a forged one
can do no more than an on-path TCP reset. Frames are bounded by the handshake state: before it
completes only ``handshake_frame_bytes`` per frame (checked from the length prefix), after it ``max_frame_bytes``; received bytes are
budgeted per connection (token bucket); a frame begun must complete within ``frame_timeout``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from p2pauction.errors import ChannelError, FrameError, HandshakeError, ProtocolError, UsageError
from p2pauction.gossip.actions import Action, CloseConn, Send
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import LinkCounters, TypeTraffic
from p2pauction.gossip.entropy import RandBytes
from p2pauction.gossip.framing import HEADER_BYTES, FrameDecoder, decode_body, encode_body
from p2pauction.gossip.limits import ScoreBoard, TokenBucket
from p2pauction.gossip.addresses import ip_of
from p2pauction.gossip.messages import (
    MESSAGE_TYPES, BinaryMessage, Error, Message, Ping, Pong, binary_type_name, parse_binary, parse_message,
)
from p2pauction.gossip.secure import LocalIdentity, NodeSigner, PeerIdentity, SecureSession, v1_refusal
from p2pauction.logs import get_logger

log = get_logger(__name__)

_PLAIN_ERROR = b'{"t":"error"'
"""How a plaintext ERROR body starts (compact JSON, "t" first). Before the handshake completes
this is the only plaintext a link accepts; a Noise message starts with a random public key."""


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(HEADER_BYTES, "big") + body


class MessageCache(Protocol):
    """A shared memo of frame body -> parsed message; it decides what is worth keeping."""

    def get(self, body: bytes) -> Message | None: ...
    def put(self, body: bytes, msg: Message) -> None: ...


class LinkState(Enum):
    """Where one connection is in its life; ``LINK_TRANSITIONS`` says how it moves on."""

    HANDSHAKING = "handshaking"   # connected: the Noise handshake runs (plaintext only for an ERROR)
    ESTABLISHED = "established"   # the peer's key is proven and it was admitted: messages flow
    CLOSING = "closing"           # we asked the driver to close it (after the frames queued)
    CLOSED = "closed"             # the driver reported it gone: nothing more happens to it


class LinkInput(Enum):
    AUTHENTICATED = "authenticate"   # the handshake completed and the peer was admitted
    CLOSE = "close"                  # this side closes it
    LOST = "lose"                    # the driver reports it gone (the peer or the network closed it)


_L, _LI = LinkState, LinkInput
LINK_TRANSITIONS: dict[tuple[LinkState, LinkInput], LinkState] = {
    (_L.HANDSHAKING, _LI.AUTHENTICATED): _L.ESTABLISHED,
    (_L.HANDSHAKING, _LI.CLOSE): _L.CLOSING,
    (_L.HANDSHAKING, _LI.LOST): _L.CLOSED,
    (_L.ESTABLISHED, _LI.CLOSE): _L.CLOSING,
    (_L.ESTABLISHED, _LI.LOST): _L.CLOSED,
    (_L.CLOSING, _LI.LOST): _L.CLOSED,
}
"""Every legal (state, input) -> next state. ``Link.advance`` refuses anything else (UsageError):
a link is authenticated once, closed once, and lost once."""


@dataclass(eq=False, slots=True)
class Link:
    conn: int
    outbound: bool
    remote_addr: str
    ip: str
    created: float
    decoder: FrameDecoder
    frames: TokenBucket
    bytes: TokenBucket
    session: SecureSession
    last_recv: float
    dial_addr: str | None = None          # outbound: the address we dialed
    peer: PeerIdentity | None = None      # what the handshake proved (key) and claims (addr, role)
    key: str | None = None                # set once the handshake completed: proven by the channel
    established_at: float | None = None
    state: LinkState = LinkState.HANDSHAKING
    last_useful: float | None = None      # when the peer last delivered an event we had not seen
    decrypted: int = 0                    # frames decrypted so far
    listen: str | None = None             # where the peer can be dialed
    ping_out: bool = False
    frame_started: float | None = None    # when the frame being received began (slowloris guard)
    backlogged_since: float | None = None # since when the driver holds much unsent for this peer
    # What a node's core keeps per link (unused by a discovery node):
    bootstrap_dial: bool = False          # we dialed it as a configured bootstrap (it may be a node)
    serve_queue: dict[str, None] = field(default_factory=dict)   # event ids to serve, paced
    push_budget: TokenBucket | None = None    # bytes of EVENT pushes; made at the first push
    serve_budget: TokenBucket | None = None   # events served on request; made at the first request
    serve_pace: TokenBucket | None = None     # bytes served on request; made at the first serve

    def advance(self, event: LinkInput) -> LinkState:
        """The one place a link changes state: apply LINK_TRANSITIONS; returns the state it left."""
        left = self.state
        target = LINK_TRANSITIONS.get((left, event))
        if target is None:
            raise UsageError(f"connection {self.conn}: cannot {event.value} a link that is {left.value}")
        self.state = target
        return left

    def authenticate(self, peer: PeerIdentity, now: float) -> None:
        """The handshake proved ``peer`` and the host admitted it."""
        self.advance(LinkInput.AUTHENTICATED)
        self.peer = peer
        self.key = peer.key
        self.established_at = now

    @property
    def handshaking(self) -> bool:
        return self.state is LinkState.HANDSHAKING

    @property
    def established(self) -> bool:
        """Open and authenticated: messages flow."""
        return self.state is LinkState.ESTABLISHED

    @property
    def closed(self) -> bool:
        """Closing or gone: nothing more is sent or handled on it."""
        return self.state is LinkState.CLOSING or self.state is LinkState.CLOSED

    @property
    def authenticated(self) -> bool:
        """The handshake completed (still true once the link closed): ``key`` is proven."""
        return self.key is not None

    @property
    def role(self) -> str:
        return self.peer.role if self.peer is not None else "?"


class LinkOwner(Protocol):
    """The core that runs a ``Links`` machine: it hears of each link's life and messages."""

    def on_connection(self, link: Link, now: float) -> None:
        """A connection was made (an outbound one sent Noise message 1)."""
        ...

    def on_established(self, link: Link, now: float) -> None:
        """The handshake completed: ``link.key`` is authenticated."""
        ...

    def on_message(self, link: Link, msg: Message, now: float) -> None:
        """An authenticated message other than the link's own (ERROR, PING, PONG). A
        ProtocolError raised here closes the link and penalises the peer."""
        ...

    def on_link_down(self, link: Link, now: float) -> None:
        """The link closed (by us or the peer); clean up views."""
        ...


class Links:
    """Every connection of a core: everything about connections, nothing about gossip."""

    def __init__(self, config: GossipConfig, identity: NodeSigner, *, entropy: RandBytes, role: str,
                 owner: LinkOwner, max_inbound: int, max_handshaking: int) -> None:
        """``entropy`` is for secrets and nonces: ``os.urandom`` in a real node, a SeededEntropy
        in the simulator and tests. ``role`` is what the handshake announces."""
        self.cfg = config
        self.key: str = identity.public_hex
        self.entropy = entropy
        self.role = role
        self.owner = owner
        # One Noise static key per core, signed once by the node key, shared by every session.
        self.local = LocalIdentity.create(identity, entropy)
        self._pings_sent = 0   # PING numbers: a counter (nothing secret, nothing to predict)
        self._links: dict[int, Link] = {}
        self._by_key: dict[str, Link] = {}
        self._actions: list[Action] = []
        self.scores = ScoreBoard(threshold=config.score_threshold, ban_seconds=config.ban_seconds,
                                 recovery_per_second=config.score_recovery, exempt_ips=config.exempt_ips)
        self.counters = LinkCounters()
        self.close_reasons: dict[str, int] = {}  # reason (up to its first ':') -> count
        self.by_type: dict[str, TypeTraffic] = {}  # message type -> its traffic
        self._max_inbound = max_inbound
        self._max_handshaking = max_handshaking
        # Open-link bookkeeping, kept incrementally so a busy bootstrap stays O(1) per connection.
        self._n_inbound = 0
        self._n_handshaking = 0
        self._per_ip: dict[str, int] = {}
        # Optional memo of frame body -> parsed message, shared between cores that receive the
        # same bytes (the simulator's many nodes); parsing is pure and messages are immutable.
        self.message_cache: MessageCache | None = None
        # Binary bodies (anti-entropy v2) are parsed only when the config runs it.
        self._binary = config.reconcile == "riblt"
        # The last message encoded and its frame: a broadcast sends one message object to several
        # peers, and it is encoded once. Messages are frozen, so identity means same bytes.
        self._last_encoded: tuple[Message | None, bytes] = (None, b"")
        # Called with a one-line description (and traceback) when a handler raised unexpectedly:
        # the node only logs it, the simulator reports it as a violation with its seed.
        self.on_internal_error: Callable[[str], None] | None = None
        # Set by a driver that queues sends (the asyncio transport): bytes queued to a connection
        # and not yet written. The core serves and pushes less while a peer reads slowly.
        self.send_backlog: Callable[[int], int] | None = None
        # Called with (conn, message) for every message sent: frames are encrypted, so tests and
        # tracing tools that want to see the messages look here.
        self.sent_tap: Callable[[int, Message], None] | None = None

    # --- driver inputs ----------------------------------------------------------------------------

    def connection_made(self, conn: int, *, outbound: bool, remote_addr: str, now: float) -> None:
        if conn in self._links:
            raise UsageError(f"connection id {conn} is already in use; the driver must not reuse ids")
        ip = ip_of(remote_addr)
        session = SecureSession(self.local, initiator=outbound, net=self.cfg.net, addr=self.cfg.listen_addr,
                                randbytes=self.entropy, role=self.role, max_plaintext=self.cfg.max_frame_bytes)
        link = Link(conn=conn, outbound=outbound, remote_addr=remote_addr, ip=ip, created=now,
                    decoder=FrameDecoder(self.cfg.handshake_frame_bytes),
                    frames=TokenBucket(self.cfg.rate_frames, self.cfg.rate_frames_burst, now),
                    bytes=TokenBucket(self.cfg.rate_bytes, self.cfg.rate_bytes_burst, now),
                    session=session, last_recv=now)
        self._links[conn] = link
        if outbound:
            self.counters.conns_out += 1
        else:
            self.counters.conns_in += 1
        self._n_handshaking += 1
        if not outbound:
            self._n_inbound += 1
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        if outbound:
            link.dial_addr = remote_addr
        else:
            refusal = self._inbound_refusal(link, now)
            if refusal is not None:
                self.counters.inbound_rejected += 1
                self.close(link, refusal, now)
                return
        if outbound:
            self._send_body(link, session.start(), "handshake")   # Noise message 1
        self.owner.on_connection(link, now)

    def _inbound_refusal(self, link: Link, now: float) -> str | None:
        if self.scores.is_banned("ip:" + link.ip, now):
            self.counters.banned_rejected += 1
            return "banned"
        # Over a cap, evict the oldest half-open inbound connection rather than refuse the
        # newcomer: an honest peer finishes its handshake in a round trip, so a flood of idle
        # connections (from many addresses) cannot keep it out. Authenticated links stay.
        if link.ip not in self.cfg.exempt_ips and self._per_ip.get(link.ip, 0) > self.cfg.max_inbound_per_ip:
            return f"too many connections from {link.ip} (limit {self.cfg.max_inbound_per_ip})"
        if self._n_inbound > self._max_inbound and not self._evict_half_open(link, now):
            return f"too many inbound connections (limit {self._max_inbound})"
        if self._n_handshaking > self._max_handshaking and not self._evict_half_open(link, now):
            return "too many connections in handshake"
        return None

    def _evict_half_open(self, newcomer: Link, now: float) -> bool:
        oldest = next((x for x in self._links.values()
                       if not x.outbound and x.handshaking and x is not newcomer), None)
        if oldest is None:
            return False
        self.counters.handshake_evicted += 1
        self.close(oldest, "too many connections in handshake", now)
        return True

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        link = self._links.get(conn)
        if link is None or link.closed:
            return
        link.last_recv = now
        link.ping_out = False
        counters = self.counters
        counters.bytes_in += len(data)
        if not link.bytes.take(len(data), now):
            self._rate_limited(link, "bytes", now, blame_key=False)   # bytes not yet authenticated
            return
        while link.handshaking:
            # Handshaking: one frame at a time, since the frame cap rises once it completes and
            # the peer's first encrypted frames may follow in the same chunk.
            try:
                bodies, used = link.decoder.split_prefix(data, 1)
            except FrameError as exc:
                self._malformed(link, exc, now)
                return
            self._note_partial(link, bool(bodies), now)
            if not bodies:
                return
            data = data[used:]
            counters.frames_in += 1
            if not link.frames.take(1, now):
                self._rate_limited(link, "frames", now)
                return
            self._handshake_frame(link, bodies[0], now)
            if link.closed:
                return
            if not data:
                return
        try:
            bodies = link.decoder.split(data)
        except FrameError as exc:
            self._malformed(link, exc, now, blame_key=False)   # framing is not authenticated
            return
        self._note_partial(link, bool(bodies), now)
        cache = self.message_cache
        session = link.session
        for body in bodies:
            if link.closed:
                return
            counters.frames_in += 1
            try:
                plain = session.decrypt(body)
            except ChannelError as exc:
                self._undecryptable(link, body, exc, now)
                return
            link.decrypted += 1
            msg = cache.get(plain) if cache is not None else None
            if msg is None and self._binary and plain[:1] == b"\x00":
                # A binary body (anti-entropy v2), read only when this node runs it: otherwise
                # it is a malformed frame, exactly as before v2 existed.
                self._count_in(binary_type_name(plain), len(body))
                msg = self._parse_binary(link, plain, now)
                if msg is None:
                    return
            elif msg is None:
                try:
                    frame = decode_body(plain)
                except FrameError as exc:
                    self._malformed(link, exc, now)
                    return
                t = frame["t"] if frame["t"] in MESSAGE_TYPES else "?"  # peer-chosen names are not kept
                self._count_in(t, len(body))
                msg = self._parse(link, frame, now)
                if msg is None:
                    return
                if cache is not None:
                    cache.put(plain, msg)
            else:
                self._count_in(msg.T, len(body))
            if not link.frames.take(1, now):
                self._rate_limited(link, "frames", now)
                return
            self._handle_message(link, msg, now)

    def _undecryptable(self, link: Link, body: bytes, exc: ChannelError, now: float) -> None:
        if not link.decrypted and body.startswith(_PLAIN_ERROR):
            # Our handshake completed but the peer's did not (it refused our last message): its
            # plaintext ERROR says why.
            try:
                self._dispatch(link, Error.from_wire(decode_body(body)), now)
                return
            except FrameError:
                pass
        self.counters.undecryptable += 1
        # Only the connection is to blame, not the key: whoever made a frame that fails to decrypt
        # does not hold the session keys (a relay or a path attacker corrupting an honest peer's
        # stream must not get that peer's key banned). The IP is the one that sent the bytes.
        self.close(link, f"undecryptable frame: {exc}", now, penalty=self.cfg.penalty_violation,
                    blame_key=False)

    @staticmethod
    def _note_partial(link: Link, completed: bool, now: float) -> None:
        """Track when the frame being received began (the slowloris guard)."""
        if link.decoder.partial:
            if link.frame_started is None or completed:
                link.frame_started = now
        else:
            link.frame_started = None

    def _handshake_frame(self, link: Link, body: bytes, now: float) -> None:
        """One frame body before the session is established: a Noise message, or the peer's
        plaintext ERROR (why it refuses us)."""
        if body.startswith(_PLAIN_ERROR):
            try:
                self._dispatch(link, Error.from_wire(decode_body(body)), now)
            except FrameError as exc:
                self._malformed(link, exc, now)
            return
        try:
            reply = link.session.receive_handshake(body)
        except HandshakeError as exc:
            self.counters.handshake_failed += 1
            refusal = v1_refusal(body)
            if refusal is not None:   # an old node: tell it in words it understands
                self._send_body(link, refusal, "error")
            log.info("gossip.handshake_failed", addr=link.remote_addr, reason=str(exc)[:200])
            self.close(link, str(exc), now, penalty=self.cfg.penalty_violation / 2,
                        send_error=refusal is None)
            return
        except Exception as exc:  # a bug of ours must not take the node down: drop this link only
            self._internal_error(link, "handshake", exc, now)
            return
        if reply is not None:
            self._send_body(link, reply, "handshake")
        if link.session.established:
            self._handle_established(link, now)

    def discard_frames(self, conn: int, data: bytes, now: float) -> None:
        """The simulator's message loss: whole frames whose messages are lost above the channel.
        They are decrypted (so the record counters stay in step) and dropped; any failure is
        handled as it would be for ``data_received``."""
        link = self._links.get(conn)
        if link is None or not link.established:
            return
        try:
            bodies = link.decoder.split(data)
        except FrameError as exc:
            self._malformed(link, exc, now, blame_key=False)
            return
        for body in bodies:
            try:
                link.session.decrypt(body)
            except ChannelError as exc:
                self._undecryptable(link, body, exc, now)
                return

    def _traffic(self, t: str) -> TypeTraffic:
        entry = self.by_type.get(t)
        if entry is None:
            entry = self.by_type[t] = TypeTraffic()
        return entry

    def _count_in(self, t: str, body_size: int) -> None:
        entry = self._traffic(t)
        entry.in_frames += 1
        entry.in_bytes += body_size + HEADER_BYTES

    def _malformed(self, link: Link, exc: FrameError, now: float, *, blame_key: bool = True) -> None:
        self.counters.malformed += 1
        self.close(link, f"malformed frame: {exc}", now, penalty=self.cfg.penalty_malformed,
                    blame_key=blame_key)

    def _parse(self, link: Link, frame: dict[str, Any], now: float) -> Message | None:
        """The message in a decoded frame, or None after closing a link that broke the protocol."""
        return self._parsed(link, lambda: parse_message(frame), lambda: f"parsing {str(frame.get('t'))[:20]}", now)

    def _parse_binary(self, link: Link, body: bytes, now: float) -> Message | None:
        """The message in a binary body, or None after closing a link that broke the protocol."""
        return self._parsed(link, lambda: parse_binary(body), lambda: f"parsing binary {binary_type_name(body)}", now)

    def _parsed(self, link: Link, parse: Callable[[], Message], what: Callable[[], str], now: float) -> Message | None:
        try:
            return parse()
        except ProtocolError as exc:
            self.counters.violations += 1
            self.close(link, f"protocol violation: {exc}", now, penalty=self.cfg.penalty_violation)
            return None
        except Exception as exc:  # a bug of ours must not take the node down: drop this link only
            self._internal_error(link, what(), exc, now)
            return None

    def _handle_message(self, link: Link, msg: Message, now: float) -> None:
        try:
            self._dispatch(link, msg, now)
        except ProtocolError as exc:
            self.counters.violations += 1
            self.close(link, f"protocol violation: {exc}", now, penalty=self.cfg.penalty_violation)
        except Exception as exc:  # a bug of ours must not take the node down: drop this link only
            self._internal_error(link, f"handling {msg.T}", exc, now)

    def _internal_error(self, link: Link, what: str, exc: Exception, now: float) -> None:
        """A handler raised: log it with the traceback, report it, close only this link."""
        self.counters.internal_errors += 1
        log.error("gossip.internal_error", conn=link.conn, what=what, exc_info=exc)
        if self.on_internal_error is not None:
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
            self.on_internal_error(f"{what}: {type(exc).__name__}: {exc}{where}")
        self.close(link, "internal error", now)

    def connection_lost(self, conn: int, now: float) -> None:
        link = self._links.pop(conn, None)
        if link is None:
            return
        left = link.advance(LinkInput.LOST)
        if left is not LinkState.CLOSING:   # not closed by us already: the peer or the network did
            if left is LinkState.ESTABLISHED:
                log.info("gossip.peer_lost", peer=(link.key or "")[:12], addr=link.remote_addr,
                         reason="connection closed by the peer or the network")
            self._link_down(link, now)

    # --- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, link: Link, msg: Message, now: float) -> None:
        if isinstance(msg, Error):
            self.counters.peer_errors += 1
            self.close(link, f"peer reported: {msg.reason}", now, send_error=False)
            return
        if isinstance(msg, Ping):
            self.send(link, Pong(n=msg.n))
        elif isinstance(msg, Pong):
            pass
        else:
            self.owner.on_message(link, msg, now)

    def _handle_established(self, link: Link, now: float) -> None:
        try:
            self._on_handshake_done(link, now)
        except HandshakeError as exc:
            self.counters.handshake_failed += 1
            self.close(link, str(exc), now, penalty=self.cfg.penalty_violation / 2)
        except Exception as exc:  # a bug of ours must not take the node down: drop this link only
            self._internal_error(link, "handshake", exc, now)

    def _on_handshake_done(self, link: Link, now: float) -> None:
        peer = link.session.peer
        assert peer is not None
        key = peer.key
        if self.scores.is_banned("key:" + key, now):
            self.counters.banned_rejected += 1
            raise HandshakeError("banned")
        existing = self._by_key.get(key)
        if existing is not None and not existing.closed:
            # Both ends apply the same rule, so they keep the same connection: the newer one when
            # the same side dialed both (a reconnect), else the one dialed by the smaller key.
            self.counters.duplicate_links += 1
            dialer_old = self.key if existing.outbound else key
            dialer_new = self.key if link.outbound else key
            if dialer_old != dialer_new and dialer_old == min(self.key, key):
                self.close(link, "duplicate connection", now, send_error=True)
                return
            self.close(existing, "duplicate connection (replaced)", now)
        link.authenticate(peer, now)
        link.decoder.max_size = link.session.max_body  # authenticated: full-size frames from now on
        self._n_handshaking -= 1
        self._by_key[key] = link
        self.counters.handshakes_ok += 1
        log.info("gossip.peer_connected", peer=key[:12], addr=link.remote_addr, role=peer.role,
                 direction="outbound" if link.outbound else "inbound")
        self.owner.on_established(link, now)

    # --- outputs ------------------------------------------------------------------------------

    def send(self, link: Link, msg: Message) -> None:
        """Send one message: encrypted once established; before that only an ERROR, in plaintext."""
        if link.closed:
            return
        last, plain = self._last_encoded
        if msg is not last:
            # a broadcast encodes once, encrypts per link
            plain = msg.to_bytes() if isinstance(msg, BinaryMessage) else encode_body(msg.to_wire())
            self._last_encoded = (msg, plain)
        session = link.session
        if session.established:
            body = session.encrypt(plain)
        elif isinstance(msg, Error) and link.handshaking:
            body = plain
        else:
            return   # nothing else can go out before the channel exists (or after it failed)
        if self.sent_tap is not None:
            self.sent_tap(link.conn, msg)
        self._send_body(link, body, msg.T)

    def _send_body(self, link: Link, body: bytes, t: str) -> None:
        data = _frame(body)
        self._actions.append(Send(link.conn, data))
        self.counters.frames_out += 1
        self.counters.bytes_out += len(data)
        entry = self._traffic(t)
        entry.out_frames += 1
        entry.out_bytes += len(data)

    def close(self, link: Link, reason: str, now: float, *, penalty: float = 0.0,
               send_error: bool = True, blame_key: bool = True) -> None:
        """Close one connection (ERROR frame first), penalise the peer, maybe ban it."""
        if link.closed:
            return
        if send_error:
            self.send(link, Error(reason=reason))
        left = link.advance(LinkInput.CLOSE)
        self._actions.append(CloseConn(link.conn, reason))
        tag = reason.split(":")[0][:40]
        if tag in self.close_reasons or len(self.close_reasons) < 64:
            self.close_reasons[tag] = self.close_reasons.get(tag, 0) + 1
        if left is LinkState.ESTABLISHED:
            log.info("gossip.peer_lost", peer=(link.key or "")[:12], addr=link.remote_addr, reason=reason[:120])
        if penalty > 0:
            # Only a key the channel proved: a peer that failed its handshake is known by IP alone.
            self._penalise_subjects(link, penalty, reason, now, blame_key=blame_key)
        self._link_down(link, now)

    def _penalise_subjects(self, link: Link, amount: float, reason: str, now: float, *,
                           blame_key: bool = True) -> bool:
        subjects = ["ip:" + link.ip] + (["key:" + link.key] if link.key and blame_key else [])
        banned = self.scores.penalise(subjects, amount, now)
        if banned:
            self.counters.bans += 1
            log.warning("gossip.banned", subjects=banned, reason=reason[:120])
        return bool(banned)

    def _link_down(self, link: Link, now: float) -> None:
        if not link.authenticated:
            self._n_handshaking -= 1
        if not link.outbound:
            self._n_inbound -= 1
            left = self._per_ip[link.ip] - 1
            if left:
                self._per_ip[link.ip] = left
            else:
                del self._per_ip[link.ip]
        if link.key is not None and self._by_key.get(link.key) is link:
            del self._by_key[link.key]
        self.owner.on_link_down(link, now)

    def _rate_limited(self, link: Link, what: str, now: float, *, blame_key: bool = True) -> None:
        self.counters.rate_limited += 1
        self.close(link, f"rate limit exceeded ({what})", now, penalty=self.cfg.penalty_rate_limit,
                    blame_key=blame_key)

    def penalise(self, link: Link, amount: float, reason: str, now: float) -> None:
        """Lower a peer's score without closing; ban and close when it falls below the threshold."""
        if self._penalise_subjects(link, amount, reason, now):
            self.close(link, f"banned: {reason}", now)

    def seal_for(self, conn: int, plaintext: bytes) -> bytes | None:
        """The frame that carries ``plaintext`` on an established link, encrypted in its turn
        (None if there is no such link). For hostile simulations: what a peer holding its own
        session keys can send without its core's rules."""
        link = self._links.get(conn)
        if link is None or link.closed or not link.session.established:
            return None
        return _frame(link.session.encrypt(plaintext))

    def take_actions(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def emit(self, action: Action) -> None:
        """Queue an action of the owner's (a Dial, an Accepted) in order with the link's own."""
        self._actions.append(action)

    def get(self, conn: int) -> Link | None:
        return self._links.get(conn)

    def connections(self) -> Iterable[Link]:
        """Every link held: handshaking, established, or closing until the driver confirms."""
        return self._links.values()

    # --- time ---------------------------------------------------------------------------------

    def check(self, now: float) -> None:
        """Every housekeeping tick: handshake, frame and liveness timers."""
        for link in list(self._links.values()):
            if link.closed:
                continue
            if link.handshaking:
                if now - link.created >= self.cfg.handshake_timeout:
                    self.counters.handshake_timeouts += 1
                    self.close(link, "handshake timeout", now)
                continue
            if link.frame_started is not None and now - link.frame_started >= self.cfg.frame_timeout:
                self.counters.frame_timeouts += 1
                self.close(link, f"frame not completed within {self.cfg.frame_timeout:.0f} s", now,
                            penalty=self.cfg.penalty_violation / 2, blame_key=False)  # a path can stall it
                continue
            idle = now - link.last_recv
            if idle >= self.cfg.dead_after:
                self.counters.dead_links += 1
                self.close(link, f"peer silent for {idle:.0f} s", now)
            elif idle >= self.cfg.ping_after and not link.ping_out:
                link.ping_out = True
                self._pings_sent += 1
                self.send(link, Ping(n=self._pings_sent))

    def stats(self, now: float) -> dict[str, Any]:
        open_links = [x for x in self._links.values() if not x.closed]
        return {
            "connections": len(open_links),
            "handshaking": sum(1 for x in open_links if x.handshaking),
            **self.counters.to_json(),
            "bans_active": self.scores.active_bans(now),
            "close_reasons": dict(sorted(self.close_reasons.items())),
            "by_type": {t: v.to_json() for t, v in sorted(self.by_type.items())},
        }
