"""Hostile authors: extra nodes that run the real core (so they handshake and stay connected)
and, at scheduled times, write invalid events or garbage straight onto their connections,
bypassing their own core and ledger -- or equivocate with two valid closes of their own auction.

Every invalid event made here is registered with the checker as *planted*, so an honest node that
accepts one is a violation even if the oracle were wrong. The acts:

- ``forged_sig``: a bid that claims another author (the signature does not verify);
- ``non_owner_close``: a close of someone else's auction, otherwise well-formed;
- ``low_bid``: a bid that does not beat the best bid (or is below the start price);
- ``late_bid``: a bid whose causal past holds the close (or whose ts is after ``ends_at``);
- ``double_close``: the hostile's own auction closed twice concurrently (valid events: every node
  must end up saying DISPUTED);
- ``garbage``: random bytes, then a well-framed body that is not JSON;
- ``extreme_values``: *valid* events at the edges of what the rules accept, from a generator
  (:func:`extreme_auction`): an open stamped ``2^63-2`` ending at ``2^63-1`` with a 200-char item
  and a 32-char name (control characters, multi-byte and astral characters), 32 concurrent bids
  by sybil keys at extreme amounts and times (0 and ``2^63-1``), one bid depending on all 32
  (the largest legal event: the rules cap items, names and deps, so it is about 2.8 KB, far
  from the 8 KiB frame cap) at the largest amount, and its close (a sale at the largest amount,
  closed at ``2^63-1``); plus a sybil bid at the largest amount on an honest open auction. Honest
  nodes must accept all of it and the checker renders every view of every node
  (``simulations/views_check.py``). Lamports are exact (1 + max of the deps), so their legal
  extreme is a long chain, not a large number.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from p2pauction.errors import DecodeError
from p2pauction.gossip.framing import encode_body

if TYPE_CHECKING:
    from simulations.context import RunContext
    from simulations.process import SimNode


def event_body(raw: bytes) -> bytes:
    """The plaintext of the gossip core's EVENT message carrying ``raw`` (see messages.py)."""
    return encode_body({"t": "event", "e": raw.decode("utf-8"), "h": 0})


def _recanon(raw: bytes, **changes: Any) -> bytes:
    """Re-encode an event with some top-level fields changed, in canonical form."""
    d = json.loads(raw)
    d.update(changes)
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _sign(node: SimNode, sim: RunContext, kind: str, body: Any, ts_offset: int = 0) -> Any:
    """Sign ``body`` as ``node`` on top of the heads of its auction as this node sees them."""
    from p2pauction.state.events import Kind, sign_event

    ledger = node.replica.ledger
    heads = tuple(ledger.heads(body.auction))
    return sign_event(node.identity, net=sim.factory.net, kind=Kind(kind), body=body, deps=heads,
                      lamport=ledger.next_lamport(heads), ts=node.wall_ms(sim.world.now) + ts_offset)


class Hostile:
    """Carries out one act for a hostile node; ``sim.checker`` learns what is invalid."""

    def __init__(self, sim: RunContext) -> None:
        self.sim = sim
        self.own_auctions: dict[int, str] = {}   # hostile node idx -> its auction id
        self.done: dict[str, int] = {}

    def act(self, node: SimNode, what: str) -> None:
        if not node.alive:
            return
        rng = random.Random(f"{self.sim.world.seed}/hostile/{node.idx}/{what}/{self.sim.world.now}")
        try:
            ok = getattr(self, "_" + what)(node, rng)
        except Exception as exc:  # the act itself failed (e.g. nothing to attack yet): count it
            self.done[what + "_failed"] = self.done.get(what + "_failed", 0) + 1
            self.sim.notes.append(f"hostile {what} at {self.sim.world.now:.2f}: {type(exc).__name__}: {exc}")
            return
        key = what if ok else what + "_skipped"
        self.done[key] = self.done.get(key, 0) + 1

    # --- helpers --------------------------------------------------------------------------

    def _target(self, node: SimNode, rng: random.Random, *, closed: bool | None = None) -> Any:
        """A view of an auction this node knows and does not own (optionally open/closed)."""
        ledger = node.replica.ledger
        for aid in rng.sample(self.sim.opened, len(self.sim.opened)):
            if not ledger.has(aid):
                continue
            v = ledger.auction(aid)
            if v.seller == node.identity.public_hex:
                continue
            if closed is None or (str(v.status) != "open") == closed:
                return v
        return None

    def _plant(self, node: SimNode, ev_raw: bytes, ev_id: str, why: str) -> None:
        self.sim.checker.planted_invalid[ev_id] = why
        self.sim.world.inject_message(node, event_body(ev_raw))

    # --- acts -----------------------------------------------------------------------------

    def _forged_sig(self, node: SimNode, rng: random.Random) -> bool:
        from p2pauction.state.events import BidBody, decode_event

        v = self._target(node, rng, closed=False)
        if v is None:
            return False
        amount = (v.leading.amount if v.leading is not None else v.start_price) + Decimal(50)
        ev = _sign(node, self.sim, "bid.place", BidBody(auction=v.id, amount=amount, name=None))
        victim = self.sim.honest[rng.randrange(len(self.sim.honest))].identity.public_hex
        raw = _recanon(ev.raw, author=victim)   # claims the victim wrote it: the signature cannot verify
        try:
            forged = decode_event(raw)
        except DecodeError:
            return False
        self._plant(node, raw, forged.id, "forged signature (author swapped)")
        return True

    def _non_owner_close(self, node: SimNode, rng: random.Random) -> bool:
        from p2pauction.state.events import CloseBody

        v = self._target(node, rng, closed=False)
        if v is None:
            return False
        winner = v.leading.id if v.leading is not None else None
        ev = _sign(node, self.sim, "auction.close", CloseBody(auction=v.id, winner=winner))
        self._plant(node, ev.raw, ev.id, "close by a non-seller")
        return True

    def _low_bid(self, node: SimNode, rng: random.Random) -> bool:
        from p2pauction.state.events import BidBody

        v = self._target(node, rng, closed=False)
        if v is None:
            return False
        if v.leading is not None:
            amount = v.leading.amount            # not above the best bid in its past
        elif v.start_price > 0:
            amount = v.start_price / 2           # below the start price
            amount = amount.quantize(Decimal("0.5")) if amount >= 1 else Decimal(0)
            if amount >= v.start_price:
                return False
        else:
            return False
        ev = _sign(node, self.sim, "bid.place", BidBody(auction=v.id, amount=amount, name=None))
        self._plant(node, ev.raw, ev.id, "bid too low")
        return True

    def _late_bid(self, node: SimNode, rng: random.Random) -> bool:
        from p2pauction.state.events import BidBody

        v = self._target(node, rng, closed=True)
        if v is None:
            return self._low_bid(node, rng)
        base = v.leading.amount if v.leading is not None else v.start_price
        # signed on the auction's heads, which include the close
        ev = _sign(node, self.sim, "bid.place", BidBody(auction=v.id, amount=base + 100, name=None))
        self._plant(node, ev.raw, ev.id, "bid after the close in its causal past")
        return True

    def _double_close(self, node: SimNode, rng: random.Random) -> bool:
        from p2pauction.state.events import CloseBody

        sim = self.sim
        aid = self.own_auctions.get(node.idx)
        if aid is None:
            ev = node.author.open(node.replica.ledger, item=f"hostile#{node.idx}", start_price=Decimal(5),
                                  wall_ms=node.wall_ms(sim.world.now))
            sim.world.publish(node, ev)
            self.own_auctions[node.idx] = ev.id
            sim.opened.append(ev.id)
            # come back once honest bidders had a chance to bid on it
            sim.world.sched.at(sim.world.now + 5.0, self.act, node, "double_close")
            return True
        v = node.replica.ledger.auction(aid)
        if str(v.status) != "open":
            return False
        winner = v.leading.id if v.leading is not None else None
        first = _sign(node, sim, "auction.close", CloseBody(auction=aid, winner=winner))
        second = _sign(node, sim, "auction.close", CloseBody(auction=aid, winner=winner), ts_offset=1)
        sim.checker.equivocating[aid] = None
        sim.world.publish(node, first)
        sim.world.publish(node, second)
        return True

    def _extreme_values(self, node: SimNode, rng: random.Random) -> bool:
        from p2pauction.state.identity import Identity

        sim = self.sim
        sybils = [Identity.generate(rng.randbytes(32)) for _ in range(33)]
        events = extreme_auction(node.identity, sybils, sim.factory.net, rng)
        for ev in events:
            sim.world.publish(node, ev)
        sim.opened.append(events[0].id)
        target = self._target(node, rng, closed=False)
        if target is not None and target.can_be_outbid:
            top = extreme_bid_on(node, sybils[0], sim.factory.net, target)
            if top is not None:
                sim.world.publish(node, top)
        return True

    def _garbage(self, node: SimNode, rng: random.Random) -> bool:
        junk = rng.randbytes(rng.randint(1, 64))
        if rng.random() < 0.5:
            body = b"{not json" + rng.randbytes(8)
            junk = len(body).to_bytes(4, "big") + body
        return self.sim.world.inject(node, junk) > 0


# --- hostile-but-legal values ---------------------------------------------------------------------

MAX_TS = 2**63 - 1
# characters that stress renderers: control, combining, right-to-left, CJK, astral, quote, backslash
_ODD_CHARS = "\x00\x01\x1b\x7f\u0301\u202e\u4e2d\U0001f4a5\"\\ a"


def odd_text(rng: random.Random, length: int) -> str:
    """``length`` characters drawn from renderer-hostile ones (never a surrogate: not canonical)."""
    return "".join(rng.choice(_ODD_CHARS) for _ in range(length))


def extreme_amount(rng: random.Random) -> Decimal:
    """An amount below the largest legal one, from the edges of the grammar."""
    from p2pauction.state.money import MAX_AMOUNT

    return rng.choice((Decimal("0.00000001"), Decimal("1"), Decimal("99999999.99999999"),
                       MAX_AMOUNT - Decimal("0.00000001"), MAX_AMOUNT - rng.randint(1, 10**6)))


def extreme_auction(seller: Any, sybils: list[Any], net: str, rng: random.Random) -> list[Any]:
    """Valid events at the edges of the rules, in a causal order: an open, 32 concurrent bids,
    one bid on all 32 at the largest amount (the largest legal event), and the close."""
    from p2pauction.state.events import (MAX_DEPS, MAX_ITEM_CHARS, MAX_NAME_CHARS, BidBody, CloseBody, Kind,
                                         OpenBody, sign_event)
    from p2pauction.state.money import MAX_AMOUNT

    opened = sign_event(seller, net=net, kind=Kind.OPEN,
                        body=OpenBody(odd_text(rng, MAX_ITEM_CHARS), "USDt", Decimal("0.00000001"), Decimal(0),
                                      MAX_TS, odd_text(rng, MAX_NAME_CHARS)),
                        deps=(), lamport=1, ts=MAX_TS - 1)
    bids = [sign_event(sybils[i], net=net, kind=Kind.BID,
                       body=BidBody(opened.id, extreme_amount(rng), odd_text(rng, MAX_NAME_CHARS)),
                       deps=(opened.id,), lamport=2, ts=rng.choice((0, MAX_TS)))
            for i in range(MAX_DEPS)]
    top = sign_event(sybils[MAX_DEPS], net=net, kind=Kind.BID,
                     body=BidBody(opened.id, MAX_AMOUNT, odd_text(rng, MAX_NAME_CHARS)),
                     deps=tuple(sorted(b.id for b in bids)), lamport=3, ts=MAX_TS)
    close = sign_event(seller, net=net, kind=Kind.CLOSE, body=CloseBody(opened.id, top.id),
                       deps=(top.id,), lamport=4, ts=MAX_TS)
    return [opened, *bids, top, close]


def extreme_bid_on(node: SimNode, sybil: Any, net: str, view: Any) -> Any:
    """A sybil's bid at the largest amount on an open auction, stamped at its end (or 2^63-1)."""
    from p2pauction.state.events import BidBody, Kind, sign_event
    from p2pauction.state.money import MAX_AMOUNT

    ledger = node.replica.ledger
    heads = tuple(ledger.heads(view.id))
    if view.min_next_bid > MAX_AMOUNT:
        return None
    return sign_event(sybil, net=net, kind=Kind.BID, body=BidBody(view.id, MAX_AMOUNT, None), deps=heads,
                      lamport=ledger.next_lamport(heads), ts=view.ends_at if view.ends_at is not None else MAX_TS)

