"""The real network test bed (issue 7): real ``p2pauction`` processes on emulated hosts.

``python -m testbed --hosts 12 --seed 1 --report DIR`` builds one network namespace per
host (see :mod:`testbed.netns`), starts a bootstrap and a node on the first host and a node on
every other host, then drives a workload through the **CLI** of several hosts while injecting
faults, and checks that the network converges:

1. every link shaped (default 10% loss, 100±50 ms one-way delay) for the whole run;
2. the reference scenario (C1 opens Pic#1 75, C2 opens Pic#2 60, C2 bids 75, C3 bids 75.5,
   C2 bids 80, C1 closes: C2 wins at 80), each step once the actor's node has seen the step before;
3. ``--auctions`` auctions opened by random hosts, then ``--bids`` random bids in three phases:
   connected; partitioned into two halves (blackhole routes) while ``--kills`` nodes are killed
   with SIGKILL and restarted from their data directory; healed, followed by closing half of the
   auctions by their sellers;
4. once the workload is over, every node's ``status --json`` digest and every auction's
   ``show --json`` on every node are polled until they all agree (or ``--converge-timeout``).

An operation counts as **acknowledged** when its CLI call exited 0 with a JSON result; every
acknowledged bid must be present on every node at the end (restarts included). Timing is real,
so a seed fixes the workload plan and the fault schedule, not the interleaving.

Output: a summary on stdout, and with ``--report DIR`` a ``report.json`` and (matplotlib) a
``testbed.png`` with events held per node and digest agreement over time, fault periods shaded.
Everything is torn down at the end, also on Ctrl-C, SIGTERM or an exception; ``--cleanup`` removes
namespaces left by runs that died without it.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from p2pauction.errors import NodeUnavailable, P2PAuctionError
from testbed.netns import Host, LinkProfile, Testbed, cleanup_leftovers, probe_netns

BOOTSTRAP_PORT = 7000
NODE_PORT = 7100
STEP_TIMEOUT = 30.0


@dataclass
class ScenarioConfig:
    """Everything that shapes a run; the defaults are the issue's acceptance scenario."""

    hosts: int = 12
    seed: int = 1
    auctions: int = 20
    bids: int = 300
    loss: float = 0.10
    delay_ms: float = 100.0
    jitter_ms: float = 50.0
    partition: bool = True
    kills: int = 2
    down_for: float = 5.0
    partition_for: float = 10.0
    converge_timeout: float = 60.0
    workers: int = 4
    sample_every: float = 1.0
    shaper: str = "auto"
    net: str = "p2pauction-testbed"
    log_level: str = "info"
    report_dir: Path | None = None
    workdir: Path | None = None
    keep_workdir: bool = False


@dataclass(frozen=True, slots=True)
class CliResult:
    """One CLI call: acknowledged (``ok``) only when it exited 0 and printed JSON."""

    ok: bool
    rc: int
    data: Any
    error: str
    elapsed: float


@dataclass
class NodeProc:
    host: Host
    name: str
    data_dir: Path
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    kills: int = 0


def fmt_money(value: Decimal) -> str:
    """Canonical money text: Decimal("80.50") -> "80.5", Decimal("8E+1") -> "80"."""
    text = format(value.normalize(), "f")
    return text


def cli_prefix() -> list[str]:
    """How to run the CLI with the interpreter running us (the project's venv)."""
    return [sys.executable, "-m", "p2pauction"]


class Timeline:
    """Seconds since the start of the run, named instants, and fault intervals for the plot."""

    def __init__(self) -> None:
        self.t0 = asyncio.get_running_loop().time()
        self.marks: list[tuple[float, str]] = []
        self.intervals: list[dict[str, Any]] = []

    def now(self) -> float:
        return round(asyncio.get_running_loop().time() - self.t0, 3)

    def mark(self, label: str) -> float:
        t = self.now()
        self.marks.append((t, label))
        return t

    def begin(self, kind: str, label: str) -> dict[str, Any]:
        interval = {"kind": kind, "label": label, "start": self.now(), "end": None}
        self.intervals.append(interval)
        return interval

    def end(self, interval: dict[str, Any]) -> None:
        interval["end"] = self.now()

    def close_all(self) -> None:
        for interval in self.intervals:
            if interval["end"] is None:
                interval["end"] = self.now()


async def control_request(data_dir: Path, op: str, args: dict[str, Any] | None = None,
                          timeout: float = 5.0) -> dict[str, Any] | None:
    """One request on a node's control socket; None when the node is not answering.

    Used only for cheap instrumentation (readiness, the sampler); the workload and the final
    checks go through the CLI.
    """
    path = data_dir / "control.sock"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=16 * 2**20), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(json.dumps({"op": op, "args": args or {}}).encode() + b"\n")
        await asyncio.wait_for(writer.drain(), timeout)
        line = await asyncio.wait_for(reader.readline(), timeout)
        reply = json.loads(line) if line else None
        return reply if isinstance(reply, dict) else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def poll(check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.25) -> bool:
    """Call `check` until it returns True or `timeout` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await check():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(every)


class Scenario:
    """Drives one run on a built :class:`Testbed`; :meth:`run` returns the report dict."""

    def __init__(self, cfg: ScenarioConfig, tb: Testbed, workdir: Path) -> None:
        self.cfg = cfg
        self.tb = tb
        self.workdir = workdir
        self.rng = random.Random(cfg.seed)
        self.cli_sem = asyncio.Semaphore(max(1, cfg.workers))
        self.timeline = Timeline()
        self.boot_host = tb.hosts[0]
        self.nodes: dict[str, NodeProc] = {}
        for h in tb.hosts:
            self.nodes[h.name] = NodeProc(host=h, name=f"C{h.index}", data_dir=workdir / h.name,
                                          log_path=workdir / f"{h.name}.log")
        self.bootstrap: asyncio.subprocess.Process | None = None
        self.auctions: dict[str, dict[str, Any]] = {}       # acked opens, by auction id
        self.pool: list[str] = []                          # auctions the random bids target
        self.high: dict[str, Decimal] = {}                  # highest acked amount per auction
        self.acked_bids: dict[str, dict[str, Any]] = {}
        self.acked_closes: dict[str, dict[str, Any]] = {}
        self.rejected: Counter[str] = Counter()
        self.last_error: dict[str, str] = {}
        self.cli_calls = 0
        self.samples: list[dict[str, Any]] = []
        self.groups: tuple[list[Host], list[Host]] | None = None
        self.last_ack = 0.0

    # ------------------------------------------------------------------ processes

    def _log(self, message: str) -> None:
        print(f"[{self.timeline.now():7.2f}s] {message}", flush=True)

    async def start_bootstrap(self) -> None:
        h = self.boot_host
        log = open(self.workdir / "bootstrap.log", "ab")
        argv = [*cli_prefix(), "bootstrap", "--listen", f"{h.addr}:{BOOTSTRAP_PORT}",
                "--net", self.cfg.net]
        self.bootstrap = await asyncio.create_subprocess_exec(
            *self.tb.exec_argv(h, argv), stdin=asyncio.subprocess.DEVNULL, stdout=log,
            stderr=asyncio.subprocess.STDOUT)
        log.close()

    async def start_node(self, node: NodeProc) -> None:
        h = node.host
        node.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = open(node.log_path, "ab")
        argv = [*cli_prefix(), "node", "--data-dir", str(node.data_dir),
                "--listen", f"{h.addr}:{NODE_PORT}",
                "--bootstrap", f"{self.boot_host.addr}:{BOOTSTRAP_PORT}",
                "--net", self.cfg.net, "--name", node.name,
                "--log-format", "json", "--log-level", self.cfg.log_level]
        node.proc = await asyncio.create_subprocess_exec(
            *self.tb.exec_argv(h, argv), stdin=asyncio.subprocess.DEVNULL, stdout=log,
            stderr=asyncio.subprocess.STDOUT)
        log.close()
        node.starts += 1

    def alive(self, node: NodeProc) -> bool:
        return node.proc is not None and node.proc.returncode is None

    async def wait_ready(self, node: NodeProc, timeout: float = STEP_TIMEOUT) -> bool:
        async def ready() -> bool:
            if not self.alive(node):
                return True  # exited: waiting longer cannot help
            reply = await control_request(node.data_dir, "ping", timeout=2.0)
            return bool(reply and reply.get("ok"))
        return await poll(ready, timeout, 0.2) and self.alive(node)

    async def kill_node(self, node: NodeProc) -> None:
        """SIGKILL: no clean shutdown, like a crash (``ip netns exec`` execs, so this is the node)."""
        if node.proc is not None and node.proc.returncode is None:
            node.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(node.proc.wait(), 10)
            node.kills += 1

    async def stop_all(self) -> None:
        """SIGTERM everything (a clean stop), SIGKILL what is still running after 10 s."""
        procs = [n.proc for n in self.nodes.values() if n.proc is not None]
        if self.bootstrap is not None:
            procs.append(self.bootstrap)
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5)

    # ------------------------------------------------------------------ CLI

    async def cli(self, node: NodeProc, *args: str, timeout: float = STEP_TIMEOUT) -> CliResult:
        """Run ``p2pauction ARGS --json --data-dir DIR`` from the root namespace.

        The control socket is a file, so the client needs no network namespace.
        """
        argv = [*cli_prefix(), *args, "--json", "--data-dir", str(node.data_dir)]
        loop = asyncio.get_running_loop()
        async with self.cli_sem:
            t = loop.time()
            self.cli_calls += 1
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=str(self.workdir))
            try:
                out, err = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return CliResult(False, -9, None, f"timeout after {timeout:.0f}s", loop.time() - t)
        elapsed = loop.time() - t
        error = err.decode(errors="replace").strip()
        rc = proc.returncode if proc.returncode is not None else -1
        try:
            data = json.loads(out) if out.strip() else None
        except ValueError:
            return CliResult(False, rc, None, error or "output is not JSON", elapsed)
        return CliResult(rc == 0 and data is not None, rc, data, error, elapsed)

    def _reject(self, what: str, res: CliResult) -> None:
        first = (res.error.splitlines() or [f"exit {res.rc}"])[-1]
        self.rejected[f"{what}: {_error_kind(first)}"] += 1

    # ------------------------------------------------------------------ workload

    async def open_auction(self, node: NodeProc, item: str, price: str) -> str | None:
        res = await self.cli(node, "open", item, price)
        if not res.ok:
            self._reject("open", res)
            self._log(f"{node.name} open {item} {price} failed: {res.error[-200:]}")
            return None
        auction_id = str(res.data["auction_id"])
        self.auctions[auction_id] = {"id": auction_id, "item": item, "start": price,
                                     "seller": node.host.name, "t": self.timeline.now()}
        self.high[auction_id] = Decimal(price)
        self.last_ack = self.timeline.now()
        return auction_id

    async def place_bid(self, node: NodeProc, auction_id: str, amount: Decimal,
                        phase: str) -> str | None:
        res = await self.cli(node, "bid", auction_id, fmt_money(amount))
        if not res.ok:
            self._reject("bid", res)
            self.last_error[node.name] = res.error
            return None
        bid_id = str(res.data["bid_id"])
        self.acked_bids[bid_id] = {"id": bid_id, "auction": auction_id, "amount": fmt_money(amount),
                                   "host": node.host.name, "t": self.timeline.now(), "phase": phase}
        self.high[auction_id] = max(self.high[auction_id], amount)
        self.last_ack = self.timeline.now()
        return bid_id

    async def close_auction(self, node: NodeProc, auction_id: str) -> dict[str, Any] | None:
        res = await self.cli(node, "close", auction_id)
        if not res.ok:
            self._reject("close", res)
            self._log(f"{node.name} close {auction_id[:8]} failed: {res.error[-200:]}")
            return None
        data = res.data
        self.acked_closes[auction_id] = {"auction": auction_id, "host": node.host.name,
                                         "winner_bid": data.get("bid_id"), "price": data.get("price"),
                                         "winner_name": data.get("buyer_name"),
                                         "t": self.timeline.now()}
        self.last_ack = self.timeline.now()
        return dict(data)

    async def node_sees(self, node: NodeProc, auction_id: str, bid_id: str | None = None,
                        timeout: float = STEP_TIMEOUT) -> bool:
        """Wait until `node` holds the auction (and `bid_id` in it), through its control socket."""
        async def check() -> bool:
            reply = await control_request(node.data_dir, "show", {"auction": auction_id})
            if not reply or not reply.get("ok"):
                return False
            return bid_id is None or bid_id in _bid_ids(reply["result"])
        return await poll(check, timeout, 0.3)

    async def reference(self) -> dict[str, Any]:
        """The SPEC's reference scenario, each step after its actor has seen the previous one."""
        c1, c2, c3 = (self.nodes[h.name] for h in self.tb.hosts[:3])
        out: dict[str, Any] = {"ok": False}
        pic1 = await self.open_auction(c1, "Pic#1", "75")
        pic2 = await self.open_auction(c2, "Pic#2", "60")
        if pic1 is None or pic2 is None or not await self.node_sees(c2, pic1):
            return out
        b1 = await self.place_bid(c2, pic1, Decimal("75"), "reference")
        if b1 is None or not await self.node_sees(c3, pic1, b1):
            return out
        b2 = await self.place_bid(c3, pic1, Decimal("75.5"), "reference")
        if b2 is None or not await self.node_sees(c2, pic1, b2):
            return out
        b3 = await self.place_bid(c2, pic1, Decimal("80"), "reference")
        if b3 is None or not await self.node_sees(c1, pic1, b3):
            return out
        closed = await self.close_auction(c1, pic1)
        if closed is None:
            return out
        self._log(f"reference: {closed.get('summary')}")
        return {"ok": closed.get("bid_id") == b3 and closed.get("price") == "80", "pic1": pic1,
                "pic2": pic2, "winning_bid": b3, "close": closed.get("summary")}

    async def open_pool(self) -> None:
        starts = ["10", "20", "50", "100", "12.5"]
        plan = [(self.rng.choice(self.tb.hosts), f"Lot#{k + 1}", self.rng.choice(starts))
                for k in range(self.cfg.auctions)]
        ids = await asyncio.gather(*(self.open_auction(self.nodes[h.name], item, price)
                                     for h, item, price in plan))
        self.pool = [a for a in ids if a is not None]
        self._log(f"opened {len(self.pool)}/{self.cfg.auctions} auctions")

    async def wait_spread(self, timeout: float) -> float | None:
        """Wait until every live node holds at least as many events as were acknowledged."""
        acked = len(self.auctions) + len(self.acked_bids) + len(self.acked_closes)
        t = self.timeline.now()

        async def spread() -> bool:
            replies = await asyncio.gather(*(control_request(n.data_dir, "status")
                                             for n in self.nodes.values() if self.alive(n)))
            return all(r and r.get("ok") and r["result"].get("events", 0) >= acked for r in replies)
        return round(self.timeline.now() - t, 3) if await poll(spread, timeout, 0.5) else None

    async def wait_overlay(self, timeout: float) -> float | None:
        """Seconds until every node has min(3, N-1) peers (the spec's minimum degree), or None."""
        want = min(3, len(self.nodes) - 1)
        t = self.timeline.now()

        async def formed() -> bool:
            replies = await asyncio.gather(*(control_request(n.data_dir, "status")
                                             for n in self.nodes.values()))
            return all(r and r.get("ok") and r["result"].get("peers", 0) >= want for r in replies)
        return round(self.timeline.now() - t, 3) if await poll(formed, timeout, 0.5) else None

    def plan_bids(self, count: int) -> list[tuple[str, list[Host], Decimal]]:
        """(auction, bidder preference order, raise) for each bid, drawn from the seed."""
        steps = [Decimal(s) for s in ("0.5", "1", "2", "2.5", "5", "10")]
        plan = []
        for _ in range(count):
            auction = self.rng.choice(self.pool)
            prefs = list(self.tb.hosts)
            self.rng.shuffle(prefs)
            plan.append((auction, prefs, self.rng.choice(steps)))
        return plan

    async def bid_phase(self, count: int, phase: str) -> None:
        if not self.pool:
            return
        queue = list(reversed(self.plan_bids(count)))
        before = len(self.acked_bids)

        async def worker() -> None:
            while queue:
                auction, prefs, step = queue.pop()
                seller = self.auctions[auction]["seller"]
                bidder = next((self.nodes[h.name] for h in prefs
                               if h.name != seller and self.alive(self.nodes[h.name])), None)
                if bidder is None:
                    continue
                await self.bid_with_retries(bidder, auction, step, phase)
        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, self.cfg.workers)):
                tg.create_task(worker())
        self._log(f"{phase}: {len(self.acked_bids) - before}/{count} bids acknowledged")

    async def bid_with_retries(self, bidder: NodeProc, auction: str, step: Decimal, phase: str) -> None:
        """Bid above the best acked amount; when refused as too low, raise to the stated minimum.

        A refusal is the node applying the rules to what it has seen (another worker's bid got
        there first); it is counted, and the bid retried up to twice, like a user would.
        """
        amount = self.high[auction] + step
        for _ in range(3):
            res = await self.place_bid(bidder, auction, amount, phase)
            if res is not None or not self.alive(bidder):
                return
            floor = _stated_minimum(self.last_error.get(bidder.name, ""))
            amount = max(self.high[auction], floor or Decimal(0)) + step

    async def chaos(self, victims: Sequence[NodeProc]) -> None:
        """Kill the victims with SIGKILL, keep them down a while, restart them from their data."""
        downs = []
        for node in victims:
            await self.kill_node(node)
            downs.append(self.timeline.begin("down", node.name))
            self._log(f"killed {node.name} (kill -9)")
        await asyncio.sleep(self.cfg.down_for)  # the outage itself, not a synchronisation
        for node, interval in zip(victims, downs):
            await self.start_node(node)
            ready = await self.wait_ready(node)
            self.timeline.end(interval)
            self._log(f"restarted {node.name} ({'ready' if ready else 'NOT ready'})")

    async def close_half(self) -> None:
        targets = [a for i, a in enumerate(self.pool) if i % 2 == 0]
        await asyncio.gather(*(self.close_auction(self.nodes[self.auctions[a]["seller"]], a)
                               for a in targets))
        self._log(f"closed {len([a for a in targets if a in self.acked_closes])}/{len(targets)} auctions")

    # ------------------------------------------------------------------ sampling and checks

    async def sampler(self, stop: asyncio.Event) -> None:
        """Every `sample_every` s: digest and event count of every live node (control socket)."""
        while not stop.is_set():
            t = self.timeline.now()
            live = [n for n in self.nodes.values() if self.alive(n)]
            replies = await asyncio.gather(*(control_request(n.data_dir, "status", timeout=2.0)
                                             for n in live))
            sample: dict[str, Any] = {"t": t, "nodes": {}}
            for node, reply in zip(live, replies):
                if reply and reply.get("ok"):
                    r = reply["result"]
                    sample["nodes"][node.host.name] = {"digest": r.get("digest"),
                                                       "events": r.get("events"),
                                                       "peers": r.get("peers")}
            self.samples.append(sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.sample_every)

    async def statuses(self) -> dict[str, CliResult]:
        results = await asyncio.gather(*(self.cli(n, "status") for n in self.nodes.values()))
        return dict(zip(self.nodes, results))

    async def auction_views(self) -> dict[str, dict[str, Any]]:
        """node -> auction id -> summary, from ``auctions --status all`` and ``show`` per auction."""
        async def one(node: NodeProc) -> tuple[str, dict[str, Any]]:
            views: dict[str, Any] = {}
            listing = await self.cli(node, "auctions", "--status", "all")
            listed = sorted(str(v.get("id")) for v in listing.data) if listing.ok else []
            for auction_id in sorted(set(listed) | set(self.auctions)):
                res = await self.cli(node, "show", auction_id)
                views[auction_id] = _summary(res.data) if res.ok else {"error": res.error[-200:]}
            return node.host.name, views
        return dict(await asyncio.gather(*(one(n) for n in self.nodes.values())))

    def check_views(self, views: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Disagreements between nodes, acked bids missing, closes whose winner changed."""
        disagree = []
        for auction_id in sorted({a for v in views.values() for a in v}):
            summaries = {json.dumps(v.get(auction_id), sort_keys=True) for v in views.values()}
            if len(summaries) > 1:
                disagree.append(auction_id)
        missing: dict[str, list[str]] = {}
        for host, v in sorted(views.items()):
            lost = [b for b, info in self.acked_bids.items()
                    if b not in (v.get(info["auction"]) or {}).get("bids", [])]
            if lost:
                missing[host] = sorted(lost)
        changed = [a for a, c in sorted(self.acked_closes.items())
                   if any((v.get(a) or {}).get("winner") != c["winner_bid"] for v in views.values())]
        return {"disagreeing_auctions": disagree, "missing_acked_bids": missing,
                "close_winner_changed": changed,
                "ok": not disagree and not missing and not changed}

    async def listed_views(self) -> dict[str, dict[str, Any]] | None:
        """node -> auction id -> summary, from one ``auctions --status all`` per node."""
        results = await asyncio.gather(*(self.cli(n, "auctions", "--status", "all")
                                         for n in self.nodes.values()))
        if not all(r.ok and isinstance(r.data, list) for r in results):
            return None
        return {h: {str(v.get("id")): _summary(v) for v in r.data}
                for h, r in zip(self.nodes, results)}

    async def converge(self) -> dict[str, Any]:
        """Poll every node's CLI status digest and auction list until all agree (or time out).

        A round is ``status --json`` on every node and, once the digests agree, ``auctions
        --status all --json`` (each auction's full view, bids included) on every node.
        """
        loop = asyncio.get_running_loop()
        start = self.timeline.now()
        deadline = loop.time() + self.cfg.converge_timeout
        rounds = 0
        check: dict[str, Any] = {}
        digests: dict[str, str | None] = {}
        while True:
            rounds += 1
            statuses = await self.statuses()
            digests = {h: (r.data or {}).get("digest") if r.ok else None for h, r in statuses.items()}
            if None not in digests.values() and len(set(digests.values())) == 1:
                t_agree = self.timeline.now()
                views = await self.listed_views()
                check = self.check_views(views) if views is not None else {}
                if check.get("ok"):
                    return {"converged": True, "at": t_agree, "after_workload_s": round(t_agree - start, 3),
                            "rounds": rounds, "digest": next(iter(digests.values())), **check}
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.5)
        views = await self.listed_views()
        check = self.check_views(views) if views is not None else {"ok": False}
        return {"converged": False, "at": None, "after_workload_s": None, "rounds": rounds,
                "digests": digests, **check}

    # ------------------------------------------------------------------ the run

    async def run(self) -> dict[str, Any]:
        self._log(f"{len(self.tb.hosts)} hosts in namespaces {self.tb.prefix}-*, shaper {self.tb.mode}")
        await self.start_bootstrap()
        await asyncio.gather(*(self.start_node(n) for n in self.nodes.values()))
        ready = await asyncio.gather(*(self.wait_ready(n, 60.0) for n in self.nodes.values()))
        if not all(ready):
            bad = [n.name for n, ok in zip(self.nodes.values(), ready) if not ok]
            first = self.nodes[self.tb.hosts[0].name].log_path
            tail = first.read_text(errors="replace")[-600:] if first.exists() else ""
            raise NodeUnavailable(f"nodes did not start: {', '.join(bad)} (logs in {self.workdir});"
                               f" {first.name} ends with: {tail}")
        self._log("all nodes answer on their control sockets")
        formed = await self.wait_overlay(60.0)
        self._log(f"overlay formed in {formed:.1f} s" if formed is not None else "overlay NOT formed in 60 s")
        stop = asyncio.Event()
        result: dict[str, Any] = {"overlay_formed_s": formed}
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.sampler(stop))
            try:
                result.update(await self.workload())
                result["convergence"] = await self.converge()
            finally:
                stop.set()
        self.timeline.close_all()
        # The final word: ``show --json`` of every auction on every node (outside the timing).
        shows = self.check_views(await self.auction_views())
        result["show_check"] = shows
        self._log(f"show check on every node: {'ok' if shows['ok'] else 'FAILED'}")
        result["final_status"] = {h: r.data if r.ok else {"error": r.error[-300:]}
                                  for h, r in (await self.statuses()).items()}
        result["wire"] = self.tb.wire_stats()
        return self.report(result)

    async def workload(self) -> dict[str, Any]:
        cfg = self.cfg
        # Shaping stays on to the end: convergence happens under loss and delay too.
        self.timeline.begin("shaping", f"loss {cfg.loss:.0%}, {cfg.delay_ms:g}±{cfg.jitter_ms:g} ms")
        self.tb.set_profile(LinkProfile(cfg.delay_ms, cfg.jitter_ms, cfg.loss))
        result: dict[str, Any] = {"reference": await self.reference()}
        await self.open_pool()
        result["open_spread_s"] = await self.wait_spread(STEP_TIMEOUT)
        per_phase = cfg.bids // 3
        await self.bid_phase(per_phase, "connected")
        hosts = list(self.tb.hosts)
        self.rng.shuffle(hosts)
        half = len(hosts) // 2
        group_a, group_b = sorted(hosts[:half], key=_idx), sorted(hosts[half:], key=_idx)
        victims = self.pick_victims(group_a, group_b)
        self.groups = (group_a, group_b) if cfg.partition and half > 0 else None
        part = None
        if cfg.partition and half > 0:
            self.tb.partition(group_a, group_b)
            part = self.timeline.begin("partition", f"{_names(group_a)} | {_names(group_b)}")
            self._log(f"partition {_names(group_a)} | {_names(group_b)}")
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.chaos(victims))
            tg.create_task(self.bid_phase(per_phase, "partitioned"))
            if part is not None:  # the partition lasts at least this long, however fast the bids go
                tg.create_task(asyncio.sleep(cfg.partition_for))
        if part is not None:
            self.tb.heal()
            self.timeline.end(part)
        heal_t = self.timeline.mark("heal")
        self._log("healed")
        await self.bid_phase(cfg.bids - 2 * per_phase, "healed")
        await self.close_half()
        end_t = self.timeline.mark("workload end")
        result.update({"heal_t": heal_t, "workload_end_t": end_t, "last_ack_t": self.last_ack,
                       "groups": [_names(group_a), _names(group_b)],
                       "killed": [v.host.name for v in victims]})
        return result

    def pick_victims(self, group_a: list[Host], group_b: list[Host]) -> list[NodeProc]:
        """One victim per group in turn, never the bootstrap's host."""
        candidates = [[h for h in g if h != self.boot_host] for g in (group_a, group_b)]
        victims: list[NodeProc] = []
        for i in range(self.cfg.kills):
            group = candidates[i % 2] or candidates[(i + 1) % 2]
            if group:
                victims.append(self.nodes[group.pop(self.rng.randrange(len(group))).name])
        return victims

    # ------------------------------------------------------------------ report

    def catch_up(self) -> dict[str, float | None]:
        """Per restart: seconds until the node held as many events as the most advanced node
        of its partition group held when it came back (None: not within the sampled run)."""
        out: dict[str, float | None] = {}
        by_name = {n.name: h for h, n in self.nodes.items()}
        for iv in self.timeline.intervals:
            if iv["kind"] != "down":
                continue
            host, back = by_name[iv["label"]], iv["end"]
            mates = self._group_of(host)
            before = [s for s in self.samples if s["t"] <= back]
            last = before[-1]["nodes"] if before else {}
            target = max([v["events"] for h, v in last.items() if h in mates] or [0])
            after = [s["t"] for s in self.samples
                     if s["t"] >= back and (s["nodes"].get(host) or {}).get("events", -1) >= target]
            out[iv["label"]] = round(after[0] - back, 3) if after else None
        return out

    def _group_of(self, host: str) -> set[str]:
        if self.groups is None:
            return set(self.nodes)
        for group in self.groups:
            names = {h.name for h in group}
            if host in names:
                return names - {host}
        return set(self.nodes)

    def report(self, result: dict[str, Any]) -> dict[str, Any]:
        conv = result["convergence"]
        if conv.get("at") is not None:
            conv["after_heal_s"] = round(conv["at"] - result["heal_t"], 3)
            conv["after_last_ack_s"] = round(conv["at"] - result["last_ack_t"], 3)
        ref = result["reference"]
        return {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.cfg).items()},
            "mode": self.tb.mode, "namespaces": self.tb.prefix,
            "hosts": {h.name: {"addr": h.addr, "node": self.nodes[h.name].name,
                               "starts": self.nodes[h.name].starts,
                               "kills": self.nodes[h.name].kills} for h in self.tb.hosts},
            **result,
            "reference_ok": bool(ref.get("ok"))
                            and ref.get("pic1") not in conv.get("disagreeing_auctions", [""]),
            "acked": {"opens": len(self.auctions), "bids": len(self.acked_bids),
                      "closes": len(self.acked_closes),
                      "bids_by_phase": dict(Counter(b["phase"] for b in self.acked_bids.values()))},
            "catch_up_after_restart_s": self.catch_up(),
            "rejected": dict(sorted(self.rejected.items())),
            "cli_calls": self.cli_calls,
            "timeline": {"marks": self.timeline.marks, "intervals": self.timeline.intervals},
            "samples": self.samples,
            "acked_bids": sorted(self.acked_bids.values(), key=lambda b: (b["t"], b["id"])),
            "acked_closes": self.acked_closes,
            "passed": bool(conv.get("converged")) and bool(ref.get("ok"))
                      and bool(result["show_check"]["ok"]),
        }


def _idx(h: Host) -> int:
    return h.index


def _names(hosts: Sequence[Host]) -> str:
    return ",".join(h.name for h in hosts)


def _error_kind(line: str) -> str:
    """A short, countable form of a CLI error line ("bid too low", "unknown auction", ...)."""
    text = line.removeprefix("error:").strip()
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, dict):
            err = data.get("error", data)
            if isinstance(err, dict):
                return str(err.get("reason") or err.get("type") or "error")
    text = re.sub(r"/\S+", "DIR", text)  # paths differ per host; the kind of error does not
    return text.split(":")[0].split("(")[0].strip()[:60] if text else "error"


def _stated_minimum(error: str) -> Decimal | None:
    """The amount in "bid too low: the minimum is 80.5 USDt", if the error says one."""
    m = re.search(r"minimum is ([0-9]+(?:\.[0-9]+)?)", error)
    return Decimal(m.group(1)) if m else None


def _bid_ids(view: Any) -> list[str]:
    bids = view.get("bids", []) if isinstance(view, dict) else []
    return [str(b.get("id")) for b in bids if isinstance(b, dict)]


def _summary(view: Any) -> dict[str, Any]:
    """What every node must agree on for one auction (from ``show --json``)."""
    if not isinstance(view, dict):
        return {"error": "not an object"}
    winner = view.get("winner")
    leading = view.get("leading")
    bids = view.get("bids", [])
    return {
        "status": view.get("status"),
        "winner": winner.get("id") if isinstance(winner, dict) else winner,
        "price": view.get("price"),
        "leading": leading.get("id") if isinstance(leading, dict) else leading,
        "bids": sorted(_bid_ids(view)),
        "late": sorted(str(b.get("id")) for b in bids if isinstance(b, dict) and b.get("late")),
        "closes": sorted(str(c) for c in view.get("closes", []) or []),
    }


# ---------------------------------------------------------------------- output


def summary_text(rep: dict[str, Any]) -> str:
    conv = rep["convergence"]
    cfg = rep["config"]
    lines = [
        f"testbed seed={cfg['seed']} hosts={cfg['hosts']} shaper={rep['mode']} "
        f"loss={cfg['loss']:.0%} delay={cfg['delay_ms']:g}±{cfg['jitter_ms']:g}ms "
        f"killed={','.join(rep['killed']) or '-'} partition={' | '.join(rep['groups'])}",
        f"acknowledged: {rep['acked']['opens']} opens, {rep['acked']['bids']} bids, "
        f"{rep['acked']['closes']} closes; refused by the CLI: {sum(rep['rejected'].values())} "
        f"{rep['rejected']}",
        f"acknowledged bids by phase: {rep['acked']['bids_by_phase']}",
        f"reference scenario: {rep['reference'].get('close')} -> {'ok' if rep['reference_ok'] else 'FAILED'}",
        f"overlay formed {rep.get('overlay_formed_s')} s after start; restarted nodes caught up with "
        f"their group in (s): {rep['catch_up_after_restart_s']}",
    ]
    if conv["converged"]:
        lines.append(
            f"CONVERGED: all {cfg['hosts']} nodes agree on digest {conv['digest'][:16]}… and on every "
            f"auction; {conv['after_heal_s']:.1f} s after heal, {conv['after_last_ack_s']:.1f} s after "
            f"the last acknowledged operation ({conv['after_workload_s']:.1f} s of polling)")
    else:
        lines.append(f"NOT CONVERGED within {cfg['converge_timeout']:g} s: "
                     f"{len(set(v for v in conv.get('digests', {}).values()))} distinct digests")
    checks = (("after convergence", conv), ("`show` of every auction on every node", rep["show_check"]))
    for label, chk in checks:
        missing = sum(len(v) for v in chk.get("missing_acked_bids", {}).values())
        lines.append(f"{label}: acked bids missing {missing}, "
                     f"auctions disagreeing {len(chk.get('disagreeing_auctions', []))}, "
                     f"closes whose winner changed {len(chk.get('close_winner_changed', []))}")
    lines.append(_counters_table(rep["final_status"]))
    if rep.get("wire"):
        w = rep["wire"]
        lines.append(f"wire: {w.get('frames')} frames, {w.get('lost')} lost, {w.get('bytes')} bytes")
    lines.append(f"PASSED" if rep["passed"] else "FAILED")
    return "\n".join(lines)


COUNTER_COLUMNS = [  # (header, dotted path in `status --json`); counters restart with the process
    ("events", "events"), ("peers", "peers"), ("accepted", "ledger.accepted"),
    ("dups", "ledger.duplicates"), ("rejected", "ledger.rejected"), ("pending", "ledger.pending"),
    ("ae_rounds", "gossip.events.ae_rounds"), ("ae_events", "gossip.events.ae_accepted"),
    ("bytes_in", "transport.bytes_in"), ("bytes_out", "transport.bytes_out"), ("uptime_s", "uptime_s"),
]


def _counters_table(statuses: dict[str, Any]) -> str:
    rows = [f"{'host':5} {'name':5} " + " ".join(f"{h:>10}" for h, _ in COUNTER_COLUMNS)]
    for host, st in statuses.items():
        flat = _flatten(st) if isinstance(st, dict) else {}
        vals = [str(flat.get(path, "-")) for _, path in COUNTER_COLUMNS]
        rows.append(f"{host:5} {str(flat.get('name', '?')):5} " + " ".join(f"{v:>10}" for v in vals))
    return "\n".join(rows)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def plot(rep: dict[str, Any], path: Path) -> bool:
    """Events held per node and digest agreement over time, fault periods shaded."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    samples = rep["samples"]
    hosts = sorted(rep["hosts"])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1.4]})
    for host in hosts:
        pts = [(s["t"], s["nodes"][host]["events"]) for s in samples if host in s["nodes"]]
        if pts:
            ax1.plot([p[0] for p in pts], [p[1] for p in pts], lw=1,
                     label=f"{host} ({rep['hosts'][host]['node']})")
    ts, agree = [], []
    for s in samples:
        digests = [n["digest"] for n in s["nodes"].values()]
        if digests:
            ts.append(s["t"])
            agree.append(Counter(digests).most_common(1)[0][1] / len(hosts))
    ax2.step(ts, agree, where="post", color="k", lw=1.2)
    for ax in (ax1, ax2):
        _shade(ax, rep["timeline"]["intervals"], labels=ax is ax1)
        for t, label in rep["timeline"]["marks"]:
            ax.axvline(t, color="tab:green", ls="--", lw=0.8)
        conv_t = rep["convergence"].get("at")
        if conv_t is not None:
            ax.axvline(conv_t, color="tab:blue", lw=1.5)
    ax1.set_ylabel("events held by node")
    ax1.legend(fontsize=7, ncol=4, loc="lower right")
    ax2.set_ylabel("nodes on the\nmajority digest")
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("seconds since start (green dashed: heal, workload end; blue: converged)")
    conv = rep["convergence"]
    title = (f"testbed seed {rep['config']['seed']}: {rep['config']['hosts']} hosts, "
             f"{rep['acked']['bids']} acked bids, " +
             (f"converged {conv['after_heal_s']:.1f} s after heal" if conv.get("converged")
              else "NOT converged"))
    ax1.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _shade(ax: Any, intervals: list[dict[str, Any]], labels: bool) -> None:
    colors = {"shaping": ("#fff4cc", 0.6), "partition": ("tab:red", 0.12), "down": ("tab:gray", 0.3)}
    top = ax.get_ylim()[1]
    for i, iv in enumerate(intervals):
        color, alpha = colors.get(iv["kind"], ("tab:purple", 0.1))
        ax.axvspan(iv["start"], iv["end"], color=color, alpha=alpha, lw=0)
        if labels and iv["kind"] != "shaping":
            text = "partition" if iv["kind"] == "partition" else f"{iv['label']} down"
            ax.text(iv["start"], top * (0.97 - 0.07 * i), f" {text}", fontsize=7, va="top")


# ---------------------------------------------------------------------- entry points


async def run_scenario(cfg: ScenarioConfig) -> dict[str, Any]:
    """Build the test bed, run the scenario, tear everything down; return the report."""
    workdir = cfg.workdir or Path(f"/tmp/p2pa-{os.getpid()}")
    workdir.mkdir(parents=True, exist_ok=True)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    tb = Testbed(cfg.hosts, seed=cfg.seed, shaper=cfg.shaper)
    atexit.register(tb.teardown)  # a last resort if the interpreter exits some other way
    try:
        with tb:
            scenario = Scenario(cfg, tb, workdir)
            try:
                rep = await scenario.run()
            finally:
                await scenario.stop_all()
    except (asyncio.CancelledError, KeyboardInterrupt):
        if cfg.workdir is None and not cfg.keep_workdir:  # an interrupted run's data is of no use
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        atexit.unregister(tb.teardown)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)
    if cfg.report_dir is not None:
        write_report(rep, cfg.report_dir, workdir)
    if not cfg.keep_workdir and cfg.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return rep


def write_report(rep: dict[str, Any], report_dir: Path, workdir: Path) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(rep, indent=1, sort_keys=True, default=str))
    (report_dir / "summary.txt").write_text(summary_text(rep) + "\n")
    plot(rep, report_dir / "testbed.png")
    if not rep["passed"]:  # keep the evidence of a failure
        logs = report_dir / "logs"
        logs.mkdir(exist_ok=True)
        for log in sorted(workdir.glob("*.log")):
            shutil.copy(log, logs / log.name)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m testbed", description=__doc__.split("\n")[0])
    d = ScenarioConfig()
    p.add_argument("--hosts", type=int, default=d.hosts)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--auctions", type=int, default=d.auctions)
    p.add_argument("--bids", type=int, default=d.bids)
    p.add_argument("--loss", type=float, default=d.loss, help="fraction of frames lost (0.1 = 10%%)")
    p.add_argument("--delay", type=float, default=d.delay_ms, help="one-way delay, ms")
    p.add_argument("--jitter", type=float, default=d.jitter_ms, help="uniform jitter, ± ms")
    p.add_argument("--kills", type=int, default=d.kills)
    p.add_argument("--down-for", type=float, default=d.down_for)
    p.add_argument("--partition-for", type=float, default=d.partition_for,
                   help="minimum length of the partition, seconds")
    p.add_argument("--no-partition", action="store_true")
    p.add_argument("--converge-timeout", type=float, default=d.converge_timeout)
    p.add_argument("--workers", type=int, default=d.workers, help="concurrent CLI calls")
    p.add_argument("--shaper", choices=["auto", "netem", "wire"], default=d.shaper)
    p.add_argument("--log-level", default=d.log_level)
    p.add_argument("--report", type=Path, default=None, help="directory for report.json and the plot")
    p.add_argument("--workdir", type=Path, default=None, help="data dirs and logs (default /tmp/p2pa-PID)")
    p.add_argument("--keep-workdir", action="store_true")
    p.add_argument("--cleanup", action="store_true", help="remove namespaces left by dead runs and exit")
    p.add_argument("--force", action="store_true", help="with --cleanup: remove every p2pa-* namespace")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cleanup:
        removed = cleanup_leftovers(force=args.force)
        print(f"removed {len(removed)} namespaces" + (f": {' '.join(removed)}" if removed else ""))
        return 0
    reason = probe_netns()
    if reason is not None:
        print(f"testbed: cannot run here: {reason}", file=sys.stderr)
        return 2
    cfg = ScenarioConfig(
        hosts=args.hosts, seed=args.seed, auctions=args.auctions, bids=args.bids, loss=args.loss,
        delay_ms=args.delay, jitter_ms=args.jitter, kills=args.kills, down_for=args.down_for,
        partition_for=args.partition_for,
        partition=not args.no_partition, converge_timeout=args.converge_timeout,
        workers=args.workers, shaper=args.shaper, log_level=args.log_level,
        report_dir=args.report, workdir=args.workdir, keep_workdir=args.keep_workdir)
    try:
        rep = asyncio.run(run_scenario(cfg))
    except KeyboardInterrupt:
        print("testbed: interrupted; everything torn down", file=sys.stderr)
        return 130
    except asyncio.CancelledError:  # SIGTERM cancels the run (see run_scenario)
        print("testbed: terminated; everything torn down", file=sys.stderr)
        return 143
    except P2PAuctionError as exc:
        print(f"testbed: {exc}; everything torn down", file=sys.stderr)
        return 1
    print(summary_text(rep))
    return 0 if rep["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
