"""Limits and misbehaviour: caps, rate limits, malformed input, scores and bans."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pauction.gossip.limits import Backoff, ScoreBoard, TokenBucket
from p2pauction.gossip.messages import MESSAGE_TYPES

from tests.gossip_wire import Pipe, RawPeer, identity, make_core


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert all(bucket.take(1, 0.0) for _ in range(5))
    assert not bucket.take(1, 0.0)
    assert bucket.take(1, 0.1)
    assert not bucket.take(1, 0.1)


def test_scoreboard_bans_recover_and_expire() -> None:
    board = ScoreBoard(threshold=100, ban_seconds=60, recovery_per_second=1.0)
    assert not board.penalise(["key:a"], 60, 0.0)
    assert board.score("key:a", 10.0) == -50
    assert not board.penalise(["key:a"], 40, 10.0)  # -90: recovered 10 points meanwhile
    assert board.penalise(["key:a", "ip:1.2.3.4"], 20, 10.0)
    assert board.is_banned("key:a", 20.0) and board.is_banned("ip:1.2.3.4", 20.0)
    assert not board.is_banned("key:a", 71.0)
    exempt = ScoreBoard(exempt_ips=("127.0.0.1",))
    exempt.penalise(["ip:127.0.0.1"], 1000, 0.0)
    assert not exempt.is_banned("ip:127.0.0.1", 1.0)


def test_scoreboard_is_bounded() -> None:
    board = ScoreBoard(max_entries=10)
    for i in range(100):
        board.penalise([f"key:{i}"], 1000, 0.0)
    assert len(board._scores) <= 10 and len(board._bans) <= 10


def test_backoff_grows_and_resets() -> None:
    b = Backoff(base=1.0, cap=8.0)
    times = [b.failed("x:1", 0.0, 0.0) for _ in range(6)]
    assert times == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert not b.ready("x:1", 7.0) and b.ready("x:1", 8.0)
    b.succeeded("x:1")
    assert b.ready("x:1", 0.0)


def test_per_ip_cap() -> None:
    core = make_core(1, max_inbound_per_ip=3)
    peers = [RawPeer(core, 10 + i, identity(20 + i), remote=f"192.0.2.1:{5000 + i}") for i in range(4)]
    assert [p.closed for p in peers[:3]] == [None, None, None]
    assert peers[3].closed is not None and "too many connections from 192.0.2.1" in peers[3].closed
    other = RawPeer(core, 30, identity(40), remote="192.0.2.2:5000")
    assert other.closed is None


def test_per_ip_cap_exempts_configured_ips() -> None:
    core = make_core(1, max_inbound_per_ip=1, exempt_ips=("127.0.0.1",))
    peers = [RawPeer(core, 10 + i, identity(20 + i), remote=f"127.0.0.1:{5000 + i}") for i in range(5)]
    assert all(p.closed is None for p in peers)


def test_total_inbound_and_handshake_caps() -> None:
    core = make_core(1, max_inbound=5, max_handshaking=100)
    peers = [RawPeer(core, 10 + i, identity(20 + i), remote=f"198.51.100.{i}:1") for i in range(7)]
    for p in peers:
        p.collect()
    # Over the total cap, half-open connections make room for newcomers, oldest first...
    assert [p.closed is not None for p in peers] == [True, True, False, False, False, False, False]
    for p in peers[2:]:
        p.handshake()
    # ...but authenticated links are never evicted: with the cap full of them, a newcomer is refused.
    late = RawPeer(core, 30, identity(40), remote="198.51.100.50:1")
    assert late.closed is not None and "too many inbound connections" in late.closed
    assert all(p.closed is None for p in peers[2:])
    core2 = make_core(2, max_handshaking=3)
    idle = [RawPeer(core2, 10 + i, identity(20 + i), remote=f"198.51.100.{i}:1", now=i / 10) for i in range(5)]
    for p in idle:
        p.collect()
    # Over the cap the oldest half-open connections make room: a newcomer always gets in.
    assert [p.closed is not None for p in idle] == [True, True, False, False, False]
    honest = RawPeer(core2, 50, identity(60), remote="198.51.100.99:1", now=1.0)
    honest.handshake(now=1.0)
    assert honest.closed is None and core2.active_keys() == [identity(60).public_hex]
    # The rest time out.
    core2.tick(6.0)
    for p in idle:
        p.collect()
    assert all(p.closed is not None for p in idle) and honest.closed is None
    assert core2.stats()["links"]["handshake_evicted"] == 3


def test_frame_rate_limit_closes_and_penalises() -> None:
    core = make_core(1, rate_frames=10, rate_frames_burst=20)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    flood = b"".join(peer.sealed({"t": "ping", "n": i}) for i in range(50))
    peer.send_bytes(flood)
    assert peer.closed is not None and "rate limit" in peer.closed
    assert core.stats()["links"]["rate_limited"] == 1


def test_byte_rate_limit() -> None:
    core = make_core(1, rate_bytes=1000, rate_bytes_burst=2000)
    peer = RawPeer(core, 5, identity(9))
    peer.send_bytes(b"\x00" * 3000)
    assert peer.closed is not None and "rate limit exceeded (bytes)" in peer.closed


def test_oversize_header_closes_without_buffering() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send_bytes((2**31).to_bytes(4, "big") + b"x" * 100)
    assert peer.closed is not None and "malformed frame" in peer.closed
    assert core.stats()["links"]["malformed"] == 1


def test_garbage_after_handshake_closes_that_link_only_and_bans_repeat_offenders() -> None:
    a, b = make_core(1), make_core(2)
    honest = Pipe(a, b)
    bad_id = identity(9)
    peer = RawPeer(a, 5, bad_id, remote="203.0.113.5:1000")
    peer.handshake()
    assert bad_id.public_hex in a.active_keys()
    peer.send_bytes(b"\x00\x00\x00\x05hello")
    assert peer.closed is not None and "undecryptable" in peer.closed
    assert a.stats()["links"]["bans"] == 0  # one malformed frame: closed, not yet banned
    second = RawPeer(a, 8, bad_id, remote="203.0.113.5:1002")
    second.handshake()
    second.send_bytes(b"\x00\x00\x00\x02{}")
    assert a.stats()["links"]["bans"] == 1
    again = RawPeer(a, 6, bad_id, remote="203.0.113.5:1001")
    assert again.closed == "banned"  # the IP is banned too
    # The key is not: bytes that fail to decrypt were not made by its holder (a relay or a path
    # attacker could inject them into an honest peer's stream).
    other_ip = RawPeer(a, 7, bad_id, remote="203.0.113.6:1000")
    other_ip.handshake()
    assert other_ip.closed is None
    assert a.active_keys() == [b.key, bad_id.public_hex] and not honest.closed


def test_frames_ahead_of_a_malformed_one_in_the_same_chunk_are_handled() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.inbox.clear()
    replies = peer.send_bytes(peer.sealed({"t": "ping", "n": 7}) + b"\x00\x00\x00\x05hello")
    assert {"t": "pong", "n": 7} in replies  # answered before the garbage closed the link
    assert peer.closed is not None and "undecryptable" in peer.closed


def test_ban_expires() -> None:
    core = make_core(1, ban_seconds=30)
    for conn in (4, 5):
        RawPeer(core, conn, identity(9), remote="203.0.113.5:1000").send_bytes(b"\xff\xff\xff\xff")
    assert RawPeer(core, 6, identity(9), remote="203.0.113.5:1001", now=10.0).closed == "banned"
    late = RawPeer(core, 7, identity(9), remote="203.0.113.5:1002", now=40.0)
    late.handshake(now=40.0)
    assert late.closed is None


def test_protocol_violations_add_up_to_a_ban() -> None:
    core = make_core(1)
    for i in range(2):
        peer = RawPeer(core, 10 + i, identity(9), remote="203.0.113.8:1000")
        peer.handshake()
        peer.send({"t": "register", "key": identity(9).public_hex, "addr": None})  # not for nodes
        assert peer.closed is not None and "protocol violation" in peer.closed
    assert core.stats()["links"]["bans"] == 1


def test_data_after_close_is_ignored() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send_bytes(b"\x00\x00\x00\x00")
    assert peer.closed is not None
    core.data_received(5, b"anything", 0.0)
    core.data_received(99, b"unknown conn", 0.0)
    core.connection_lost(5, 0.0)
    core.connection_lost(5, 0.0)
    assert core.take_actions() == []


_field_values = st.one_of(st.none(), st.integers(-5, 2**70), st.text(max_size=70), st.booleans(),
                          st.lists(st.one_of(st.text(max_size=66), st.integers(),
                                             st.lists(st.text(max_size=66), max_size=3)), max_size=5),
                          st.sampled_from(["ab" * 32, "0" * 256, "1.2.3.4:5", "0" * 24]))


@given(st.lists(st.tuples(st.sampled_from(sorted(MESSAGE_TYPES)),
                          st.dictionaries(st.sampled_from(["ids", "peers", "n", "key", "r", "e", "h", "es", "p",
                                                           "l", "sig", "addr", "reason", "net", "nonce"]),
                                          _field_values, max_size=5)),
                max_size=8))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_nothing_a_peer_sends_raises(frames: list[tuple[str, dict[str, object]]]) -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    for t, fields in frames:
        peer.send({**fields, "t": t})
        if peer.closed:
            break
    core.tick(100.0)
    core.take_actions()
    stats = core.stats()["links"]
    assert stats["internal_errors"] == 0


def test_peer_chosen_type_names_are_not_kept() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.send({"t": "x" * 10_000})
    assert peer.closed is not None
    assert "?" in core.by_type and all(len(t) < 20 for t in core.by_type)
