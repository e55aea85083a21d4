"""Shared builders for the state-layer tests (deterministic keys, a reference scenario)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from p2pauction.state.authoring import Author
from p2pauction.state.events import SIG_DOMAIN, Event, canonical
from p2pauction.state.identity import Identity
from p2pauction.state.ledger import Ledger

NET = "test-net"


def identity(n: int) -> Identity:
    return Identity.generate(n.to_bytes(32, "big"))


def author(n: int, name: str | None = None) -> Author:
    return Author(identity(n), NET, name)


def accept(ledger: Ledger, event: Event) -> Event:
    outcome = ledger.receive(event)
    assert outcome.kind == "accepted", outcome
    return event


@dataclass
class Scenario:
    """The SPEC's reference scenario, authored against one ledger."""

    ledger: Ledger
    events: list[Event] = field(default_factory=list)
    pic1: str = ""
    pic2: str = ""
    c2: str = ""


def reference_scenario() -> Scenario:
    ledger = Ledger(NET)
    c1, c2, c3 = author(1, "C1"), author(2, "C2"), author(3, "C3")
    s = Scenario(ledger, c2=c2.identity.public_hex)
    s.events.append(accept(ledger, c1.open(ledger, item="Pic#1", start_price=Decimal(75), wall_ms=1000)))
    s.pic1 = s.events[-1].id
    s.events.append(accept(ledger, c2.open(ledger, item="Pic#2", start_price=Decimal(60), wall_ms=1001)))
    s.pic2 = s.events[-1].id
    s.events.append(accept(ledger, c2.bid(ledger, s.pic1, Decimal(75), wall_ms=1002)))
    s.events.append(accept(ledger, c3.bid(ledger, s.pic1, Decimal("75.5"), wall_ms=1003)))
    s.events.append(accept(ledger, c2.bid(ledger, s.pic1, Decimal(80), wall_ms=1004)))
    s.events.append(accept(ledger, c1.close(ledger, s.pic1, wall_ms=1005)))
    return s


def forge(ident: Identity, *, kind: str, body: dict[str, Any], deps: list[str] | tuple[str, ...] = (),
          lamport: int = 1, ts: int = 1000, net: str = NET, sign_as: Identity | None = None,
          extra: dict[str, Any] | None = None) -> bytes:
    """Canonical, correctly signed bytes for ANY content (bypasses every local rule), so tests can
    build events that break exactly one rule of the ledger. ``sign_as`` signs with another key."""
    obj: dict[str, Any] = {"net": net, "kind": kind, "author": ident.public_hex, "body": body,
                           "deps": list(deps), "lamport": lamport, "ts": ts, **(extra or {})}
    sig = (sign_as or ident).sign(SIG_DOMAIN + canonical(obj))
    obj["sig"] = sig.hex()
    return canonical(obj)


def open_body(item: str = "Pic", start: str = "10", inc: str = "0", ends_at: int | None = None,
              currency: str = "USDt") -> dict[str, Any]:
    return {"item": item, "currency": currency, "start_price": start, "min_increment": inc,
            "ends_at": ends_at}


def as_before_table(path: Path | str, table: str, meta_key: str) -> None:
    """Make a closed SQLite store look as an older version left it: ``table`` empty and its
    back-fill mark (meta ``meta_key``) gone, so the next open fills it again."""
    db = sqlite3.connect(path)
    with db:
        db.execute(f"DELETE FROM {table}")
        db.execute("DELETE FROM meta WHERE key = ?", (meta_key,))
    db.close()
