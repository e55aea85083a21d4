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


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS defaults: the options work before or after the command without one overwriting
    # the other (argparse applies a subparser's defaults over the main parser's values).
    common = _Parser(add_help=False)
    common.add_argument("--data-dir", default=argparse.SUPPRESS, metavar="DIR",
                        help="the node's data directory (default: $P2PAUCTION_DATA_DIR, else ./p2pauction-data)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output (JSON; JSON lines for watch)")
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=("debug", "info", "warning", "error"),
                        help="log level (default: info for node/bootstrap, warning otherwise)")
    common.add_argument("--log-format", default=argparse.SUPPRESS, choices=("auto", "console", "json"),
                        help="logs on stderr: readable (console/auto) or JSON lines")

    parser = _Parser(prog="p2pauction", description="A peer-to-peer auction network.",
                                     parents=[common])
    from p2pauction import __version__

    parser.add_argument("--version", action="version", version=f"p2pauction {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    p = add("bootstrap", "run a discovery node that peers register with")
    p.add_argument("--listen", default="127.0.0.1:7000", metavar="HOST:PORT", help="port 0 picks a free port")
    p.add_argument("--net", default=None, metavar="NAME", help="network id (default p2pauction-main)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="override a gossip setting (see GossipConfig), e.g. --set exempt_ips=127.0.0.1")

    p = add("node", "run a node (until Ctrl-C or SIGTERM)")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="where peers connect (default 127.0.0.1:0: a free port, written to node.json)")
    p.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT",
                   help="a bootstrap (or any node) to join through; repeatable")
    p.add_argument("--net", default=None, metavar="NAME", help="network id (default: as before, else p2pauction-main)")
    p.add_argument("--name", default=None, metavar="NAME", help="display name put in your events (a claim)")
    p.add_argument("--offline", action="store_true", help="no network: a local node only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="override a gossip setting (see GossipConfig), e.g. --set ae_interval=2")
    p.add_argument("--auto-close-grace", type=float, default=0.5, metavar="SECONDS",
                   help="wait this long after an auction's end before closing it (default 0.5)")

    p = add("open", "open an auction; prints its id")
    p.add_argument("item")
    p.add_argument("price", help="starting price, e.g. 75 or 75.5")
    p.add_argument("--currency", default="USDt")
    p.add_argument("--increment", default="0", metavar="X", help="minimum raise over the best bid")
    p.add_argument("--duration", type=_positive_float, default=None, metavar="SECONDS",
                   help="your node closes the auction by itself after this many seconds")

    p = add("bid", "bid on someone else's auction")
    p.add_argument("auction", help="auction id or a unique prefix")
    p.add_argument("amount")

    p = add("close", "close your auction; prints the winner and price")
    p.add_argument("auction", help="auction id or a unique prefix")

    p = add("auctions", "list auctions")
    p.add_argument("--status", default="open", choices=("open", "closed", "disputed", "all"))

    p = add("show", "one auction: its bids, late bids and status")
    p.add_argument("auction", help="auction id or a unique prefix")

    p = add("history", "finished auctions over a time window")
    p.add_argument("--since", default=None, metavar="ISO", help="e.g. 2026-11-25 or 2026-11-25T14:00 (UTC)")
    p.add_argument("--until", default=None, metavar="ISO")
    p.add_argument("--stats", action="store_true", help="analytics instead of the list")

    p = add("watch", "live feed: one line per event, own and others'")
    p.add_argument("auction", nargs="?", default=None, help="only this auction (id or prefix)")
    p.add_argument("--from-start", action="store_true", help="first replay the events already held")

    add("peers", "connected peers")
    add("status", "identity, address, state digest and counters")

    p = add("demo", "the reference scenario on real local processes")
    p.add_argument("--net", default="p2pauction-demo", metavar="NAME")
    p.add_argument("--timeout", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="give up waiting for the nodes to agree after this long")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    return parser


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
        import structlog

        structlog.get_logger(__name__).debug("unexpected_error", exc_info=True)
        _fail(f"internal error: {exc!r} (run with --log-level debug for details)")
        return EXIT_ERROR


def run() -> None:
    sys.exit(main())


def _fail(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)


def _quiet_stdout() -> None:
    # stdout's reader went away (e.g. `| head`): stop Python from complaining at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _out(args: argparse.Namespace, result: Any, human: Callable[[Any], str]) -> int:
    if args.json:
        print(json.dumps(result, sort_keys=True, ensure_ascii=False))
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
    from p2pauction.node import AuctionNode

    node = AuctionNode(args.data_dir, listen=args.listen, bootstraps=args.bootstrap, net=args.net,
                       name=args.name, network=not args.offline, gossip=_settings(args.settings),
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
                print(f"node {node.name or node.public_key[:8]} {where} (net {node.net}); "
                      f"control socket in {node.data_dir}; Ctrl-C stops it", flush=True)
            await node.run_until(stop)  # until a signal (or a failure): no timeout by design

    asyncio.run(serve())
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from p2pauction.bootstrap import run_bootstrap
    from p2pauction.node import DEFAULT_NET

    settings = _settings(args.settings)

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


def _settings(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs, typed like the GossipConfig field they override."""
    import dataclasses

    from p2pauction.gossip.config import GossipConfig

    fields = {f.name: f for f in dataclasses.fields(GossipConfig)}
    defaults = GossipConfig(net="x")
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields or key in ("net", "listen_addr", "bootstraps"):
            raise errors.UsageError(f"--set {item!r}: expected KEY=VALUE with KEY a gossip setting")
        current = getattr(defaults, key)
        try:
            if isinstance(current, bool):
                value: Any = text.lower() in ("1", "true", "yes", "on")
            elif isinstance(current, int):
                value = int(text)
            elif isinstance(current, float):
                value = float(text)
            elif isinstance(current, tuple):
                value = tuple(x for x in text.split(",") if x)
            else:
                value = text
        except ValueError:
            raise errors.UsageError(f"--set {item!r}: {text!r} is not a valid {type(current).__name__}") from None
        out[key] = value
    return out


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
        return f"bid {r['bid']} placed: {amount} {view['currency']} on {view['item']} ({state})"

    return _out(args, result, human)


def cmd_close(args: argparse.Namespace) -> int:
    result = _client(args).call("close", auction=args.auction)
    return _out(args, result, lambda r: r["summary"])


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
            print(json.dumps(note, sort_keys=True, ensure_ascii=False), flush=True)
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


def _who(key: str | None, name: str | None) -> str:
    return name or (key[:8] if key else "-")


def _when(ms: int | None) -> str:
    from p2pauction.timefmt import format_ms

    return format_ms(ms)


def render_notification(note: dict[str, Any]) -> str:
    """One feed line: ``14:02:03 [own ] C1 opens Pic#1 at 75 USDt  (auction 1a2b3c4d)``."""
    from p2pauction.timefmt import CLOCK, format_ms

    clock = format_ms(note.get("ts", 0), CLOCK)
    mark = "own " if note.get("own") else "peer"
    missed = f"  [{note['missed']} earlier events missed: slow reader]" if note.get("missed") else ""
    return f"{clock} [{mark}] {note.get('summary', note.get('kind'))}  (auction {note['auction_id'][:8]}){missed}"


def _leading(view: dict[str, Any]) -> str:
    bid = view.get("winner") if view.get("status") == "closed" else view.get("leading")
    if not bid:
        return "-"
    return f"{bid['amount']} by {_who(bid.get('bidder'), bid.get('name'))}"


def _render_auctions(views: list[dict[str, Any]]) -> str:
    if not views:
        return "no auctions"
    rows: list[tuple[str, ...]] = [("AUCTION", "STATUS", "ITEM", "START", "BEST", "BIDS", "SELLER", "ENDS")]
    for v in views:
        rows.append((v["id"][:12], v["status"].upper(), v["item"][:30], f"{v['start_price']} {v['currency']}",
                     _leading(v), str(len(v.get("bids", []))), _who(v.get("seller"), v.get("seller_name")),
                     _when(v.get("ends_at")) if v.get("ends_at") else "-"))
    return _table(rows)


def _render_auction(v: dict[str, Any]) -> str:
    lines = [
        f"auction  {v['id']}",
        f"item     {v['item']}",
        f"seller   {_who(v.get('seller'), v.get('seller_name'))} ({v.get('seller', '')[:16]})",
        f"status   {v['status'].upper()}",
        f"start    {v['start_price']} {v['currency']} (min increment {v.get('min_increment', '0')})",
        f"opened   {_when(v.get('opened_ts'))}",
    ]
    if v.get("ends_at"):
        lines.append(f"ends     {_when(v['ends_at'])}")
    if v["status"] == "closed":
        winner = v.get("winner")
        lines.append("result   " + (f"{_who(winner.get('bidder'), winner.get('name'))} wins at "
                                    f"{winner['amount']} {v['currency']}" if winner else "closed with no bids"))
    elif v["status"] == "disputed":
        lines.append(f"result   DISPUTED: the seller signed {len(v.get('closes', []))} different closes: "
                     + ", ".join(c[:12] for c in v.get("closes", [])))
    else:
        lines.append(f"leading  {_leading(v)}")
    bids = v.get("bids", [])
    lines.append(f"bids     {len(bids)}")
    for b in bids:
        late = "  LATE (concurrent with the close)" if b.get("late") else ""
        lines.append(f"  {b['id'][:12]}  {b['amount']:>12} {v['currency']}  by "
                     f"{_who(b.get('bidder'), b.get('name'))}  {_when(b.get('ts'))}{late}")
    return "\n".join(lines)


def _render_history(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no finished auctions in that window"
    table: list[tuple[str, ...]] = [("AUCTION", "STATUS", "ITEM", "PRICE", "WINNER", "SELLER", "CLOSED")]
    for r in rows:
        price = f"{r.get('price')} {r.get('currency', '')}" if r.get("price") is not None else "-"
        table.append((str(r.get("id", r.get("auction", "")))[:12], str(r.get("status", "")).upper(),
                      str(r.get("item", ""))[:30], price,
                      _who(r.get("winner"), r.get("winner_name")) if r.get("winner") else "-",
                      _who(r.get("seller"), r.get("seller_name")), _when(r.get("closed_ts"))))
    return _table(table)


def _render_stats(stats: dict[str, Any]) -> str:
    return _render_mapping(stats)


def _render_peers(peers: list[dict[str, Any]]) -> str:
    if not peers:
        return "no connected peers"
    rows: list[tuple[str, ...]] = [("KEY", "ADDRESS", "ROLE", "DIRECTION")]
    for p in peers:
        rows.append((str(p.get("key") or "?")[:16], str(p.get("addr") or p.get("remote") or "?"),
                     str(p.get("role", "node")), "out" if p.get("outbound") else "in"))
    return _table(rows)


def _render_status(status: dict[str, Any]) -> str:
    return _render_mapping(status)


def _render_mapping(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if not isinstance(data, dict):
        return f"{pad}{data}"
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            if value:
                lines.append(f"{pad}{key}:")
                lines.append(_render_mapping(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: -")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key}:")
            for item in value:
                lines.append(f"{pad}  - " + ", ".join(f"{k}={_short(v)}" for k, v in item.items()))
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: " + (", ".join(_short(v) for v in value) or "-"))
        else:
            lines.append(f"{pad}{key}: {value}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    """Compact text for a nested value: keys shortened to 16 hex digits, dicts as JSON."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:16]
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


if __name__ == "__main__":
    run()
