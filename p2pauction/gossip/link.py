"""Connections shared by GossipCore and DiscoveryCore: framing, handshake, limits, liveness.

``LinkHost`` owns every connection the driver reports. It decodes frames, runs the handshake,
enforces rate limits and inbound caps, keeps scores and bans, pings idle links, and hands every
authenticated message to the subclass (``_on_message``). Nothing a peer sends raises out of
``data_received``: a ProtocolError closes that connection only (after an ERROR frame with the
reason), and an unexpected exception (a bug of ours) is logged with its traceback, counted,
reported to ``on_internal_error`` (the simulator turns it into a violation) and also closes only
that connection.

Frames are bounded by the handshake state: before it completes only ``handshake_frame_bytes``
per frame (checked from the length prefix), after it ``max_frame_bytes``; received bytes are
budgeted per connection (token bucket); a frame begun must complete within ``frame_timeout``.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from p2pauction.errors import FrameError, HandshakeError, ProtocolError, UsageError
from p2pauction.gossip import handshake
from p2pauction.gossip.actions import Action, CloseConn, Send
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.framing import HEADER_BYTES, FrameDecoder, decode_body, encode_frame
from p2pauction.gossip.limits import ScoreBoard, TokenBucket
from p2pauction.gossip.membership import ip_of
from p2pauction.gossip.messages import (
    MESSAGE_TYPES, PROTOCOL_VERSION, Auth, Error, Hello, Message, Ping, Pong, parse_message,
)
from p2pauction.logs import get_logger

log = get_logger(__name__)


class MessageCache(Protocol):
    """A shared memo of frame body -> parsed message; it decides what is worth keeping."""

    def get(self, body: bytes) -> Message | None: ...
    def put(self, body: bytes, msg: Message) -> None: ...


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
    nonce: str
    last_recv: float
    dial_addr: str | None = None          # outbound: the address we dialed
    hello: Hello | None = None            # the peer's HELLO (not yet authenticated)
    key: str | None = None                # set once the peer's AUTH verified
    established_at: float | None = None
    listen: str | None = None             # where the peer can be dialed
    ping_out: bool = False
    frame_started: float | None = None    # when the frame being received began (slowloris guard)
    backlogged_since: float | None = None # since when the driver holds much unsent for this peer
    closed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def established(self) -> bool:
        return self.key is not None

    @property
    def role(self) -> str:
        return self.hello.role if self.hello is not None else "?"


def _counter_names() -> list[str]:
    return ["frames_in", "frames_out", "bytes_in", "bytes_out", "conns_in", "conns_out",
            "handshakes_ok", "handshake_failed", "handshake_timeouts", "malformed", "violations",
            "rate_limited", "inbound_rejected", "banned_rejected", "bans", "peer_errors",
            "internal_errors", "dead_links", "duplicate_links", "handshake_evicted", "frame_timeouts"]


class LinkHost:
    """Base of the sans-IO cores: everything about connections, nothing about gossip."""

    ROLE = "node"

    def __init__(self, config: GossipConfig, identity: Any, rng: random.Random, now: float) -> None:
        self.cfg = config
        self.identity = identity
        self.key: str = identity.public_hex
        self.rng = rng
        self._links: dict[int, Link] = {}
        self._by_key: dict[str, Link] = {}
        self._actions: list[Action] = []
        self.scores = ScoreBoard(threshold=config.score_threshold, ban_seconds=config.ban_seconds,
                                 recovery_per_second=config.score_recovery, exempt_ips=config.exempt_ips)
        self.counters: dict[str, int] = dict.fromkeys(_counter_names(), 0)
        self.close_reasons: dict[str, int] = {}  # reason (up to its first ':') -> count
        self.by_type: dict[str, list[int]] = {}  # type -> [in frames, in bytes, out frames, out bytes]
        self._next_housekeeping = now + config.housekeeping_interval
        self._max_inbound = config.max_inbound
        self._max_handshaking = config.max_handshaking
        # Open-link bookkeeping, kept incrementally so a busy bootstrap stays O(1) per connection.
        self._n_inbound = 0
        self._n_handshaking = 0
        self._per_ip: dict[str, int] = {}
        # Optional memo of frame body -> parsed message, shared between cores that receive the
        # same bytes (the simulator's many nodes); parsing is pure and messages are immutable.
        self.message_cache: MessageCache | None = None
        # The last message encoded and its frame: a broadcast sends one message object to several
        # peers, and it is encoded once. Messages are frozen, so identity means same bytes.
        self._last_encoded: tuple[Message | None, bytes] = (None, b"")
        # Called with a one-line description (and traceback) when a handler raised unexpectedly:
        # the node only logs it, the simulator reports it as a violation with its seed.
        self.on_internal_error: Callable[[str], None] | None = None
        # Set by a driver that queues sends (the asyncio transport): bytes queued to a connection
        # and not yet written. The core serves and pushes less while a peer reads slowly.
        self.send_backlog: Callable[[int], int] | None = None

    # --- driver inputs ----------------------------------------------------------------------------

    def connection_made(self, conn: int, *, outbound: bool, remote_addr: str, now: float) -> None:
        if conn in self._links:
            raise UsageError(f"connection id {conn} is already in use; the driver must not reuse ids")
        ip = ip_of(remote_addr)
        link = Link(conn=conn, outbound=outbound, remote_addr=remote_addr, ip=ip, created=now,
                    decoder=FrameDecoder(self.cfg.handshake_frame_bytes),
                    frames=TokenBucket(self.cfg.rate_frames, self.cfg.rate_frames_burst, now),
                    bytes=TokenBucket(self.cfg.rate_bytes, self.cfg.rate_bytes_burst, now),
                    nonce=handshake.new_nonce(self.rng), last_recv=now)
        self._links[conn] = link
        self.counters["conns_out" if outbound else "conns_in"] += 1
        self._n_handshaking += 1
        if not outbound:
            self._n_inbound += 1
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        if outbound:
            link.dial_addr = remote_addr
        else:
            refusal = self._inbound_refusal(link, now)
            if refusal is not None:
                self.counters["inbound_rejected"] += 1
                self._close(link, refusal, now)
                return
        self._send(link, Hello(net=self.cfg.net, ver=PROTOCOL_VERSION, key=self.key,
                               addr=self.cfg.listen_addr, nonce=link.nonce, role=self.ROLE))
        self._on_connection(link, now)

    def _inbound_refusal(self, link: Link, now: float) -> str | None:
        if self.scores.is_banned("ip:" + link.ip, now):
            self.counters["banned_rejected"] += 1
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
                       if not x.outbound and not x.established and not x.closed and x is not newcomer), None)
        if oldest is None:
            return False
        self.counters["handshake_evicted"] += 1
        self._close(oldest, "too many connections in handshake", now)
        return True

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        link = self._links.get(conn)
        if link is None or link.closed:
            return
        link.last_recv = now
        link.ping_out = False
        counters = self.counters
        counters["bytes_in"] += len(data)
        if not link.bytes.take(len(data), now):
            self._rate_limited(link, "bytes", now)
            return
        try:
            bodies = link.decoder.split(data)
        except FrameError as exc:
            self._malformed(link, exc, now)
            return
        if link.decoder.partial:
            if link.frame_started is None or bodies:
                link.frame_started = now
        else:
            link.frame_started = None
        cache = self.message_cache
        for body in bodies:
            if link.closed:
                return
            counters["frames_in"] += 1
            msg = cache.get(body) if cache is not None else None
            if msg is None:
                try:
                    frame = decode_body(body)
                except FrameError as exc:
                    self._malformed(link, exc, now)
                    return
                t = frame["t"] if frame["t"] in MESSAGE_TYPES else "?"  # peer-chosen names are not kept
                self._count_in(t, len(body))
                msg = self._parse(link, frame, now)
                if msg is None:
                    return
                if cache is not None:
                    cache.put(body, msg)
            else:
                self._count_in(msg.T, len(body))
            if not link.frames.take(1, now):
                self._rate_limited(link, "frames", now)
                return
            self._handle_message(link, msg, now)

    def _count_in(self, t: str, body_size: int) -> None:
        entry = self.by_type.get(t)
        if entry is None:
            entry = self.by_type.setdefault(t, [0, 0, 0, 0])
        entry[0] += 1
        entry[1] += body_size + HEADER_BYTES

    def _malformed(self, link: Link, exc: FrameError, now: float) -> None:
        self.counters["malformed"] += 1
        self._close(link, f"malformed frame: {exc}", now, penalty=self.cfg.penalty_malformed)

    def _parse(self, link: Link, frame: dict[str, Any], now: float) -> Message | None:
        """The message in a decoded frame, or None after closing a link that broke the protocol."""
        try:
            return parse_message(frame)
        except ProtocolError as exc:
            self.counters["violations"] += 1
            self._close(link, f"protocol violation: {exc}", now, penalty=self.cfg.penalty_violation)
            return None
        except Exception as exc:  # a bug of ours must not take the node down: drop this link only
            self._internal_error(link, f"parsing {str(frame.get('t'))[:20]}", exc, now)
            return None

    def _handle_message(self, link: Link, msg: Message, now: float) -> None:
        try:
            self._dispatch(link, msg, now)
        except HandshakeError as exc:
            self.counters["handshake_failed"] += 1
            self._close(link, str(exc), now, penalty=self.cfg.penalty_violation / 2)
        except ProtocolError as exc:
            self.counters["violations"] += 1
            self._close(link, f"protocol violation: {exc}", now, penalty=self.cfg.penalty_violation)
        except Exception as exc:  # a bug of ours must not take the node down: drop this link only
            self._internal_error(link, f"handling {msg.T}", exc, now)

    def _internal_error(self, link: Link, what: str, exc: Exception, now: float) -> None:
        """A handler raised: log it with the traceback, report it, close only this link."""
        self.counters["internal_errors"] += 1
        log.error("gossip.internal_error", conn=link.conn, what=what, exc_info=exc)
        if self.on_internal_error is not None:
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
            self.on_internal_error(f"{what}: {type(exc).__name__}: {exc}{where}")
        self._close(link, "internal error", now)

    def connection_lost(self, conn: int, now: float) -> None:
        link = self._links.pop(conn, None)
        if link is None:
            return
        if not link.closed:
            link.closed = True
            self._link_down(link, now)

    # --- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, link: Link, msg: Message, now: float) -> None:
        if isinstance(msg, Error):
            self.counters["peer_errors"] += 1
            self._close(link, f"peer reported: {msg.reason}", now, send_error=False)
            return
        if not link.established:
            if isinstance(msg, Hello):
                self._on_hello(link, msg, now)
            elif isinstance(msg, Auth):
                self._on_auth(link, msg, now)
            else:
                raise ProtocolError(f"{msg.T} before the handshake completed")
            return
        if isinstance(msg, Ping):
            self._send(link, Pong(n=msg.n))
        elif isinstance(msg, Pong):
            pass
        elif isinstance(msg, (Hello, Auth)):
            raise ProtocolError(f"{msg.T} after the handshake")
        else:
            self._on_message(link, msg, now)

    def _on_hello(self, link: Link, hello: Hello, now: float) -> None:
        if link.hello is not None:
            raise ProtocolError("second HELLO")
        handshake.check_hello(hello, net=self.cfg.net, own_key=self.key)
        if self.scores.is_banned("key:" + hello.key, now):
            self.counters["banned_rejected"] += 1
            raise HandshakeError("banned")
        link.hello = hello
        self._send(link, handshake.make_auth(self.identity, hello.nonce, self.cfg.net))

    def _on_auth(self, link: Link, auth: Auth, now: float) -> None:
        if link.hello is None:
            raise ProtocolError("AUTH before HELLO")
        handshake.check_auth(auth, their_key=link.hello.key, our_nonce=link.nonce, net=self.cfg.net)
        key = link.hello.key
        existing = self._by_key.get(key)
        if existing is not None and not existing.closed:
            # Both ends apply the same rule, so they keep the same connection: the newer one when
            # the same side dialed both (a reconnect), else the one dialed by the smaller key.
            self.counters["duplicate_links"] += 1
            dialer_old = self.key if existing.outbound else key
            dialer_new = self.key if link.outbound else key
            if dialer_old != dialer_new and dialer_old == min(self.key, key):
                self._close(link, "duplicate connection", now, send_error=True)
                return
            self._close(existing, "duplicate connection (replaced)", now)
        link.key = key
        link.established_at = now
        link.decoder.max_size = self.cfg.max_frame_bytes  # authenticated: full-size frames from now on
        self._n_handshaking -= 1
        self._by_key[key] = link
        self.counters["handshakes_ok"] += 1
        self._on_established(link, now)

    # --- outputs ------------------------------------------------------------------------------

    def _send(self, link: Link, msg: Message) -> None:
        if link.closed:
            return
        last, data = self._last_encoded
        if msg is not last:
            data = encode_frame(msg.to_wire())
            self._last_encoded = (msg, data)
        self._actions.append(Send(link.conn, data))
        self.counters["frames_out"] += 1
        self.counters["bytes_out"] += len(data)
        entry = self.by_type.get(msg.T)
        if entry is None:
            entry = self.by_type.setdefault(msg.T, [0, 0, 0, 0])
        entry[2] += 1
        entry[3] += len(data)

    def _close(self, link: Link, reason: str, now: float, *, penalty: float = 0.0,
               send_error: bool = True) -> None:
        """Close one connection (ERROR frame first), penalise the peer, maybe ban it."""
        if link.closed:
            return
        if send_error:
            self._send(link, Error(reason=reason))
        link.closed = True
        self._actions.append(CloseConn(link.conn, reason))
        tag = reason.split(":")[0][:40]
        if tag in self.close_reasons or len(self.close_reasons) < 64:
            self.close_reasons[tag] = self.close_reasons.get(tag, 0) + 1
        if penalty > 0:
            subjects = ["ip:" + link.ip]
            key = link.key or (link.hello.key if link.hello is not None else None)
            if key is not None:
                subjects.append("key:" + key)
            if self.scores.penalise(subjects, penalty, now):
                self.counters["bans"] += 1
                log.warning("gossip.banned", subjects=subjects, reason=reason[:120])
        self._link_down(link, now)

    def _link_down(self, link: Link, now: float) -> None:
        if not link.established:
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
        self._on_link_down(link, now)

    def _rate_limited(self, link: Link, what: str, now: float) -> None:
        self.counters["rate_limited"] += 1
        self._close(link, f"rate limit exceeded ({what})", now, penalty=self.cfg.penalty_rate_limit)

    def penalise(self, link: Link, amount: float, reason: str, now: float) -> None:
        """Lower a peer's score without closing; ban and close when it falls below the threshold."""
        subjects = ["ip:" + link.ip] + (["key:" + link.key] if link.key else [])
        if self.scores.penalise(subjects, amount, now):
            self.counters["bans"] += 1
            log.warning("gossip.banned", subjects=subjects, reason=reason[:120])
            self._close(link, f"banned: {reason}", now)

    def take_actions(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    # --- time ---------------------------------------------------------------------------------

    def _check_links(self, now: float) -> None:
        for link in list(self._links.values()):
            if link.closed:
                continue
            if not link.established:
                if now - link.created >= self.cfg.handshake_timeout:
                    self.counters["handshake_timeouts"] += 1
                    self._close(link, "handshake timeout", now)
                continue
            if link.frame_started is not None and now - link.frame_started >= self.cfg.frame_timeout:
                self.counters["frame_timeouts"] += 1
                self._close(link, f"frame not completed within {self.cfg.frame_timeout:.0f} s", now,
                            penalty=self.cfg.penalty_violation / 2)
                continue
            idle = now - link.last_recv
            if idle >= self.cfg.dead_after:
                self.counters["dead_links"] += 1
                self._close(link, f"peer silent for {idle:.0f} s", now)
            elif idle >= self.cfg.ping_after and not link.ping_out:
                link.ping_out = True
                self._send(link, Ping(n=self.rng.getrandbits(32)))

    def link_stats(self, now: float) -> dict[str, Any]:
        open_links = [x for x in self._links.values() if not x.closed]
        return {
            "connections": len(open_links),
            "handshaking": sum(1 for x in open_links if not x.established),
            **self.counters,
            "bans_active": self.scores.active_bans(now),
            "close_reasons": dict(sorted(self.close_reasons.items())),
            "by_type": {t: {"in_frames": v[0], "in_bytes": v[1], "out_frames": v[2], "out_bytes": v[3]}
                        for t, v in sorted(self.by_type.items())},
        }

    # --- hooks for subclasses -------------------------------------------------------------------

    def _on_connection(self, link: Link, now: float) -> None:
        """A connection was made (HELLO sent)."""

    def _on_established(self, link: Link, now: float) -> None:
        """The handshake completed: ``link.key`` is authenticated."""

    def _on_message(self, link: Link, msg: Message, now: float) -> None:
        raise ProtocolError(f"unexpected message {msg.T}")

    def _on_link_down(self, link: Link, now: float) -> None:
        """The link closed (by us or the peer); clean up views."""
