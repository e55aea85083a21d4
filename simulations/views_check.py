"""The checker's view-rendering check: everything a node holds must be displayable.

At the end of a run, for every live honest node (one per distinct state digest: equal digests
mean equal events, hence equal views), every view is rendered by the very functions
the real node and CLI use: the API views (``AuctionView.to_json``/``summary_json``, ``bids``,
``late_bids``, ``min_next_bid``), the control socket's JSON encoding (``control._dumps`` of the
node's ``_jsonable`` results) and the CLI's human renderers (``auctions``, ``show``, ``history``,
``history --stats``, and ``watch`` lines). Notifications (``Notification.to_json``,
``describe`` and the CLI's feed line) are rendered for every event the first such node holds:
events are the same on every node, and notifications carry only the view's O(1) summary.

Any exception is a ``view_render`` violation naming the node, the path and the auction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pauction.state.ledger import AuctionView
    from simulations.process import SimNode

MAX_PROBLEMS_PER_NODE = 3


def _cli_json(result: Any) -> str:
    """What ``p2pauction CMD --json`` prints: the control reply, decoded, re-encoded."""
    from p2pauction.control import _dumps

    return json.dumps(json.loads(_dumps(result)), sort_keys=True, ensure_ascii=False)


def view_renderings(node: SimNode) -> Iterator[tuple[str, Callable[[], object]]]:
    """(what, render) for every view this node can show; render() raises if it cannot."""
    from p2pauction import render
    from p2pauction.node import _history_row, _json_object

    ledger = node.replica.ledger
    store = node.replica.store
    views = ledger.auctions()
    yield "auctions --json", lambda: _cli_json([v.to_json() for v in views])
    yield "auctions", lambda: render.render_auctions([v.to_json() for v in views])
    for view in views:
        short = view.id[:12]
        yield f"show {short} --json", partial(lambda v: _cli_json(v.to_json()), view)
        yield f"show {short}", partial(lambda v: render.render_auction(v.to_json()), view)
        yield f"api view {short}", partial(_api_view, view)
    def history() -> list[dict[str, Any]]:   # what the node's control socket sends (HistoryRow)
        return [_json_object(_history_row(row)) for row in store.history(None, None)]

    yield "history --json", lambda: _cli_json(history())
    yield "history", lambda: render.render_history(history())
    yield "history --stats --json", lambda: _cli_json(_json_object(store.stats(None, None)))
    yield "history --stats", lambda: render.render_stats(_json_object(store.stats(None, None)))


def _api_view(view: AuctionView) -> object:
    return (view.summary_json(), view.late_bids, view.min_next_bid, view.can_be_outbid,
            [b.to_json() for b in view.bids])


def notification_renderings(node: SimNode) -> Iterator[tuple[str, Callable[[], object]]]:
    """(what, render) for a notification of every event the node holds (own=False)."""
    from p2pauction.feeds import Notification
    from p2pauction.render import render_notification
    from p2pauction.state.events import decode_event

    ledger = node.replica.ledger
    for raw in node.replica.store.iter_raw():
        event = decode_event(raw)

        def render(e: Any = event) -> object:
            note = Notification(event=e, auction=ledger.auction(e.auction_id), own=False)
            data = json.loads(_cli_json({"notification": note.to_json()}))["notification"]
            return note.describe(), render_notification(data)

        yield f"watch {event.id[:12]}", render


def check_node(node: SimNode, *, notifications: bool) -> list[str]:
    """Problems (at most MAX_PROBLEMS_PER_NODE) rendering this node's views."""
    problems: list[str] = []
    renderings = list(view_renderings(node))
    if notifications:
        renderings.extend(notification_renderings(node))
    for what, render in renderings:
        try:
            render()
        except Exception as exc:
            problems.append(f"{node.name}: {what}: {type(exc).__name__}: {exc}")
            if len(problems) >= MAX_PROBLEMS_PER_NODE:
                break
    return problems


def check_nodes(nodes: list[SimNode]) -> list[str]:
    """Render every view of every node given (notifications on the first one). Nodes with the
    same state digest hold the same events, hence the same views (the checker's
    ``divergent_state`` check holds them to it): one of each digest is rendered."""
    problems: list[str] = []
    seen: set[str] = set()
    for node in nodes:
        digest = node.replica.ledger.digest_hex
        if digest in seen:
            continue
        problems.extend(check_node(node, notifications=not seen))
        seen.add(digest)
    return problems
