"""history pages and --stats over SQL equal a brute-force computation (compute_stats over rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.state.store import SqliteStore, compute_stats

KEYS = ["k1", "k2", "k3", "k4"]
NAMES = [None, "Ann", "Bob"]
PRICES = [None, "0.1", "0.2", "10.1", "999999999999999999.99999999", "3", "0.00000001"]


@st.composite
def markets(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    bids: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 25))):
        aid = f"a{i:03d}"
        price = draw(st.sampled_from(PRICES))
        status = draw(st.sampled_from(["closed", "closed", "disputed"]))
        winner = draw(st.sampled_from(KEYS)) if price is not None else None
        rows.append({"auction": aid, "seller": draw(st.sampled_from(KEYS)),
                     "seller_name": draw(st.sampled_from(NAMES)), "item": "x",
                     "currency": draw(st.sampled_from(["EUR", "USDt"])), "winner": winner,
                     "winner_name": draw(st.sampled_from(NAMES)) if winner else None,
                     "winning_bid": f"{aid}b0" if winner else None, "price": price,
                     "opened_ts": 0, "closed_ts": draw(st.integers(0, 50)), "status": status,
                     "bids": 0, "late_bids": 0})
        for j in range(draw(st.integers(0, 3))):
            bids.append({"auction": aid, "bid": f"{aid}b{j}", "bidder": draw(st.sampled_from(KEYS)),
                         "name": draw(st.sampled_from(NAMES)), "amount": "1", "late": False})
    return rows, bids


def _fill(store: SqliteStore, rows: list[dict[str, Any]], bids: list[dict[str, Any]]) -> None:
    db = store._db
    with db:
        db.execute("DELETE FROM finished")
        db.execute("DELETE FROM finished_bids")
        for r in rows:
            cols = list(r)
            db.execute(f"INSERT INTO finished({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                       [r[c] for c in cols])
        db.executemany("INSERT INTO finished_bids VALUES (?,?,?,?,?,?)",
                       [(b["auction"], b["bid"], b["bidder"], b["name"], b["amount"], int(b["late"])) for b in bids])
        store.rebuild_finished_bidders()
        store.rebuild_stats_rollups()


def _in(ts: int, since: int | None, until: int | None) -> bool:
    return (since is None or ts >= since) and (until is None or ts < until)


@settings(max_examples=150, deadline=None)
@given(market=markets(), since=st.none() | st.integers(0, 50), until=st.none() | st.integers(0, 50),
       limit=st.none() | st.integers(1, 7), offset=st.integers(0, 8))
def test_sql_history_and_stats_equal_brute_force(tmp_path_factory: Any, market: Any, since: int | None,
                                                 until: int | None, limit: int | None, offset: int) -> None:
    rows, bids = market
    store = SqliteStore(tmp_path_factory.mktemp("s") / "s.db")
    try:
        _fill(store, rows, bids)
        window = sorted((r for r in rows if _in(r["closed_ts"], since, until)),
                        key=lambda r: (r["closed_ts"], r["auction"]))
        in_window = {r["auction"] for r in window}
        expected = compute_stats(window, [b for b in bids if b["auction"] in in_window], since, until)
        assert store.stats(since, until) == expected
        page = window[offset:] if limit is None else window[offset:offset + limit]
        assert [r["auction"] for r in store.history(since, until, limit=limit, offset=offset)] == \
            [r["auction"] for r in page]
    finally:
        store.close()


def test_history_pages_cover_the_window_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    rows = [{"auction": f"a{i:02d}", "seller": "k", "seller_name": None, "item": "x", "currency": "EUR",
             "winner": None, "winner_name": None, "winning_bid": None, "price": None, "opened_ts": 0,
             "closed_ts": i % 5, "status": "closed", "bids": 0, "late_bids": 0} for i in range(23)]
    _fill(store, rows, [])
    pages = [store.history(None, None, limit=5, offset=o) for o in range(0, 25, 5)]
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    seen = [r["auction"] for p in pages for r in p]
    assert sorted(seen) == sorted(str(r["auction"]) for r in rows) and len(set(seen)) == 23
    store.close()


def test_an_older_store_gets_its_bidder_counts_on_open(tmp_path: Path) -> None:
    from p2pauction.state.replica import Replica
    from tests.state_helpers import NET, as_before_table, reference_scenario

    path = tmp_path / "s.db"
    replica = Replica(NET, SqliteStore(path))
    for e in reference_scenario().events:
        replica.receive_raw(e.raw)
    before = replica.store.stats(None, None)
    assert before["top_bidders"] and sum(b["bids"] for b in before["top_bidders"]) == 3
    replica.store.close()
    as_before_table(path, "finished_bidders", "finished_bidders")
    again = SqliteStore(path)
    assert again.stats(None, None) == before
    again.close()


# --- the stats rollups, kept incrementally (issue 14): rewrites, late bids, windows over buckets --
DAY = 86_400_000
OFFSETS = [0, 1, DAY // 2, DAY - 1]   # a close at a day's edges or inside it
# close days from 0 to ~300: buckets of 1 to 256 days and windows with edges inside buckets
close_times = st.builds(lambda d, o: d * DAY + o, st.integers(-3, 300), st.sampled_from(OFFSETS))
bounds = st.none() | close_times


@st.composite
def finished_auction(draw: st.DrawFn, aid: str,
                     seller: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One finished auction's row and bids (a rewrite of ``aid`` keeps its seller)."""
    price = draw(st.sampled_from(PRICES))
    winner = draw(st.sampled_from(KEYS)) if price is not None else None
    row = {"auction": aid, "seller": seller or draw(st.sampled_from(KEYS)),
           "seller_name": draw(st.sampled_from(NAMES)), "item": "x",
           "currency": draw(st.sampled_from(["EUR", "USDt"])), "winner": winner,
           "winner_name": draw(st.sampled_from(NAMES)) if winner else None,
           "winning_bid": f"{aid}b0" if winner else None, "price": price, "opened_ts": 0,
           "closed_ts": draw(close_times), "status": draw(st.sampled_from(["closed", "closed", "disputed"])),
           "bids": 0, "late_bids": 0}
    bids = [{"auction": aid, "bid": f"{aid}b{j}", "bidder": draw(st.sampled_from(KEYS)),
             "name": draw(st.sampled_from(NAMES)), "amount": "1", "late": False}
            for j in range(draw(st.integers(0, 3)))]
    return row, bids


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Writes in order: ("write", row, bids) first or again (a rewrite: status, winner, price,
    close time changed), ("late", auction, [(bid, bidder, name)])."""
    ops: list[tuple[str, Any]] = []
    seller: dict[str, str] = {}
    for i in range(draw(st.integers(1, 12))):
        aid = f"a{i:03d}"
        row, bids = draw(finished_auction(aid))
        seller[aid] = row["seller"]
        ops.append(("write", (row, bids)))
    for step in range(draw(st.integers(0, 10))):
        aid = draw(st.sampled_from(sorted(seller)))
        if draw(st.booleans()):
            ops.append(("write", draw(finished_auction(aid, seller[aid]))))
        else:
            ops.append(("late", (aid, [(f"{aid}L{step}{k}", draw(st.sampled_from(KEYS)), draw(st.sampled_from(NAMES)))
                                       for k in range(draw(st.integers(1, 3)))])))
    return ops


def _rollups(store: SqliteStore) -> list[Any]:
    return store._rows("SELECT * FROM stats_rollup ORDER BY level, bucket, kind, key, cur")


@settings(max_examples=200, deadline=None)
@given(ops=histories(), windows=st.lists(st.tuples(bounds, bounds), min_size=1, max_size=4))
def test_stats_rollups_follow_rewrites_and_late_bids(tmp_path_factory: Any, ops: list[tuple[str, Any]],
                                                     windows: list[tuple[int | None, int | None]]) -> None:
    """Rows written, rewritten (status, winner, price, close time) and given late bids through the
    store's own write paths: stats equal compute_stats over the final rows in every window (and the
    whole history), and the incrementally kept rollups equal a rebuild from the rows."""
    store = SqliteStore(tmp_path_factory.mktemp("r") / "s.db")
    rows: dict[str, dict[str, Any]] = {}
    bids: dict[str, list[dict[str, Any]]] = {}
    try:
        for op, arg in ops:
            if op == "write":
                row, row_bids = arg
                store._write("test", lambda: store._write_finished_rows(row, row_bids))
                rows[row["auction"]], bids[row["auction"]] = row, list(row_bids)
            else:
                aid, late = arg
                store._write("test", lambda: store._add_late_bid_rows(aid, [(aid, b, k, n, "2") for b, k, n in late]))
                bids[aid] += [{"auction": aid, "bid": b, "bidder": k, "name": n, "amount": "2", "late": True}
                              for b, k, n in late]
        for since, until in [(None, None), *windows]:
            window = [r for r in rows.values() if _in(r["closed_ts"], since, until)]
            expected = compute_stats(window, [b for r in window for b in bids[r["auction"]]], since, until)
            assert store.stats(since, until) == expected, (since, until)
        kept = _rollups(store)
        store._write("test", store.rebuild_stats_rollups)
        assert kept == _rollups(store)
    finally:
        store.close()


def test_window_cover_is_whole_buckets_and_partial_days() -> None:
    from p2pauction.state.store import _LEVEL_DAYS, _cover

    for s, u in [(0, 1), (5, DAY), (DAY - 1, DAY + 1), (-3 * DAY + 7, 700 * DAY + 3), (13 * DAY, 4113 * DAY),
                 (-DAY, 0), (17, 1 + 5000 * DAY)]:
        runs, edges = _cover(s, u)
        days = sorted(d for level, first, end in runs for b in range(first, end)
                      for d in range(b * _LEVEL_DAYS[level], (b + 1) * _LEVEL_DAYS[level]))
        assert len(days) == len(set(days))
        covered = [(d * DAY, (d + 1) * DAY) for d in days] + edges
        assert sorted(covered)[0][0] == s and sum(b - a for a, b in covered) == u - s
        assert all(b - a < DAY for a, b in edges) and len(edges) <= 2
        assert sum(end - first for _, first, end in runs) <= 2 * 3 * len(_LEVEL_DAYS)


def _brute_force(store: SqliteStore, since: int | None, until: int | None) -> dict[str, Any]:
    rows = store.history(since, until)
    bids = [dict(zip(("auction", "bid", "bidder", "name", "amount", "late"), b))
            for b in store._rows("SELECT * FROM finished_bids")]
    return compute_stats(rows, [b for b in bids if b["auction"] in {r["auction"] for r in rows}], since, until)


def test_rollups_through_the_replica_and_an_older_store_gets_them_on_open(tmp_path: Path) -> None:
    """Through the real write paths (a second close rewrites an auction disputed), the kept
    rollups equal a rebuild and stats equal the brute force; an older store gets them on open."""
    from p2pauction.state.replica import Replica
    from tests.state_helpers import NET, as_before_table
    from tests.test_store import _market

    path = tmp_path / "s.db"
    store = SqliteStore(path)
    _market(Replica(NET, store))
    before = store.stats(None, None)
    assert before["disputed"] == 1
    for since, until in [(None, None), (200, 400), (None, 300), (450, None)]:
        assert store.stats(since, until) == _brute_force(store, since, until)
    kept = _rollups(store)
    store._write("test", store.rebuild_stats_rollups)
    assert _rollups(store) == kept
    store.close()
    as_before_table(path, "stats_rollup", "stats_rollup")
    again = SqliteStore(path)
    assert again.stats(None, None) == before and _rollups(again) == kept
    again.close()


def test_a_rewritten_maximum_is_recomputed_at_every_level(tmp_path: Path) -> None:
    """The max price cannot be subtracted: when the auction holding it is rewritten unsold, each
    bucket's max (day from its rows, higher levels from their children) falls to the next price."""
    store = SqliteStore(tmp_path / "s.db")

    def auction(aid: str, price: str | None, ts: int, status: str = "closed") -> dict[str, Any]:
        return {"auction": aid, "seller": "k1", "seller_name": None, "item": "x", "currency": "EUR",
                "winner": "k2" if price else None, "winner_name": None, "winning_bid": None, "price": price,
                "opened_ts": 0, "closed_ts": ts, "status": status, "bids": 0, "late_bids": 0}

    written = [auction("a1", "10.1", 5 * DAY + 3), auction("a2", "3", 5 * DAY + 9), auction("a3", "0.2", 70 * DAY),
               auction("a1", None, 5 * DAY + 3, "disputed")]
    for row in written:
        store._write("test", lambda: store._write_finished_rows(row, []))
    for since, until in [(None, None), (5 * DAY, 6 * DAY), (0, 64 * DAY), (0, 71 * DAY), (DAY, 80 * DAY)]:
        assert store.stats(since, until)["currencies"]["EUR"]["max"] == "3"
    assert {r[-1] for r in _rollups(store) if r[2] == 1} == {"3", "0.2"}   # no bucket keeps 10.1
    store.close()
