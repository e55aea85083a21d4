"""The ``p2pauction`` command line: ``node`` and ``bootstrap`` run services; every other command
is a thin client of a running node's control socket (``--data-dir``).

Errors are one line on stderr (``error: ...``) with exit status 1; usage errors from argparse
exit with 2; Ctrl-C exits with 130. Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from p2pauction import errors
from p2pauction.display import Column, display_width, json_text, render_table, safe_text

DEFAULT_DATA_DIR = "./p2pauction-data"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def default_data_dir() -> str:
    return os.environ.get("P2PAUCTION_DATA_DIR") or DEFAULT_DATA_DIR


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (like every other error), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


_COMMON_HINT = ("common options (before or after the command): --data-dir DIR, --json, --log-level LEVEL, "
                "--log-format FORMAT; see p2pauction --help")


def _add_common(parser: argparse.ArgumentParser, *, shown: bool) -> None:
    """The options every command takes. Shown once, on the main page; accepted everywhere.

    SUPPRESS defaults: the options work before or after the command without one overwriting the
    other (argparse applies a subparser's defaults over the main parser's values).
    """
    group = parser.add_argument_group("common options (before or after the command)")

    def text(help_text: str) -> str:
        return help_text if shown else argparse.SUPPRESS

    group.add_argument("--data-dir", default=argparse.SUPPRESS, metavar="DIR",
                       help=text("the node's data directory (default: $P2PAUCTION_DATA_DIR, else "
                                 "./p2pauction-data)"))
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help=text("machine-readable output (JSON; JSON lines for watch)"))
    group.add_argument("--log-level", default=argparse.SUPPRESS, choices=("debug", "info", "warning", "error"),
                       help=text("log level on stderr (default: info for node, bootstrap and demo; "
                                 "warning otherwise)"))
    group.add_argument("--log-format", default=argparse.SUPPRESS, choices=("auto", "console", "json"),
                       help=text("logs: readable (auto: coloured on a terminal; console) or JSON lines "
                                 "(default: auto)"))


# name -> (one-line help, example lines shown at the end of the command's --help)
_COMMANDS_HELP: dict[str, tuple[str, str]] = {
    "bootstrap": ("run a discovery node that peers register with",
                  "p2pauction bootstrap --listen 127.0.0.1:7000"),
    "node": ("run a node (until Ctrl-C or SIGTERM)",
             "p2pauction node --data-dir c1 --bootstrap 127.0.0.1:7000 --name C1"),
    "open": ("open an auction; prints its id",
             "A=$(p2pauction open 'Pic#1' 75 --increment 0.5 --duration 3600 --data-dir c1)"),
    "bid": ("bid on someone else's auction", "p2pauction bid 3f2a9c 80 --data-dir c2"),
    "close": ("close your auction; prints the winner and price", "p2pauction close 3f2a9c --data-dir c1"),
    "auctions": ("list auctions", "p2pauction auctions --status all --data-dir c1"),
    "show": ("one auction: its bids, late bids and status", "p2pauction show 3f2a9c --json --data-dir c1"),
    "history": ("finished auctions closed in a time window, or analytics with --stats",
                "p2pauction history --since 2026-11-25 --until 2026-11-26T12:00 --stats --data-dir c1"),
    "watch": ("live feed: one line per event, own and others'", "p2pauction watch --from-start --data-dir c1"),
    "peers": ("connected peers", "p2pauction peers --data-dir c1"),
    "status": ("identity, address, state digest and counters", "p2pauction status --data-dir c1"),
    "demo": ("the reference scenario on real local processes", "p2pauction demo"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="p2pauction", description="A peer-to-peer auction network.",
                     epilog="Run 'p2pauction COMMAND --help' for a command's options and an example.")
    _add_common(parser, shown=True)
    from p2pauction import __version__

    parser.add_argument("--version", action="version", version=f"p2pauction {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str) -> argparse.ArgumentParser:
        help_text, example = _COMMANDS_HELP[name]
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=f"example:\n  {example}\n\n{_COMMON_HINT}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(p, shown=False)
        return p

    p = add("bootstrap")
    p.add_argument("--listen", default="127.0.0.1:7000", metavar="HOST:PORT",
                   help="where nodes connect; port 0 picks a free port (default: 127.0.0.1:7000)")
    p.add_argument("--net", default=None, metavar="NAME", help="network id (default: p2pauction-main)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="override a gossip setting (see GossipConfig), e.g. --set exempt_ips=127.0.0.1; "
                        "repeatable")

    p = add("node")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="where peers connect (default: 127.0.0.1:0, a free port, written to node.json)")
    p.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT",
                   help="a bootstrap (or any node) to join through; repeatable (default: the peers "
                        "the store knows)")
    p.add_argument("--net", default=None, metavar="NAME",
                   help="network id (default: the previous run's, else p2pauction-main)")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="display name put in your events, a claim (default: the previous run's, else none)")
    p.add_argument("--offline", action="store_true", help="no network: a local node only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="override a gossip setting (see GossipConfig), e.g. --set ae_interval=2; repeatable")
    p.add_argument("--auto-close-grace", type=float, default=0.5, metavar="SECONDS",
                   help="wait this long after an auction's end before closing it (default: 0.5)")

    p = add("open")
    p.add_argument("item", help="what is sold (1-200 characters)")
    p.add_argument("price", help="starting price, a decimal amount such as 75 or 75.5")
    p.add_argument("--currency", default="USDt", type=_currency,
                   help="1-10 ASCII letters (default: USDt)")
    p.add_argument("--increment", default="0", metavar="X",
                   help="minimum raise over the best bid (default: 0, any raise)")
    p.add_argument("--duration", type=_positive_float, default=None, metavar="SECONDS",
                   help="your node closes the auction by itself after this many seconds (default: "
                        "no end; close it with 'close')")

    p = add("bid")
    p.add_argument("auction", help="auction id or a unique prefix")
    p.add_argument("amount", help="a decimal amount such as 80 or 80.5")

    p = add("close")
    p.add_argument("auction", help="auction id or a unique prefix")

    p = add("auctions")
    p.add_argument("--status", default="open", choices=("open", "closed", "disputed", "all"),
                   help="which auctions (default: open)")

    p = add("show")
    p.add_argument("auction", help="auction id or a unique prefix")

    p = add("history")
    p.add_argument("--since", default=None, metavar="ISO",
                   help="closed at or after, e.g. 2026-11-25 or 2026-11-25T14:00 (naive times are UTC; "
                        "default: the beginning)")
    p.add_argument("--until", default=None, metavar="ISO", help="closed before (default: now and later)")
    p.add_argument("--stats", action="store_true",
                   help="analytics instead of the list: count, volume, average and maximum price per "
                        "currency, top sellers and bidders")

    p = add("watch")
    p.add_argument("auction", nargs="?", default=None, help="only this auction, id or prefix (default: all)")
    p.add_argument("--from-start", action="store_true", help="first replay the events already held")

    add("peers")
    add("status")

    p = add("demo")
    p.add_argument("--net", default="p2pauction-demo", metavar="NAME",
                   help="network id of the demo's nodes (default: p2pauction-demo)")
    p.add_argument("--timeout", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="give up waiting for the nodes to agree after this long (default: 60)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    return parser


def _currency(text: str) -> str:
    from p2pauction.state.money import is_currency

    if not is_currency(text):
        raise argparse.ArgumentTypeError(f"currency {text!r} must be 1-10 ASCII letters (e.g. USDt)")
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``p2pauction``; returns the exit status (also via SystemExit)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.data_dir_given = getattr(args, "data_dir", None)
    args.data_dir = args.data_dir_given or default_data_dir()
    args.json = getattr(args, "json", False)
    from p2pauction.logs import configure

    service = args.command in ("node", "bootstrap", "demo")
    configure(getattr(args, "log_level", None) or ("info" if service else "warning"),
              getattr(args, "log_format", "auto"))
    try:
        return int(COMMANDS[args.command](args) or 0)
    except errors.P2PAuctionError as exc:
        _fail(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line, details in the debug log
        from p2pauction.logs import get_logger

        get_logger(__name__).debug("unexpected_error", exc_info=True)
        _fail(f"internal error: {exc!r} (run with --log-level debug for details)")
        return EXIT_ERROR


def run() -> None:
    sys.exit(main())


def _fail(message: str) -> None:
    # one line, and inert: a message may quote what a peer wrote
    print(f"error: {safe_text(' '.join(message.split()))}", file=sys.stderr)


def _quiet_stdout() -> None:
    # stdout's reader went away (e.g. `| head`): stop Python from complaining at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _out(args: argparse.Namespace, result: Any, human: Callable[[Any], str]) -> int:
    if args.json:
        print(json_text(result))
    else:
        text = human(result)
        if text:
            print(text)
    return 0


def _client(args: argparse.Namespace) -> Any:
    from p2pauction.control import ControlClient

    return ControlClient(args.data_dir)


def _parse_money(text: str, what: str) -> str:
    from p2pauction.state.money import format_money, parse_money_lenient

    try:
        return format_money(parse_money_lenient(text))
    except errors.MoneyError as exc:
        raise errors.MoneyError(f"{what}: {exc}") from None


# --------------------------------------------------------------------------- services


def cmd_node(args: argparse.Namespace) -> int:
    from p2pauction.gossip.config import parse_overrides
    from p2pauction.node import AuctionNode

    node = AuctionNode(args.data_dir, listen=args.listen, bootstraps=args.bootstrap, net=args.net,
                       name=args.name, network=not args.offline, gossip=parse_overrides(args.settings),
                       auto_close_grace=args.auto_close_grace)

    async def serve() -> None:
        stop = _stop_on_signals()
        async with node:
            info = {"name": node.name, "public_key": node.public_key, "listen": node.address,
                    "net": node.net, "data_dir": str(node.data_dir), "pid": os.getpid()}
            if args.json:
                print(json.dumps(info, sort_keys=True), flush=True)
            else:
                where = f"listening on {node.address}" if node.address else "offline"
                print(f"node {safe_text(node.name or node.public_key[:8])} {where} (net {safe_text(node.net)}); "
                      f"control socket in {node.data_dir}; Ctrl-C stops it", flush=True)
            await node.run_until(stop)  # until a signal (or a failure): no timeout by design

    asyncio.run(serve())
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from p2pauction.bootstrap import run_bootstrap
    from p2pauction.gossip.config import DEFAULT_NET, parse_overrides

    settings = parse_overrides(args.settings)

    async def serve() -> None:
        stop = _stop_on_signals()

        def started(addr: str) -> None:
            if args.json:
                print(json.dumps({"listen": addr, "net": args.net or DEFAULT_NET, "pid": os.getpid()}),
                      flush=True)
            else:
                print(f"bootstrap listening on {addr} (net {args.net or DEFAULT_NET}); Ctrl-C stops it",
                      flush=True)

        # The bootstrap keeps no auction state; with an explicit --data-dir it keeps its key there
        # and writes bootstrap.json (its real address, for port 0). The default directory is
        # left alone: it is the node's.
        given = Path(args.data_dir_given) if args.data_dir_given else None
        await run_bootstrap(args.listen, args.net or DEFAULT_NET, stop=stop, on_started=started,
                            info_dir=given, data_dir=given, gossip=settings)

    asyncio.run(serve())
    return 0


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


# --------------------------------------------------------------------------- client commands


def cmd_open(args: argparse.Namespace) -> int:
    price = _parse_money(args.price, "price")
    increment = _parse_money(args.increment, "increment")
    result = _client(args).call("open", item=args.item, price=price, currency=args.currency,
                                increment=increment, duration=args.duration)
    return _out(args, result, lambda r: r["auction"])


def cmd_bid(args: argparse.Namespace) -> int:
    amount = _parse_money(args.amount, "amount")
    result = _client(args).call("bid", auction=args.auction, amount=amount)

    def human(r: dict[str, Any]) -> str:
        view = r["view"]
        state = "leading" if r.get("leading") else "not leading"
        return (f"bid {r['bid']} placed: {amount} {safe_text(view['currency'])} on "
                f"{safe_text(view['item'], LINE_ITEM_WIDTH)} ({state})")

    return _out(args, result, human)


def cmd_close(args: argparse.Namespace) -> int:
    result = _client(args).call("close", auction=args.auction)
    return _out(args, result, lambda r: _summary_line(str(r["summary"]), r.get("item")))


def cmd_auctions(args: argparse.Namespace) -> int:
    result = _client(args).call("auctions", status=args.status)
    return _out(args, result, _render_auctions)


def cmd_show(args: argparse.Namespace) -> int:
    result = _client(args).call("show", auction=args.auction)
    return _out(args, result, _render_auction)


def cmd_history(args: argparse.Namespace) -> int:
    from p2pauction.node import to_ms

    since, until = to_ms(args.since), to_ms(args.until)
    if args.stats:
        return _out(args, _client(args).call("stats", since=since, until=until), _render_stats)
    return _out(args, _client(args).call("history", since=since, until=until), _render_history)


def cmd_peers(args: argparse.Namespace) -> int:
    return _out(args, _client(args).call("peers"), _render_peers)


def cmd_status(args: argparse.Namespace) -> int:
    return _out(args, _client(args).call("status"), _render_status)


def cmd_watch(args: argparse.Namespace) -> int:
    client = _client(args)
    for note in client.watch(args.auction, from_start=args.from_start):
        if args.json:
            print(json_text(note), flush=True)
        else:
            print(render_notification(note), flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from p2pauction.demo import run_demo

    return run_demo(net=args.net, timeout=args.timeout, keep=args.keep)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "node": cmd_node, "bootstrap": cmd_bootstrap, "open": cmd_open, "bid": cmd_bid, "close": cmd_close,
    "auctions": cmd_auctions, "show": cmd_show, "history": cmd_history, "watch": cmd_watch,
    "peers": cmd_peers, "status": cmd_status, "demo": cmd_demo,
}


# --------------------------------------------------------------------------- rendering
#
# Item names and display names are written by peers: every human output goes through
# p2pauction.display (escaped control and bidi characters, cut with "…", tables sized by display
# width). JSON output (_out with --json) keeps the exact text.

ITEM_WIDTH = 30          # item column of the tables
NAME_WIDTH = 20          # name columns of the tables (names are at most 32 characters)
LINE_ITEM_WIDTH = 40     # an item inside a one-line summary (watch, bid, close)


def _who(key: str | None, name: str | None) -> str:
    return name or (key[:8] if key else "-")


def _when(ms: int | None) -> str:
    from p2pauction.timefmt import format_ms

    return format_ms(ms)


def _summary_line(summary: str, item: str | None) -> str:
    """The node's one-line summary, made safe, with a long item cut down.

    The summary embeds the item verbatim; a 200-character item would push the price off the
    line, so its first occurrence is shortened (names come before it but are shorter than any
    item that gets cut, except in wide scripts, where the worst case is a cut name).
    """
    if item and display_width(item) > LINE_ITEM_WIDTH and item in summary:
        summary = summary.replace(item, safe_text(item, LINE_ITEM_WIDTH), 1)
    return safe_text(summary)


def render_notification(note: dict[str, Any]) -> str:
    """One feed line: ``14:02:03 [own ] C1 opens Pic#1 at 75 USDt  (auction 1a2b3c4d)``."""
    from p2pauction.timefmt import CLOCK, format_ms

    clock = format_ms(note.get("ts", 0), CLOCK)
    mark = "own " if note.get("own") else "peer"
    missed = f"  [{note['missed']} earlier events missed: slow reader]" if note.get("missed") else ""
    auction = note.get("auction")
    item = auction.get("item") if isinstance(auction, dict) else None
    summary = _summary_line(str(note.get("summary") or note.get("kind")), item)
    return f"{clock} [{mark}] {summary}  (auction {safe_text(str(note['auction_id'])[:8])}){missed}"


def _leading(view: dict[str, Any]) -> str:
    bid = view.get("winner") if view.get("status") == "closed" else view.get("leading")
    if not bid:
        return "-"
    return f"{bid['amount']} by {_who(bid.get('bidder'), bid.get('name'))}"


def _render_auctions(views: list[dict[str, Any]]) -> str:
    if not views:
        return "no auctions"
    columns = (Column("AUCTION"), Column("STATUS"), Column("ITEM", max_width=ITEM_WIDTH),
               Column("START", "right"), Column("BEST", max_width=NAME_WIDTH + 16), Column("BIDS", "right"),
               Column("SELLER", max_width=NAME_WIDTH), Column("ENDS"))
    rows = [(v["id"][:12], v["status"].upper(), v["item"], f"{v['start_price']} {v['currency']}", _leading(v),
             str(len(v.get("bids", []))), _who(v.get("seller"), v.get("seller_name")),
             _when(v.get("ends_at")) if v.get("ends_at") else "-")
            for v in views]
    return render_table(columns, rows)


def _render_auction(v: dict[str, Any]) -> str:
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


def _render_history(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no finished auctions in that window"
    columns = (Column("AUCTION"), Column("STATUS"), Column("ITEM", max_width=ITEM_WIDTH), Column("PRICE", "right"),
               Column("WINNER", max_width=NAME_WIDTH), Column("SELLER", max_width=NAME_WIDTH), Column("CLOSED"))
    table = [(str(r.get("id", r.get("auction", "")))[:12], str(r.get("status", "")).upper(), str(r.get("item", "")),
              f"{r.get('price')} {r.get('currency', '')}" if r.get("price") is not None else "-",
              _who(r.get("winner"), r.get("winner_name")) if r.get("winner") else "-",
              _who(r.get("seller"), r.get("seller_name")), _when(r.get("closed_ts")))
             for r in rows]
    return render_table(columns, table)


def _render_stats(stats: dict[str, Any]) -> str:
    """``history --stats``: a summary line, then one table per figure (empty ones left out)."""
    tables = [render_table(columns, rows) for columns, rows in _stats_tables(stats) if rows]
    return "\n\n".join([_stats_heading(stats), *tables])


_StatsTable = tuple[tuple[Column, ...], list[tuple[str, ...]]]   # columns, rows


def _stats_heading(stats: dict[str, Any]) -> str:
    since = _when(stats["since"]) if stats.get("since") is not None else "the beginning"
    until = _when(stats["until"]) if stats.get("until") is not None else "now"
    return (f"finished auctions closed from {since} to {until}: {stats.get('finished', 0)} "
            f"(closed {stats.get('closed', 0)}, of which {stats.get('unsold', 0)} without bids; "
            f"disputed {stats.get('disputed', 0)})")


def _stats_tables(stats: dict[str, Any]) -> list[_StatsTable]:
    """(columns, rows) of each stats table: per currency, top sellers and bidders, by volume."""
    def name(entry: dict[str, Any]) -> str:
        return str(entry.get("name") or "-")

    def key(entry: dict[str, Any]) -> str:
        return str(entry.get("key", ""))[:8]

    tables: list[_StatsTable] = [
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


def _volumes(volume: Any) -> str:
    """``{"USDt": "320", "EUR": "5"}`` as ``320 USDt, 5 EUR``."""
    if not isinstance(volume, dict) or not volume:
        return "-"
    return ", ".join(f"{amount} {cur}" for cur, amount in volume.items())


def _render_peers(peers: list[dict[str, Any]]) -> str:
    if not peers:
        return "no connected peers"
    columns = (Column("KEY"), Column("ADDRESS", max_width=48), Column("ROLE"), Column("DIRECTION"))
    rows = [(str(p.get("key") or "?")[:16], str(p.get("addr") or p.get("remote") or "?"), str(p.get("role", "node")),
             "out" if p.get("outbound") else "in") for p in peers]
    return render_table(columns, rows)


def _render_status(status: dict[str, Any]) -> str:
    return _render_mapping(status)


def _render_mapping(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if not isinstance(data, dict):
        return f"{pad}{safe_text(str(data))}"
    lines = []
    for key, value in data.items():
        label = safe_text(str(key))
        if isinstance(value, dict):
            if value:
                lines.append(f"{pad}{label}:")
                lines.append(_render_mapping(value, indent + 1))
            else:
                lines.append(f"{pad}{label}: -")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{label}:")
            for item in value:
                lines.append(f"{pad}  - " + safe_text(", ".join(f"{k}={_short(v)}" for k, v in item.items())))
        elif isinstance(value, list):
            lines.append(f"{pad}{label}: " + (safe_text(", ".join(_short(v) for v in value)) or "-"))
        else:
            lines.append(f"{pad}{label}: {safe_text(str(value))}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    """Compact text for a nested value: keys shortened to 16 hex digits, dicts as JSON."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:16]
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


if __name__ == "__main__":
    run()
