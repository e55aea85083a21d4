"""The discovery node behind ``p2pauction bootstrap``: DiscoveryCore on the asyncio transport.

It holds no auction state: nodes register their key and listen address, heartbeat, and ask for
random samples of live peers. Losing it does not lose the network (nodes exchange peers and
remember them), so it keeps nothing on disk but, with ``data_dir``, its identity key (a stable
key lets nodes recognise it across restarts).

``run_bootstrap`` is what the CLI calls; ``python -m p2pauction.bootstrap`` runs it standalone
(same options as ``p2pauction bootstrap``, plus ``--set KEY=VALUE`` gossip overrides). With
port 0 the real address is reported through ``on_started`` and ``info_dir/bootstrap.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from p2pauction.errors import UsageError
from p2pauction.gossip.config import DEFAULT_NET, GossipConfig, parse_overrides
from p2pauction.gossip.discovery import DiscoveryCore
from p2pauction.gossip.transport import Transport, TransportConfig
from p2pauction.logs import get_logger

log = get_logger("p2pauction.bootstrap")   # not __name__: it is "__main__" under python -m

START_TIMEOUT = 10.0
INFO_FILE = "bootstrap.json"


async def run_bootstrap(listen: str, net: str | None = None, *, stop: asyncio.Event | None = None,
                        on_started: Callable[[str], None] | None = None,
                        info_dir: Path | str | None = None,
                        gossip: Mapping[str, Any] | None = None,
                        data_dir: Path | str | None = None,
                        transport_config: TransportConfig | None = None) -> None:
    """Serve discovery on ``listen`` for network ``net`` until ``stop`` is set (or cancelled).

    ``net`` defaults to the node's default network. ``gossip`` overrides GossipConfig fields
    (timers, limits, ``exempt_ips``...). Once serving, the real "host:port" (port 0 resolved)
    goes to ``on_started`` and, with ``info_dir``, to ``info_dir/bootstrap.json`` (written
    atomically, with pid, net and public key). ``data_dir`` keeps the identity key across runs;
    without it the key is fresh each run (nodes know a bootstrap by its address).
    """
    if net is None:
        net = DEFAULT_NET
    identity = _identity(Path(data_dir) if data_dir is not None else None)
    transport = Transport(None, listen, config=transport_config)
    try:
        addr = await transport.bind()
    except OSError as exc:
        raise UsageError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    overrides = {k: v for k, v in (gossip or {}).items() if k not in ("net", "listen_addr", "bootstraps")}
    cfg = GossipConfig(net=net, listen_addr=addr, **overrides)
    core = DiscoveryCore(cfg, identity, random.Random(secrets.randbits(128)), transport.now(), entropy=os.urandom)
    transport.core = core
    async with asyncio.TaskGroup() as tg:
        serving = tg.create_task(transport.run(), name="bootstrap-transport")
        await asyncio.wait_for(transport.started.wait(), START_TIMEOUT)
        if info_dir is not None:
            _write_info(Path(info_dir), {"pid": os.getpid(), "listen": addr, "net": net,
                                         "public_key": identity.public_hex})
        log.info("bootstrap_started", addr=addr, net=net, key=identity.public_hex)
        if on_started is not None:
            on_started(addr)
        if stop is not None:
            stop_wait = tg.create_task(stop.wait(), name="bootstrap-stop")
            # The service's lifetime, not an I/O wait: it ends on stop or if serving fails.
            await asyncio.wait({serving, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            transport.stop()
    log.info("bootstrap_stopped", addr=addr, **_summary(core, transport.now()))


def _identity(data_dir: Path | None) -> Any:
    from p2pauction.state.identity import Identity

    if data_dir is None:
        return Identity.generate(os.urandom(32))
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Identity.load_or_create(data_dir / "identity.key")


def _summary(core: DiscoveryCore, now: float) -> dict[str, Any]:
    return {k: v for k, v in core.stats(now).items() if k != "links"}


def _write_info(info_dir: Path, info: Mapping[str, Any]) -> None:
    info_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = info_dir / f".{INFO_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(dict(info), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, info_dir / INFO_FILE)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m p2pauction.bootstrap``: the first stdout line is the real address."""
    from p2pauction import logs

    parser = argparse.ArgumentParser(prog="python -m p2pauction.bootstrap",
                                     description="Run a p2pauction discovery (bootstrap) node.")
    parser.add_argument("--listen", default="127.0.0.1:7000", help="HOST:PORT (port 0 picks one)")
    parser.add_argument("--net", default=None, help="network id (default: the node's default)")
    parser.add_argument("--data-dir", type=Path, help="keeps the identity key across restarts")
    parser.add_argument("--info-dir", type=Path, help=f"write {INFO_FILE} (real address) here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="override a gossip setting (see GossipConfig), e.g. --set exempt_ips=127.0.0.1")
    parser.add_argument("--log-format", choices=logs.LOG_FORMATS, default="auto")
    parser.add_argument("--log-level", choices=logs.LOG_LEVELS, default="info")
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        asyncio.run(_serve_until_signal(args, parse_overrides(args.settings)))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signal(args: argparse.Namespace, gossip: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_bootstrap(args.listen, args.net, stop=stop, on_started=lambda addr: print(addr, flush=True),
                        info_dir=args.info_dir, gossip=gossip, data_dir=args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
