"""history pages and --stats over SQL equal a brute-force computation (compute_stats over rows)."""

from __future__ import annotations

import sqlite3
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
    from tests.state_helpers import NET, reference_scenario

    path = tmp_path / "s.db"
    replica = Replica(NET, SqliteStore(path))
    for e in reference_scenario().events:
        replica.receive_raw(e.raw)
    before = replica.store.stats(None, None)
    assert before["top_bidders"] and sum(b["bids"] for b in before["top_bidders"]) == 3
    replica.store.close()
    db = sqlite3.connect(path)
    with db:  # as written before the table existed
        db.execute("DELETE FROM finished_bidders")
        db.execute("DELETE FROM meta WHERE key = 'finished_bidders'")
    db.close()
    again = SqliteStore(path)
    assert again.stats(None, None) == before
    again.close()
