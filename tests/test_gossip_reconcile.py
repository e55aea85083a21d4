"""Anti-entropy v2 on the wire (reconcile = "riblt"): binary messages, sessions, hostile frames."""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.errors import DecodeError, UsageError
from p2pauction.gossip.actions import CloseConn, Send
from p2pauction.gossip import riblt as R
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.messages import (
    BINARY_TYPES, RFail, RMore, RSym, RSync, RWant, parse_binary,
)

from tests.gossip_wire import NET, Pipe, RawPeer, identity
from tests.test_gossip_core import core_with, make_events, run_ae_round

V2: dict[str, Any] = dict(reconcile="riblt", dissemination="none", ae_interval=1.0)


# --- binary messages ------------------------------------------------------------------------------

def test_rsync_example_of_the_protocol_doc() -> None:
    ids = [hashlib.sha256(x).hexdigest() for x in (b"a", b"b")]
    salt = R.network_salt("p2pauction-demo")
    assert salt.hex() == "202c8dbe6374a03cb8c3c4dbac44916d"
    cache = R.SymbolCache(salt)
    cache.add_many(ids)
    body = RSync(size=2, batch=cache.snapshot().batch(0, 1)).to_bytes()
    assert len(body) == 54
    assert body.hex() == ("0001" "00000002" "01" "00000000" "0001"
                          "f4b46904ca22e480c94b7ed6fec26d792c3b95f89ca8623872f3992b7a724826"
                          "0e4ea38006ae3785" "02")
    assert parse_binary(body) == RSync(size=2, batch=cache.snapshot().batch(0, 1))


def test_every_binary_message_round_trips() -> None:
    batch = R.SymbolBatch(7, (R.CodedSymbol(5, 6, 255), R.CodedSymbol(1 << 255, (1 << 64) - 1, 0)))
    messages = [RSync(size=(1 << 32) - 1, batch=R.SymbolBatch(0, (R.CodedSymbol(1, 2, 3),))),
                RMore(n=1), RMore(n=R.MAX_BATCH_SYMBOLS), RSym(batch=batch),
                RWant(prefixes=()), RWant(prefixes=(b"\x00" * 8, b"\xff" * 8)), RFail()]
    for msg in messages:
        body = msg.to_bytes()
        assert body[:2] == bytes((0, type(msg).CODE))
        assert parse_binary(body) == msg and parse_binary(body).to_bytes() == body
    assert {type(m) for m in messages} == set(BINARY_TYPES.values())


def test_malformed_binary_bodies_are_decode_errors() -> None:
    bad = [b"", b"\x00", b"\x01\x01", b"\x00\x06", b"\x00\x02\x00", b"\x00\x02\x00\x00", b"\x00\x02\x40\x01",
           b"\x00\x05\x00", b"\x00\x04\x00\x01" + b"\x00" * 7, b"\x00\x04\x02\x01" + b"\x00" * 8 * 513,
           b"\x00\x01\x00\x00\x00\x01" + R.SymbolBatch(1, (R.CodedSymbol(1, 2, 3),)).to_bytes(),   # not at 0
           b"\x00\x01\x00\x00\x00\x01" + R.SymbolBatch(0, (R.CodedSymbol(1, 2, 3),) * 2).to_bytes(),  # 2 symbols
           b"\x00\x03" + R.SymbolBatch(0, (R.CodedSymbol(1, 2, 3),)).to_bytes()[:-1]]
    for body in bad:
        try:
            parse_binary(body)
        except DecodeError:
            continue
        raise AssertionError(f"{body[:20].hex()} parsed")


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=120),
                 st.tuples(st.sampled_from(sorted(BINARY_TYPES)), st.binary(max_size=100)).map(
                     lambda x: bytes((0, x[0])) + x[1]),
                 st.tuples(st.sampled_from([1, 3]), st.integers(0, 3), st.integers(0, 3), st.binary(max_size=90)).map(
                     lambda x: bytes((0, x[0])) + (b"\x00\x00\x00\x05" if x[0] == 1 else b"")
                     + bytes((1, 0, 0, 0, x[1], 0, x[2])) + x[3])))
def test_any_bytes_decode_to_a_message_that_re_encodes_to_them_or_raise_decode_error(body: bytes) -> None:
    try:
        msg = parse_binary(body)
    except DecodeError:
        return
    assert msg.to_bytes() == body


def test_config_validates_reconcile() -> None:
    assert GossipConfig(net="x").reconcile == "prefix"
    for bad in (dict(reconcile="iblt"), dict(reconcile_capacity=8), dict(reconcile_timeout=0.0)):
        try:
            GossipConfig(net="x", **bad)
        except UsageError:
            continue
        raise AssertionError(f"{bad} accepted")


# --- cores reconciling ----------------------------------------------------------------------------

def converge(a: GossipCore, b: GossipCore, pipe: Pipe, rounds: int = 6) -> float:
    now = 0.0
    for _ in range(rounds):
        now = run_ae_round(a, b, pipe, now)
        if a.replica.ledger.digest == b.replica.ledger.digest:
            break
    return now


def v2(core: GossipCore) -> dict[str, int]:
    stats: dict[str, int] = core.stats()["reconcile"]
    return stats


def test_two_cores_reconcile_both_ways_with_riblt() -> None:
    shared = make_events(60)
    only_a, only_b = make_events(25, who=51), make_events(7, who=52)
    a, b = core_with(shared + only_a, 1, **V2), core_with(shared + only_b, 2, **V2)
    pipe = Pipe(a, b)
    converge(a, b, pipe)
    assert len(a.replica.ledger) == len(b.replica.ledger) == 92
    assert a.replica.ledger.digest == b.replica.ledger.digest
    assert "sync" not in a.by_type and "tree" not in b.by_type      # no prefix-tree round ran
    assert v2(b)["decoded"] >= 1 and v2(a)["rsync_sent"] >= 1
    assert a.stats()["links"]["violations"] == b.stats()["links"]["violations"] == 0
    assert a.symbols is not None and b.symbols is not None
    assert a.symbols.snapshot().batch(0, 64) == b.symbols.snapshot().batch(0, 64)


class Mesh:
    """Cores joined pairwise (``edges``), every connection routed: Pipe joins only two cores."""

    def __init__(self, cores: list[GossipCore], edges: list[tuple[int, int]]) -> None:
        self.cores = cores
        self.route: dict[tuple[int, int], tuple[int, int]] = {}
        for n, (x, y) in enumerate(edges):
            conn = 100 + n
            self.route[(x, conn)] = (y, conn)
            self.route[(y, conn)] = (x, conn)
            cores[x].connection_made(conn, outbound=True, remote_addr=f"10.0.0.{y + 1}:7000", now=0.0)
            cores[y].connection_made(conn, outbound=False, remote_addr=f"10.0.0.{x + 1}:4{n:04d}", now=0.0)
        self.pump(0.0)

    def pump(self, now: float) -> None:
        moved = True
        while moved:
            moved = False
            for i, core in enumerate(self.cores):
                for action in core.take_actions():
                    target = self.route.get((i, getattr(action, "conn", -1)))
                    if target is None:
                        continue
                    moved = True
                    if isinstance(action, Send):
                        self.cores[target[0]].data_received(target[1], action.data, now)
                    elif isinstance(action, CloseConn):
                        for key in ((i, action.conn), target):
                            if key in self.route:
                                del self.route[key]
                                self.cores[key[0]].connection_lost(key[1], now)

    def run(self, until: float, now: float = 0.0) -> float:
        while now < until:
            now = min(c.next_deadline() for c in self.cores)
            for core in self.cores:
                core.tick(now)
            self.pump(now)
        return now


def test_three_cores_converge_with_riblt() -> None:
    shared = make_events(30)
    cores = [core_with(shared + make_events(5 + 3 * i, who=60 + i), i + 1, **V2) for i in range(3)]
    mesh = Mesh(cores, [(0, 1), (1, 2)])
    now = 0.0
    while len({c.replica.ledger.digest for c in cores}) > 1 and now < 60.0:
        now = mesh.run(now + 1.0, now)
    assert len({c.replica.ledger.digest for c in cores}) == 1
    assert len(cores[0].replica.ledger) == 30 + 5 + 8 + 11
    assert sum(v2(c)["decoded"] for c in cores) >= 2
    assert all(c.stats()["links"]["violations"] == 0 for c in cores)


def test_an_agreeing_round_is_one_rsync_frame_and_nothing_back() -> None:
    costs = []
    for n in (50, 500):
        events = make_events(n)
        a, b = core_with(events, 1, **V2), core_with(events, 2, **V2)
        pipe = Pipe(a, b)
        out_a, out_b = a.stats()["links"]["frames_out"], b.stats()["links"]["frames_out"]
        while a.stats()["events"]["ae_rounds"] == 0:    # only a's round: b is not ticked
            now = a.next_deadline()
            a.tick(now)
        pipe.pump(now)
        assert a.stats()["links"]["frames_out"] - out_a == 1 and a.by_type["rsync"].out_frames == 1
        assert b.stats()["links"]["frames_out"] == out_b        # nothing back
        assert v2(b)["agreed"] == 1 and b.reconciler is not None and b.reconciler.sessions() == (0, 0)
        costs.append(a.by_type["rsync"].out_bytes)
    assert costs[0] == costs[1] == 4 + 54 + 16     # frame header + body + the channel's tag


def test_a_fresh_node_catches_up_with_riblt() -> None:
    events = make_events(200)
    full = core_with(events, 1, **V2)
    fresh = core_with([], 2, **V2)
    pipe = Pipe(fresh, full)
    converge(fresh, full, pipe, rounds=10)
    assert len(fresh.replica.ledger) == 200
    assert fresh.stats()["events"]["pending"] == 0       # served in store (causal) order


def test_rfail_falls_back_to_the_prefix_tree_and_still_converges() -> None:
    # A capacity of 16 symbols decodes about 11 ids: a difference of 40 fails, and the prefix tree
    # (the fallback) reconciles it.
    shared = make_events(20)
    small = dict(V2, reconcile_capacity=16)
    a = core_with(shared + make_events(25, who=51), 1, **small)
    b = core_with(shared + make_events(15, who=52), 2, **small)
    pipe = Pipe(a, b)
    converge(a, b, pipe)
    assert a.replica.ledger.digest == b.replica.ledger.digest and len(a.replica.ledger) == 60
    assert v2(b)["failed"] >= 1 and v2(a)["fallbacks"] >= 1
    assert a.by_type["rfail"].in_frames >= 1 and a.by_type["sync"].out_frames >= 1
    assert a.stats()["links"]["violations"] == b.stats()["links"]["violations"] == 0


def test_a_decode_that_stalls_falls_back_after_serving_what_it_recovered() -> None:
    # A difference the size says is small but that is too big for 16 symbols: the decoder gives
    # up on its own (not at once) and still reports what it peeled.
    shared = make_events(20)
    small = dict(V2, reconcile_capacity=16)
    a = core_with(shared + make_events(9, who=51), 1, **small)
    b = core_with(shared + make_events(8, who=52), 2, **small)
    pipe = Pipe(a, b)
    converge(a, b, pipe)
    assert a.replica.ledger.digest == b.replica.ledger.digest and len(a.replica.ledger) == 37
    assert v2(b)["failed"] == 1 and v2(b)["symbols_received"] == 16      # gave up at the capacity
    assert v2(a)["prefix_ids_served"] + v2(b)["ids_pushed"] >= 1         # what it peeled still moved


def test_a_link_closing_mid_session_leaves_no_session_state() -> None:
    shared = make_events(20)
    a = core_with(shared + make_events(30, who=51), 1, **V2)
    b = core_with(shared + make_events(20, who=52), 2, **V2)
    pipe = Pipe(a, b)
    assert a.reconciler is not None and b.reconciler is not None
    now = 0.0
    while v2(a)["rsync_sent"] == 0:
        now = a.next_deadline()
        a.tick(now)
    # deliver the rsync, then b's rmore, and stop there: both sides hold a session
    for src, conn, dst, dst_conn in ((a, 1, b, 2), (b, 2, a, 1)):
        for action in src.take_actions():
            if getattr(action, "conn", None) == conn and hasattr(action, "data"):
                dst.data_received(dst_conn, action.data, now)
    assert a.reconciler.sessions() == (1, 0) and b.reconciler.sessions() == (0, 1)
    a.close(a.membership.active[b.key], "test", now)
    pipe.pump(now)
    assert a.reconciler.sessions() == (0, 0) and b.reconciler.sessions() == (0, 0)


def test_sessions_expire_after_the_timeout() -> None:
    slow = dict(V2, ae_interval=100.0)     # no second round of a's meanwhile
    a = core_with(make_events(20), 1, **slow)
    b = core_with(make_events(20, who=52), 2, **slow)
    pipe = Pipe(a, b)
    assert a.reconciler is not None and b.reconciler is not None
    while v2(a)["rsync_sent"] == 0:
        a.tick(a.next_deadline())
    now = a.next_deadline()
    for action in a.take_actions():          # the rsync reaches b; b's rmore is lost
        if getattr(action, "conn", None) == 1 and hasattr(action, "data"):
            b.data_received(2, action.data, now)
    b.take_actions()
    assert b.reconciler.sessions() == (0, 1)
    for t in (now + 1.0, now + 3.0, now + 6.5):
        a.tick(t)
        b.tick(t)
    assert b.reconciler.sessions()[1] == 0 and v2(b)["timeouts"] == 1   # (b may have opened its own)
    assert a.reconciler.sessions() == (0, 0)
    del pipe


# --- hostile frames -------------------------------------------------------------------------------

def hostile(events: list[Any] | None = None, **overrides: Any) -> tuple[GossipCore, RawPeer]:
    core = core_with(events or [], 1, **dict(V2, **overrides))
    peer = RawPeer(core, 5, identity(9), remote="203.0.113.9:4000")
    peer.handshake()
    assert peer.closed is None
    return core, peer


def send_binary(peer: RawPeer, body: bytes, now: float = 0.0) -> list[dict[str, Any]]:
    sealed = peer.session.encrypt(body)
    return peer.send_bytes(len(sealed).to_bytes(4, "big") + sealed, now)


def rsync_of(ids: list[str]) -> tuple[RSync, R.SymbolPrefix]:
    cache = R.SymbolCache(R.network_salt(NET))
    cache.add_many(ids)
    snapshot = cache.snapshot()
    return RSync(size=cache.size, batch=snapshot.batch(0, 1)), snapshot


def fake_ids(n: int) -> list[str]:
    return [hashlib.sha256(f"fake/{i}".encode()).hexdigest() for i in range(n)]


def assert_violation(core: GossipCore, peer: RawPeer) -> None:
    assert peer.closed is not None and "protocol violation" in peer.closed, peer.closed
    assert core.stats()["links"]["internal_errors"] == 0
    assert core.reconciler is not None and core.reconciler.sessions() == (0, 0)


def test_malformed_binary_frames_close_the_link_as_a_protocol_violation() -> None:
    for body in (b"\x00\x09", b"\x00\x01\x00\x00", b"\x00\x02\x00\x00", b"\x00\x05\x01",
                 b"\x00\x04\x02\x01" + b"\x00" * 8 * 513,                 # an rwant of 513 prefixes
                 b"\x00\x04\x00\x02" + b"\x00" * 8,                         # k = 2, one prefix
                 b"\x00\x03" + R.SymbolBatch(0, (R.CodedSymbol(1, 2, 3),)).to_bytes() + b"\x00"):
        core, peer = hostile()
        send_binary(peer, body)
        assert_violation(core, peer)
        assert core.stats()["links"]["violations"] == 1


def test_binary_frames_are_malformed_frames_when_v2_is_off() -> None:
    core = core_with([], 1)
    peer = RawPeer(core, 5, identity(9), remote="203.0.113.9:4000")
    peer.handshake()
    send_binary(peer, RMore(n=1).to_bytes())
    assert peer.closed is not None and "malformed frame" in peer.closed
    assert "rmore" not in core.by_type


def test_a_batch_not_starting_where_the_previous_stopped_is_a_violation() -> None:
    core, peer = hostile()
    rsync, snapshot = rsync_of(fake_ids(5))
    got = send_binary(peer, rsync.to_bytes())
    rmore = parse_binary(got[-1]["body"])
    assert isinstance(rmore, RMore) and core.reconciler is not None and core.reconciler.sessions() == (0, 1)
    send_binary(peer, RSym(batch=snapshot.batch(2, rmore.n)).to_bytes())
    assert_violation(core, peer)


def test_more_symbols_than_the_capacity_is_a_violation() -> None:
    core, peer = hostile(reconcile_capacity=16)
    rsync, _ = rsync_of(fake_ids(5))
    rmore = parse_binary(send_binary(peer, rsync.to_bytes())[-1]["body"])
    assert isinstance(rmore, RMore)
    cache = R.SymbolCache(R.network_salt(NET), 32)
    cache.add_many(fake_ids(5))
    send_binary(peer, RSym(batch=cache.snapshot().batch(1, 16)).to_bytes())     # symbols 1..16 of 16
    assert_violation(core, peer)


def test_more_symbols_than_asked_are_decoded_in_sequence() -> None:
    # An initiator that replaced its round answers our earlier RMORE from its new snapshot: more
    # (or fewer) symbols than the last RMORE asked are fine while in sequence and within the limit.
    core, peer = hostile()
    rsync, snapshot = rsync_of(fake_ids(5))
    rmore = parse_binary(send_binary(peer, rsync.to_bytes())[-1]["body"])
    assert isinstance(rmore, RMore)
    got = send_binary(peer, RSym(batch=snapshot.batch(1, rmore.n + 20)).to_bytes())
    assert peer.closed is None
    want = [parse_binary(m["body"]) for m in got if m["t"] == "binary"]
    assert want and isinstance(want[-1], RWant) and len(want[-1].prefixes) == 5
    assert v2(core)["decoded"] == 1


def test_symbols_that_decode_to_an_impossible_set_are_a_violation() -> None:
    core, peer = hostile()
    rsync, _ = rsync_of(fake_ids(5))
    rmore = parse_binary(send_binary(peer, rsync.to_bytes())[-1]["body"])
    assert isinstance(rmore, RMore) and rmore.n >= 2
    # A pure symbol of an id at an index off that id's walk: no honest set codes it there.
    item = R.parse_id(fake_ids(1)[0])
    checksum, seed = R.ItemHasher(R.network_salt(NET))(item)
    on_walk = set(R.walk(seed, 1 + rmore.n))
    off = max(i for i in range(1, 1 + rmore.n) if i not in on_walk)
    symbols = tuple(R.CodedSymbol(item, checksum, 1) if i == off else R.CodedSymbol(0, 0, 0)
                    for i in range(1, 1 + rmore.n))
    send_binary(peer, RSym(batch=R.SymbolBatch(1, symbols)).to_bytes())
    assert_violation(core, peer)


def test_late_answers_and_asking_past_the_capacity_are_ignored() -> None:
    core, peer = hostile(make_events(3), reconcile_capacity=16)
    assert core.reconciler is not None
    send_binary(peer, RFail().to_bytes())                # no session: stale, ignored
    send_binary(peer, RSym(batch=R.SymbolBatch(1, (R.CodedSymbol(1, 2, 3),))).to_bytes())
    send_binary(peer, RMore(n=3).to_bytes())
    assert peer.closed is None and v2(core)["stale"] == 3
    core.reconciler.open(peer.ident.public_hex, 5, 0.0)   # a round of ours with this peer
    got = send_binary(peer, RMore(n=15).to_bytes())
    sym = parse_binary(got[-1]["body"])
    assert isinstance(sym, RSym) and (sym.batch.start, len(sym.batch.symbols)) == (1, 15)
    assert send_binary(peer, RMore(n=1).to_bytes()) == []    # past the 16 symbols: nothing more
    assert peer.closed is None and v2(core)["stale"] == 4 and v2(core)["symbols_sent"] == 16


def test_rwant_serves_at_most_two_events_per_prefix() -> None:
    events = make_events(40)
    core, peer = hostile(events)
    prefixes = tuple(bytes.fromhex(e.id[:16]) for e in events[:5])
    send_binary(peer, RWant(prefixes=prefixes + prefixes).to_bytes())
    served = [e for m in peer.inbox if m["t"] == "events" for e in m["es"]]
    assert sorted(served) == sorted(e.raw.decode() for e in events[:5])
    assert peer.closed is None


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(BINARY_TYPES)), st.binary(max_size=200))
def test_random_binary_frames_never_raise_out_of_the_core(code: int, tail: bytes) -> None:
    core, peer = hostile(make_events(2))
    rsync, _ = rsync_of(fake_ids(4))
    send_binary(peer, rsync.to_bytes())        # a session open, so rsym bodies reach a decoder
    send_binary(peer, bytes((0, code)) + tail)
    assert core.stats()["links"]["internal_errors"] == 0
    assert peer.closed is None or "protocol violation" in peer.closed


# --- the default stays as it was ------------------------------------------------------------------

def test_the_default_core_keeps_no_symbols_and_reports_no_v2() -> None:
    core = core_with(make_events(3), 1)
    assert core.symbols is None and core.reconciler is None and "reconcile" not in core.stats()


def test_a_v2_round_draws_the_same_randomness_as_a_prefix_tree_round() -> None:
    states = []
    for mode in ("prefix", "riblt"):
        a = core_with(make_events(10), 1, reconcile=mode, dissemination="none")
        b = core_with(make_events(12), 2, reconcile=mode, dissemination="none")
        Pipe(a, b)
        while a.stats()["events"]["ae_rounds"] == 0:
            a.tick(a.next_deadline())
        states.append(a.rng.getstate())
    assert states[0] == states[1]


def test_riblt_over_a_store_backed_summary_serves_rwant_prefixes_from_the_store(tmp_path: Any) -> None:
    import random

    from p2pauction.gossip.entropy import SeededEntropy
    from p2pauction.state.replica import Replica
    from p2pauction.state.store import SqliteStore

    shared = make_events(30)
    only_a, only_b = make_events(12, who=51), make_events(9, who=52)
    store = SqliteStore(tmp_path / "a.db")
    store.append(shared + only_a)
    a = GossipCore(GossipConfig(net=NET, listen_addr="10.0.0.1:7000", exempt_ips=(), **V2), identity(1),
                   Replica(NET, store), random.Random(1), 0.0, entropy=SeededEntropy(1))
    b = core_with(shared + only_b, 2, **V2)
    assert a.summary.ids_in_memory == 0 and a.symbols is not None and a.symbols.size == 42
    pipe = Pipe(a, b)
    converge(a, b, pipe)
    assert len(a.replica.ledger) == len(b.replica.ledger) == 51
    assert a.replica.ledger.digest == b.replica.ledger.digest
    assert v2(a)["prefix_ids_served"] + v2(b)["prefix_ids_served"] >= 9
    store.close()
