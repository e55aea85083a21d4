"""Human renderings of the ``--json`` shapes (docs/cli-output.schema.json): tables and lines.

Used by the command line, the demo and the simulator's view check; imports nothing of the node
or the CLI, so all three can use it without an import circle.

Item names and display names are written by peers: every rendering goes through
p2pauction.display (escaped control and bidi characters, cut with "…", tables sized by display
width). JSON output keeps the exact text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from p2pauction.display import Column, display_width, render_table, safe_text
from p2pauction import timefmt

__all__ = ["render_auction", "render_auctions", "render_bid", "render_close", "render_history",
           "render_notification", "render_open", "render_peers", "render_stats", "render_status",
           "render_status_verbose", "stats_tables", "summary_line"]

ITEM_WIDTH = 30          # item column of the tables
NAME_WIDTH = 20          # name columns of the tables (names are at most 32 characters)
LINE_ITEM_WIDTH = 40     # an item inside a one-line summary (watch, bid, close)

# A decoded --json object: the schema fixes its shape, so fields are read by name.
JSONMap = Mapping[str, Any]


def _who(key: str | None, name: str | None) -> str:
    return name or (key[:8] if key else "-")


def _when(ms: int | None) -> str:
    return timefmt.format_ms(ms)   # looked up at call time: the simulator's test plants old versions


def summary_line(summary: str, item: str | None) -> str:
    """The node's one-line summary, made safe, with a long item cut down.

    The summary embeds the item verbatim; a 200-character item would push the price off the
    line, so its first occurrence is shortened (names come before it but are shorter than any
    item that gets cut, except in wide scripts, where the worst case is a cut name).
    """
    if item and display_width(item) > LINE_ITEM_WIDTH and item in summary:
        summary = summary.replace(item, safe_text(item, LINE_ITEM_WIDTH), 1)
    return safe_text(summary)


def render_notification(note: JSONMap) -> str:
    """One feed line: ``14:02:03 [own ] C1 opens Pic#1 at 75 USDt  (auction 1a2b3c4d)``."""
    clock = timefmt.format_ms(note.get("ts", 0), timefmt.CLOCK)
    mark = "own " if note.get("own") else "peer"
    missed = f"  [{note['missed']} earlier events missed: slow reader]" if note.get("missed") else ""
    auction = note.get("auction")
    item = auction.get("item") if isinstance(auction, Mapping) else None
    summary = summary_line(str(note.get("summary") or note.get("kind")), item)
    return f"{clock} [{mark}] {summary}  (auction {safe_text(str(note['auction_id'])[:8])}){missed}"


def render_open(result: JSONMap) -> str:
    return str(result["auction_id"])


def render_bid(result: JSONMap) -> str:
    view = result["auction"]
    state = "leading" if result.get("is_leading") else "not leading"
    return (f"bid {result['bid_id']} placed: {result['amount']} {safe_text(view['currency'])} on "
            f"{safe_text(view['item'], LINE_ITEM_WIDTH)} ({state})")


def render_close(result: JSONMap) -> str:
    return summary_line(str(result["summary"]), result.get("item"))


def _leading(view: JSONMap) -> str:
    bid = view.get("winner") if view.get("status") == "closed" else view.get("leading")
    if not bid:
        return "-"
    return f"{bid['amount']} by {_who(bid.get('bidder'), bid.get('name'))}"


def render_auctions(views: Sequence[JSONMap]) -> str:
    if not views:
        return "no auctions"
    columns = (Column("AUCTION"), Column("STATUS"), Column("ITEM", max_width=ITEM_WIDTH),
               Column("START", "right"), Column("BEST", max_width=NAME_WIDTH + 16), Column("BIDS", "right"),
               Column("SELLER", max_width=NAME_WIDTH), Column("ENDS"))
    rows = [(v["id"][:12], v["status"].upper(), v["item"], f"{v['start_price']} {v['currency']}", _leading(v),
             str(v.get("bid_count", len(v.get("bids", [])))), _who(v.get("seller"), v.get("seller_name")),
             _when(v.get("ends_at")) if v.get("ends_at") else "-")
            for v in views]
    return render_table(columns, rows)


def render_auction(v: JSONMap) -> str:
    """``show``: the full item and names (escaped, not cut), one bid per line."""
    currency = safe_text(v["currency"])
    lines = [
        f"auction  {v['id']}",
        f"item     {safe_text(v['item'])}",
        f"seller   {safe_text(_who(v.get('seller'), v.get('seller_name')))} ({v.get('seller', '')[:16]})",
        f"status   {v['status'].upper()}",
        f"start    {v['start_price']} {currency} (min increment {v.get('min_increment', '0')})",
        f"opened   {_when(v.get('opened_ts'))}",
    ]
    if v.get("ends_at"):
        lines.append(f"ends     {_when(v['ends_at'])}")
    if v["status"] == "closed":
        winner = v.get("winner")
        lines.append("result   " + (f"{safe_text(_who(winner.get('bidder'), winner.get('name')))} wins at "
                                    f"{winner['amount']} {currency}" if winner else "closed with no bids"))
    elif v["status"] == "disputed":
        lines.append(f"result   DISPUTED: the seller signed {len(v.get('closes', []))} different closes: "
                     + ", ".join(c[:12] for c in v.get("closes", [])))
    else:
        lines.append(f"leading  {safe_text(_leading(v))}")
    bids = v.get("bids", [])
    lines.append(f"bids     {len(bids)}")
    if bids:
        columns = (Column("BID"), Column("AMOUNT", "right"), Column("BIDDER"), Column("PLACED"), Column("NOTE"))
        rows = [(b["id"][:12], f"{b['amount']} {v['currency']}", _who(b.get("bidder"), b.get("name")),
                 _when(b.get("ts")), "LATE (concurrent with the close)" if b.get("late") else "")
                for b in bids]
        lines.extend("  " + line for line in render_table(columns, rows).splitlines())
    return "\n".join(lines)


def render_history(rows: Sequence[JSONMap], *, limit: int | None = None, offset: int = 0) -> str:
    """The table of one page; a full page ends with the command line option of the next one."""
    if not rows:
        return "no finished auctions in that window" + (f" after the first {offset}" if offset else "")
    columns = (Column("AUCTION"), Column("STATUS"), Column("ITEM", max_width=ITEM_WIDTH), Column("PRICE", "right"),
               Column("BUYER", max_width=NAME_WIDTH), Column("SELLER", max_width=NAME_WIDTH), Column("CLOSED"))
    table = [(str(r.get("auction_id", ""))[:12], str(r.get("status", "")).upper(), str(r.get("item", "")),
              f"{r.get('price')} {r.get('currency', '')}" if r.get("price") is not None else "-",
              _who(r.get("buyer"), r.get("buyer_name")) if r.get("buyer") else "-",
              _who(r.get("seller"), r.get("seller_name")), _when(r.get("closed_ts")))
             for r in rows]
    text = render_table(columns, table)
    if limit is not None and len(rows) >= limit:
        text += f"\n(auctions {offset + 1}-{offset + len(rows)}; there may be more: --offset {offset + len(rows)})"
    return text


def render_stats(stats: JSONMap) -> str:
    """``history --stats``: a summary line, then one table per figure (empty ones left out)."""
    tables = [render_table(columns, rows) for columns, rows in stats_tables(stats) if rows]
    return "\n\n".join([_stats_heading(stats), *tables])


StatsTable = tuple[tuple[Column, ...], list[tuple[str, ...]]]   # columns, rows


def _stats_heading(stats: JSONMap) -> str:
    since = _when(stats["since"]) if stats.get("since") is not None else "the beginning"
    until = _when(stats["until"]) if stats.get("until") is not None else "now"
    return (f"finished auctions closed from {since} to {until}: {stats.get('finished', 0)} "
            f"(closed {stats.get('closed', 0)}, of which {stats.get('unsold', 0)} without bids; "
            f"disputed {stats.get('disputed', 0)})")


def stats_tables(stats: JSONMap) -> list[StatsTable]:
    """(columns, rows) of each stats table: per currency, top sellers and bidders, by volume."""
    def name(entry: JSONMap) -> str:
        return str(entry.get("name") or "-")

    def key(entry: JSONMap) -> str:
        return str(entry.get("key", ""))[:8]

    tables: list[StatsTable] = [
        ((Column("CURRENCY"), Column("SOLD", "right"), Column("VOLUME", "right"), Column("AVERAGE", "right"),
          Column("MAX", "right")),
         [(cur, str(c.get("count", 0)), str(c.get("volume")), str(c.get("average")), str(c.get("max")))
          for cur, c in (stats.get("currencies") or {}).items()]),
        ((Column("TOP SELLERS", max_width=NAME_WIDTH), Column("KEY"), Column("AUCTIONS", "right"),
          Column("SOLD", "right"), Column("VOLUME")),
         [(name(e), key(e), str(e.get("count", 0)), str(e.get("sold", 0)), _volumes(e.get("volume")))
          for e in stats.get("top_sellers") or []]),
        ((Column("TOP BIDDERS", max_width=NAME_WIDTH), Column("KEY"), Column("BIDS", "right"),
          Column("WINS", "right"), Column("VOLUME")),
         [(name(e), key(e), str(e.get("bids", 0)), str(e.get("wins", 0)), _volumes(e.get("volume")))
          for e in stats.get("top_bidders") or []]),
    ]
    for field, title in (("top_sellers_by_volume", "SELLERS BY VOLUME"),
                         ("top_bidders_by_volume", "BIDDERS BY VOLUME")):
        tables.append(((Column("CURRENCY"), Column("RANK", "right"), Column(title, max_width=NAME_WIDTH),
                        Column("KEY"), Column("VOLUME", "right")),
                       [(cur, str(rank), name(e), key(e), str(e.get("volume")))
                        for cur, entries in (stats.get(field) or {}).items()
                        for rank, e in enumerate(entries, start=1)]))
    return tables


def _volumes(volume: object) -> str:
    """``{"USDt": "320", "EUR": "5"}`` as ``320 USDt, 5 EUR``."""
    if not isinstance(volume, Mapping) or not volume:
        return "-"
    return ", ".join(f"{amount} {cur}" for cur, amount in volume.items())


def render_peers(peers: Sequence[JSONMap]) -> str:
    """A table: key prefix, the name the key last claimed in an event held here, address, role."""
    if not peers:
        return "no connected peers"
    columns = (Column("KEY"), Column("NAME", max_width=NAME_WIDTH), Column("ADDRESS", max_width=48),
               Column("ROLE"), Column("DIRECTION"), Column("SINCE"))
    rows = [(str(p.get("key") or "?")[:16], str(p.get("name") or ""),
             str(p.get("listen") or p.get("remote") or "?"), str(p.get("role", "node")),
             "out" if p.get("outbound") else "in", _when(p.get("since")) if p.get("since") is not None else "-")
            for p in peers]
    return render_table(columns, rows)


def render_status(status: JSONMap) -> str:
    """``status``: who and where this node is, what it holds, what it refused (a few lines)."""
    name = status.get("name")
    lines = [f"identity  {status.get('public_key', '?')}"]
    if name:
        lines.append(f"name      {safe_text(str(name))}")
    lines += [
        f"address   {status.get('listen') or 'offline (no network)'}",
        f"net       {safe_text(str(status.get('net', '?')))}",
        f"peers     {status.get('peers', 0)}",
        f"events    {status.get('events', 0)} ({status.get('pending', 0)} pending)",
        f"digest    {status.get('digest', '?')}",
        f"rejected  {_rejections(status)}",
    ]
    return "\n".join(lines)


def _rejections(status: JSONMap) -> str:
    total = status.get("rejected", 0)
    by_reason = status.get("rejected_by_reason") or {}
    if not total or not by_reason:
        return str(total)
    return f"{total} (" + ", ".join(f"{safe_text(str(r))} {n}" for r, n in by_reason.items()) + ")"


def render_status_verbose(status: JSONMap) -> str:
    """``status --verbose``: the short status, then every counter, one per line (dotted path)."""
    extra = {k: v for k, v in status.items() if k not in _SHORT_STATUS_FIELDS}
    return render_status(status) + "\n\n" + "\n".join(_counter_lines(extra))


_SHORT_STATUS_FIELDS = frozenset(("public_key", "name", "listen", "net", "peers", "events", "pending",
                                  "digest", "rejected", "rejected_by_reason"))


def _counter_lines(data: JSONMap, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{safe_text(str(key))}"
        if isinstance(value, Mapping) and value:
            lines.extend(_counter_lines(value, path + "."))
        elif isinstance(value, Mapping):
            lines.append(f"{path}: -")
        elif isinstance(value, int) and str(key).endswith(("_at", "_ts")):
            lines.append(f"{path}: {_when(value)}")     # a time (epoch ms), shown as one
        elif value is None:
            lines.append(f"{path}: -")
        else:
            lines.append(f"{path}: {safe_text(str(value))}")
    return lines
