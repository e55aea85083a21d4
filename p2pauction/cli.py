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
from p2pauction import render
from p2pauction.display import json_text, safe_text

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
    "check": ("offline consistency check: re-validate every stored event and compare with the saved "
              "state (exit 1 on a difference)", "p2pauction check --data-dir c1"),
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
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="at most N auctions per page, 1..10000 (default 1000); ignored with --stats")
    p.add_argument("--offset", type=int, default=0, metavar="N",
                   help="skip the first N auctions of the window: the next page is --offset OFFSET+LIMIT")
    p.add_argument("--stats", action="store_true",
                   help="analytics instead of the list: count, volume, average and maximum price per "
                        "currency, top sellers and bidders")

    add("check")

    p = add("watch")
    p.add_argument("auction", nargs="?", default=None, help="only this auction, id or prefix (default: all)")
    p.add_argument("--from-start", action="store_true", help="first replay the events already held")

    add("peers")
    p = add("status")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also every counter (ledger, node, gossip, transport), one per line")

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
    return _out(args, result, render.render_open)


def cmd_bid(args: argparse.Namespace) -> int:
    amount = _parse_money(args.amount, "amount")
    return _out(args, _client(args).call("bid", auction=args.auction, amount=amount), render.render_bid)


def cmd_close(args: argparse.Namespace) -> int:
    return _out(args, _client(args).call("close", auction=args.auction), render.render_close)


def cmd_auctions(args: argparse.Namespace) -> int:
    return _out(args, _client(args).call("auctions", status=args.status), render.render_auctions)


def cmd_show(args: argparse.Namespace) -> int:
    return _out(args, _client(args).call("show", auction=args.auction), render.render_auction)


def cmd_history(args: argparse.Namespace) -> int:
    from p2pauction.node import to_ms

    since, until = to_ms(args.since), to_ms(args.until)
    if args.stats:
        return _out(args, _client(args).call("stats", since=since, until=until), render.render_stats)
    from p2pauction.control import HISTORY_PAGE

    limit = HISTORY_PAGE if args.limit is None else args.limit
    rows = _client(args).call("history", since=since, until=until, limit=limit, offset=args.offset)
    return _out(args, rows, lambda page: render.render_history(page, limit=limit, offset=args.offset))


def cmd_check(args: argparse.Namespace) -> int:
    from p2pauction.gossip.config import DEFAULT_NET
    from p2pauction.state.check import check_store
    from p2pauction.state.store import SqliteStore

    path = Path(args.data_dir) / "store.db"
    if not path.is_file():
        raise errors.UsageError(f"no store at {path}: give the node's --data-dir")
    store = SqliteStore(path)
    try:
        report = check_store(store, store.bound_net() or DEFAULT_NET)
    finally:
        store.close()
    _out(args, report.to_json(), lambda _: report.render())
    return 0 if report.ok else EXIT_ERROR


def cmd_peers(args: argparse.Namespace) -> int:
    return _out(args, _client(args).call("peers"), render.render_peers)


def cmd_status(args: argparse.Namespace) -> int:
    human = render.render_status_verbose if args.verbose else render.render_status
    return _out(args, _client(args).call("status"), human)


def cmd_watch(args: argparse.Namespace) -> int:
    client = _client(args)
    for note in client.watch(args.auction, from_start=args.from_start):
        if args.json:
            print(json_text(note), flush=True)
        else:
            print(render.render_notification(note), flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from p2pauction.demo import run_demo

    return run_demo(net=args.net, timeout=args.timeout, keep=args.keep, json_lines=args.json)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "node": cmd_node, "bootstrap": cmd_bootstrap, "open": cmd_open, "bid": cmd_bid, "close": cmd_close,
    "auctions": cmd_auctions, "show": cmd_show, "history": cmd_history, "check": cmd_check, "watch": cmd_watch,
    "peers": cmd_peers, "status": cmd_status, "demo": cmd_demo,
}


if __name__ == "__main__":
    run()
