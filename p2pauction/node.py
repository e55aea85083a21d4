"""AuctionNode: one participant of the network, as an asyncio service an application embeds.

It owns a data directory::

    identity.key   the node's Ed25519 key (mode 0600)
    store.db       SQLite store of accepted events, known peers, finished auctions
    node.lock      flock held while the node runs (a second node on the directory fails at once)
    control.sock   the control socket the CLI talks to (mode 0600)
    node.json      pid, real listen address, public key, net, name (rewritten atomically at start)

and composes, inside one ``asyncio.TaskGroup`` run by a task the node owns:

- the Replica (ledger + store) and the Author (local rules, signing);
- the network component: the sans-IO GossipCore driven by the asyncio Transport (optional: a node
  with ``network=False`` works alone, which is also how it runs before any peer exists);
- the control socket server (optional: ``control=False`` for a purely embedded node);
- the auto-close scheduler: the seller's node closes an auction with ``ends_at`` by itself.

Every accepted event, own or remote, becomes a :class:`~p2pauction.api.Notification` for the
subscribers. An action returns once its event is durable in the store (it survives ``kill -9``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from p2pauction import errors
from p2pauction.control import HISTORY_PAGE, MAX_DURATION_S, MAX_HISTORY_PAGE, ControlConfig, ControlServer
from p2pauction.feeds import DEFAULT_QUEUE_SIZE, Feeds, Listener, Notification, Subscription, wait_event
from p2pauction.gossip.config import DEFAULT_NET  # re-exported: callers import it from here
from p2pauction.logs import get_logger
from p2pauction.results import CloseResult, JSONObject, JSONValue
from p2pauction.state.ledger import AuctionView, Status

if TYPE_CHECKING:
    from p2pauction.gossip.core import GossipCore
    from p2pauction.gossip.transport import Transport
    from p2pauction.state.authoring import Author
    from p2pauction.state.events import Event
    from p2pauction.state.identity import Identity
    from p2pauction.state.replica import Replica

log = get_logger(__name__)

DEFAULT_LISTEN = "127.0.0.1:0"
STATUS_CHOICES = ("open", "closed", "disputed", "all")
AUTO_CLOSE_RETRY_MS = 5000   # an auto-close the store failed to commit (full disk) is retried

WallClock = Callable[[], int]
# A value for a field of GossipConfig (``gossip={"ae_interval": 2.0}``)
GossipSetting = int | float | str | bool | Sequence[str] | None

# What the queries return: the JSON shapes of docs/cli-output.schema.json (``--json``).
Stats = JSONObject          # history --stats: $defs/stats
NodeStatus = JSONObject     # status: $defs/status


class HistoryRow(TypedDict):
    """A finished auction ($defs/history_row): the buyer is the winning bidder's key."""

    auction_id: str
    item: str
    currency: str
    status: str
    seller: str
    seller_name: str | None
    buyer: str | None
    buyer_name: str | None
    bid_id: str | None
    price: str | None
    opened_ts: int
    closed_ts: int | None
    bid_count: int
    late_bid_count: int


class PeerInfo(TypedDict):
    """A connected peer ($defs/peer); ``since`` is epoch ms like every time in the output."""

    key: str
    name: str | None
    role: str
    listen: str | None
    remote: str | None
    outbound: bool
    eager: bool
    since: int | None


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def to_ms(value: datetime | int | float | str | None) -> int | None:
    """A time bound for history queries: datetime, ISO text (naive = UTC), or epoch milliseconds
    (at most 2^63-1 either way, the range of event times)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise errors.UsageError(f"a time bound must be a date or milliseconds, not {value!r}")
    if isinstance(value, int | float):
        if not abs(value) <= 2**63 - 1:     # also refuses NaN and infinities
            raise errors.UsageError(f"time bound {value} ms is out of range (at most 2^63-1 ms)")
        return int(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise errors.UsageError(f"{value!r} is not an ISO date or time (e.g. 2026-11-25T14:00)") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def _money(value: Decimal | str | int, what: str) -> Decimal:
    from p2pauction.state.money import parse_money_lenient

    if isinstance(value, bool):
        raise errors.MoneyError(f"{what} must be an amount like 75 or 75.5, not {value!r}")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise errors.MoneyError(f"{what} must be an amount like 75 or 75.5, not {value}")
        value = format(value.normalize(), "f")  # Decimal("75.50") -> "75.5", Decimal("8E+1") -> "80"
    try:
        return parse_money_lenient(value)
    except errors.MoneyError as exc:
        raise errors.MoneyError(f"{what}: {exc}") from exc


class _DataDir:
    """The lock, identity and metadata files of a data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def open(self) -> dict[str, Any]:
        """Create the directory (0700), take the lock; return the previous node.json (or {})."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.StoreError(f"cannot create data directory {self.path}: {exc.strerror or exc}") from exc
        if not self.path.is_dir():
            raise errors.StoreError(f"data directory {self.path} is not a directory")
        self._lock()
        try:
            data = json.loads((self.path / "node.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _lock(self) -> None:
        lock_path = self.path / "node.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise errors.StoreError(
                f"data directory {self.path} is in use by another node (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def write_info(self, info: Mapping[str, Any]) -> None:
        self.write_info_as("node.json", info)

    def write_info_as(self, filename: str, info: Mapping[str, Any]) -> None:
        """A JSON file, atomically (write a temp file, then rename): readers never see half of it."""
        target = self.path / filename
        tmp = self.path / f".{filename}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(dict(info), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)

    def release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


class AuctionNode:
    """A p2pauction node. Use as ``async with AuctionNode(data_dir, ...) as node:``.

    ``listen`` may use port 0 (the real address is :attr:`address` and in ``node.json``).
    ``bootstraps``: discovery nodes (or any node) to join through; may be empty when the store
    already knows peers or for the first node of a network. ``net`` and ``name`` default to those
    of the previous run in this data directory. ``gossip`` overrides fields of
    :class:`~p2pauction.gossip.config.GossipConfig`. ``auto_close_grace`` (seconds) is how long
    after ``ends_at`` the seller's node waits before closing, so bids made just before the end can
    arrive; after a restart with the network on, it also waits ``catch_up_delay`` seconds (default:
    one anti-entropy interval plus a margin) for peers to bring it up to date before closing an
    overdue auction.
    """

    def __init__(self, data_dir: Path | str, *, listen: str = DEFAULT_LISTEN,
                 bootstraps: Iterable[str] = (), net: str | None = None, name: str | None = None,
                 network: bool = True, control: bool = True, gossip: Mapping[str, GossipSetting] | None = None,
                 auto_close_grace: float = 0.5, catch_up_delay: float | None = None,
                 queue_size: int = DEFAULT_QUEUE_SIZE, clock: WallClock | None = None,
                 control_config: ControlConfig | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.listen = listen
        self.bootstraps = list(bootstraps)
        self._net_arg = net
        self._name_arg = name
        self.network_enabled = network
        self.control_enabled = control
        self.gossip_overrides: dict[str, GossipSetting] = dict(gossip or {})
        self.auto_close_grace = auto_close_grace
        self._catch_up_arg = catch_up_delay
        self.catch_up_delay = catch_up_delay or 0.0
        self.queue_size = queue_size
        self.control_config = control_config or ControlConfig()
        self._clock = clock or wall_clock_ms
        self._dir = _DataDir(self.data_dir)
        self.feeds = Feeds()
        self.net: str = net or DEFAULT_NET
        self.name: str | None = name
        self.address: str | None = None
        self._replica: Replica | None = None
        self._author: Author | None = None
        self._identity: Identity | None = None
        self._core: GossipCore | None = None
        self._transport: Transport | None = None
        self._control: ControlServer | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopped = False
        self._deadlines: dict[str, float] = {}       # own auction id -> close at (wall ms)
        self._deadline_wake = asyncio.Event()
        self._started_ms = 0
        self._started_mono = 0.0
        self.counters: dict[str, int] = dict.fromkeys(
            ("opened", "bids", "closed", "auto_closed", "auto_close_failed", "notifications",
             "notify_failed"), 0)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AuctionNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def public_key(self) -> str:
        if self._identity is None:
            raise errors.UsageError("the node has no identity until it is started")
        return str(self._identity.public_hex)

    @property
    def _rep(self) -> Replica:
        if self._replica is None:
            raise errors.UsageError("the node is not running (use `async with AuctionNode(...)`)")
        return self._replica

    @property
    def _auth(self) -> Author:
        if self._author is None:
            raise errors.UsageError("the node is not running (use `async with AuctionNode(...)`)")
        return self._author

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    async def start(self, timeout: float = 30.0) -> None:
        """Open the data directory, rebuild the state, start the services; returns when serving."""
        if self._runner is not None:
            raise errors.UsageError("this AuctionNode was already started")
        previous = self._dir.open()
        try:
            self._open_state(previous)
            self._runner = asyncio.create_task(self._run(), name=f"node-{self.name or 'anon'}")
            await self._wait_ready(timeout)
        except BaseException:
            await self._abort_start()
            raise
        self._write_info()
        log.info("node_started", name=self.name, addr=self.address, net=self.net,
                 key=self.public_key[:16], events=len(self._rep.ledger), data_dir=str(self.data_dir))

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop every service, close the store and release the data directory. Idempotent."""
        runner = self._runner
        if runner is None or self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self._deadline_wake.set()
        try:
            if runner.done():
                failure = None if runner.cancelled() else runner.exception()  # (marks it retrieved)
                if failure is not None:
                    log.error("node_had_failed", error=repr(failure))
            else:
                await asyncio.wait_for(asyncio.shield(runner), timeout)
        except TimeoutError:
            log.warning("node_stop_timeout", timeout=timeout)
            runner.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(runner, 2.0)
        except Exception:  # the runner had failed: stopping must still release everything
            log.exception("node_failed")
        finally:
            self._close_state()
        log.info("node_stopped", name=self.name)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (a signal, say); raise if the node fails before that."""
        runner = self._runner
        if runner is None:
            raise errors.UsageError("start the node first")
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if runner.done() and not self._stop.is_set():
            raise errors.P2PAuctionError(f"the node stopped unexpectedly: {_start_error(runner, self.listen)}")

    async def _abort_start(self) -> None:
        self._stop.set()
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._runner, 5.0)
        self._close_state()

    async def _wait_ready(self, timeout: float) -> None:
        assert self._runner is not None
        ready = asyncio.create_task(self._ready.wait())
        try:
            done, _ = await asyncio.wait({ready, self._runner}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._runner in done:
            raise _start_error(self._runner, self.listen)
        if not self._ready.is_set():
            raise errors.UsageError(f"the node did not start within {timeout:g} s")

    def _open_state(self, previous: dict[str, Any]) -> None:
        from p2pauction.state.authoring import Author
        from p2pauction.state.identity import Identity
        from p2pauction.state.replica import Replica
        from p2pauction.state.store import SqliteStore

        self.net = self._net_arg or str(previous.get("net") or DEFAULT_NET)
        self.name = self._name_arg or previous.get("name") or None
        store_path = self.data_dir / "store.db"
        if previous.get("net") and previous["net"] != self.net and store_path.exists():
            raise errors.StoreError(
                f"data directory {self.data_dir} holds network {previous['net']!r}, not {self.net!r} "
                f"(use --net {previous['net']} or another data directory)")
        self._identity = Identity.load_or_create(self.data_dir / "identity.key")
        store = SqliteStore(store_path)
        try:
            self._replica = Replica(self.net, store)
        except BaseException:
            store.close()
            raise
        self._author = Author(self._identity, self.net, self.name)
        self._started_ms = self._clock()

    def _close_state(self) -> None:
        self.feeds.close_all()
        if self._replica is not None:
            with contextlib.suppress(Exception):
                self._replica.store.close()
        self._dir.release()

    def _write_info(self) -> None:
        self._dir.write_info({
            "pid": os.getpid(), "listen": self.address, "public_key": self.public_key,
            "net": self.net, "name": self.name, "control": str(self.data_dir / "control.sock")
            if self.control_enabled else None, "started_at": self._started_ms,
        })

    async def _run(self) -> None:
        """The node's TaskGroup: network, control socket and auto-close run until stop()."""
        async with asyncio.TaskGroup() as tg:
            if self.network_enabled:
                await self._start_network(tg)
            if self.control_enabled:
                self._control = ControlServer(self.data_dir, self._control_ops(), self._open_watch,
                                              self.control_config)
                tg.create_task(self._control.run(), name="control")
                await _wait_event(self._control.started, 10.0, "control socket")
            self._schedule_own_deadlines()
            closer = tg.create_task(self._auto_close_loop(), name="auto-close")
            self._ready.set()
            await self._stop.wait()  # the node's lifetime, not an I/O wait
            closer.cancel()
            if self._control is not None:
                self._control.stop()
            if self._transport is not None:
                self._transport.stop()

    async def _start_network(self, tg: asyncio.TaskGroup) -> None:
        from p2pauction.gossip.config import GossipConfig
        from p2pauction.gossip.core import GossipCore
        from p2pauction.gossip.transport import Transport

        transport = Transport(None, self.listen, on_accepted=self._on_accepted)
        self.address = await transport.bind()
        # the overrides are typed loosely (a value of some GossipConfig field): the dataclass
        # takes them by name, and parse_overrides already typed the CLI's --set values
        overrides: dict[str, Any] = dict(self.gossip_overrides)
        config = GossipConfig(net=self.net, listen_addr=self.address, bootstraps=list(self.bootstraps),
                              **overrides)
        # The node is an adapter: OS randomness is fine here (the core only sees the Random).
        rng = random.Random(int.from_bytes(os.urandom(16), "big"))
        if self._catch_up_arg is None:
            # One anti-entropy round (the first comes one interval after start) and a margin.
            self.catch_up_delay = config.ae_interval * (1 + config.ae_jitter) + 1.0
        identity, replica = self._identity, self._replica
        if identity is None or replica is None:
            raise errors.UsageError("the network starts after the node's state is open")
        self._core = GossipCore(config, identity, replica, rng, transport.now(), entropy=os.urandom)
        transport.core = self._core
        self._transport = transport
        tg.create_task(transport.run(), name="transport")
        await _wait_event(transport.started, 10.0, "network")

    # ------------------------------------------------------------------ events in and out

    def _require(self) -> AuctionNode:
        if self._replica is None or not self._ready.is_set() or self._stop.is_set():
            raise errors.UsageError("the node is not running (use `async with AuctionNode(...)`)")
        if self._runner is not None and self._runner.done():
            raise errors.P2PAuctionError(f"the node has failed: {_start_error(self._runner, self.listen)}")
        return self

    def _publish(self, event: Event) -> None:
        """Apply and spread a locally authored event; durable when this returns."""
        from p2pauction.state.ledger import OutcomeKind

        if self._core is not None and self._transport is not None:
            outcome = self._core.publish(event, self._transport.now())
            self._transport.pump()
        else:
            outcome = self._rep.receive(event)
            for accepted in outcome.accepted:
                self._on_accepted(accepted, accepted.author == self.public_key)
        if outcome.kind not in (OutcomeKind.ACCEPTED, OutcomeKind.DUPLICATE):
            reason = str(outcome.reason) if outcome.reason is not None else str(outcome.kind)
            raise errors.RuleViolation(f"the node refused its own event: {reason}", reason)

    def _on_accepted(self, event: Event, own: bool) -> None:
        """Every newly accepted event (own or a peer's): bookkeeping, then the feeds."""
        from p2pauction.state.events import CloseBody, OpenBody

        body = event.body
        if isinstance(body, OpenBody) and event.author == self.public_key and body.ends_at is not None:
            self._schedule(event.id, body.ends_at)
        if isinstance(body, CloseBody):
            self._deadlines.pop(event.auction_id, None)  # the Replica already recorded it as finished
        if not self.feeds.subscribers:
            return
        self.counters["notifications"] += 1
        try:
            # O(1) whatever the auction's size: the view's bid list is only built if a reader asks
            view = self._rep.ledger.auction(event.auction_id)
            self.feeds.publish(Notification(event=event, auction=view, own=own))
        except Exception:  # the feeds' failure must not reach the network or the caller's action
            self.counters["notify_failed"] += 1
            log.exception("notify_failed", event_id=event.id)

    # ------------------------------------------------------------------ actions

    async def open_auction(self, item: str, start_price: Decimal | str | int, *, currency: str = "USDt",
                           min_increment: Decimal | str | int = "0", duration: float | None = None,
                           ends_at: int | None = None) -> str:
        """Open an auction; returns its id. ``duration`` (seconds) sets ``ends_at`` from now."""
        self._require()
        price = _money(start_price, "start price")
        increment = _money(min_increment, "minimum increment")
        now = self._clock()
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 < duration <= MAX_DURATION_S:
                raise errors.UsageError(
                    f"duration must be a positive number of seconds up to {MAX_DURATION_S:g}, not {duration!r}")
            ends_at = now + max(1, int(duration * 1000))
        event = self._auth.open(self._rep.ledger, item=item, start_price=price, currency=currency,
                                  min_increment=increment, ends_at=ends_at, wall_ms=now)
        self._publish(event)
        self.counters["opened"] += 1
        return str(event.id)

    async def place_bid(self, auction: str, amount: Decimal | str | int) -> str:
        """Bid on someone else's auction (id or unique prefix); returns the bid's event id.

        RuleViolation when the rules refuse it (too low: the message states the minimum).
        """
        self._require()
        auction_id = self.resolve(auction)
        value = _money(amount, "bid amount")
        event = self._auth.bid(self._rep.ledger, auction_id, value, wall_ms=self._clock())
        self._publish(event)
        self.counters["bids"] += 1
        return str(event.id)

    async def close_auction(self, auction: str) -> CloseResult:
        """Close one's own auction now; the winner is the best bid this node has."""
        self._require()
        auction_id = self.resolve(auction)
        event = self._auth.close(self._rep.ledger, auction_id, wall_ms=self._clock())
        self._publish(event)
        self.counters["closed"] += 1
        return self._close_result(event)

    def _close_result(self, event: Event) -> CloseResult:
        from p2pauction.state.events import CloseBody

        view = self._rep.ledger.auction(event.auction_id)
        assert isinstance(event.body, CloseBody)
        winner = event.body.winner
        if winner is None:
            bid = None
        elif view.winner is not None and view.winner.id == winner:
            bid = view.winner      # the usual case, without building the bid list
        else:
            bid = next((b for b in view.bids if b.id == winner), None)
        return CloseResult(auction_id=view.id, item=view.item, currency=view.currency, close_id=event.id,
                           winner_key=bid.bidder if bid else None, winner_name=bid.name if bid else None,
                           price=bid.amount if bid else None, bid_id=bid.id if bid else None)

    # ------------------------------------------------------------------ queries

    def resolve(self, auction: str) -> str:
        """The full auction id for an id or a unique prefix (NotFound otherwise)."""
        self._require()
        text = (auction or "").strip().lower()
        if not text:
            raise errors.NotFound("no auction id given")
        return str(self._rep.ledger.resolve_prefix(text))

    def auction(self, auction: str) -> AuctionView:
        """The AuctionView of an auction (id or unique prefix)."""
        return self._rep.ledger.auction(self.resolve(auction))

    def auctions(self, status: str | None = "open") -> list[AuctionView]:
        """Auctions with ``status`` (open, closed, disputed; ``all`` or None for every one)."""
        self._require()
        if status is None or str(status) == "all":
            return list(self._rep.ledger.auctions(None))
        try:
            wanted = Status(str(status).lower())
        except ValueError:
            raise errors.UsageError(f"status must be one of {', '.join(STATUS_CHOICES)}, not {status!r}") from None
        return list(self._rep.ledger.auctions(wanted))

    def history(self, since: datetime | int | str | None = None,
                until: datetime | int | str | None = None, *, limit: int = HISTORY_PAGE,
                offset: int = 0) -> list[HistoryRow]:
        """One page of the finished (closed or disputed) auctions closed in [since, until), by close
        time then id: at most ``limit`` (1..10,000) of them, skipping the first ``offset``. The
        next page is ``offset + limit``; a page shorter than ``limit`` is the last."""
        self._require()
        if not 1 <= limit <= MAX_HISTORY_PAGE or offset < 0:
            raise errors.UsageError(f"history: limit must be 1..{MAX_HISTORY_PAGE} and offset at least 0, "
                                    f"not {limit} and {offset}")
        rows = self._rep.store.history(to_ms(since), to_ms(until), limit=limit, offset=offset)
        return [_history_row(row) for row in rows]

    def stats(self, since: datetime | int | str | None = None,
              until: datetime | int | str | None = None) -> Stats:
        """Analytics over finished auctions: count, volume, average/max price per currency, tops."""
        self._require()
        return _json_object(self._rep.store.stats(to_ms(since), to_ms(until)))

    def peers(self) -> list[PeerInfo]:
        """Connected peers and the bootstrap, with the name each key last claimed in an event."""
        self._require()
        if self._core is None or self._transport is None:
            return []
        # the core's `since` is a monotonic reading: shift it onto the wall clock (epoch ms)
        offset_ms = self._clock() - self._transport.now() * 1000
        ledger = self._rep.ledger
        return [PeerInfo(key=str(p["key"]), name=ledger.claimed_name(str(p["key"])), role=str(p.get("role", "node")),
                         listen=_opt_str(p.get("addr")), remote=_opt_str(p.get("remote")),
                         outbound=bool(p.get("outbound")), eager=bool(p.get("eager")),
                         since=None if p.get("since") is None else round(offset_ms + float(p["since"]) * 1000))
                for p in self._core.peers()]

    def status(self) -> NodeStatus:
        """Identity, address, digest and rejections, then every counter: ``ledger``, ``node``,
        and with the network on ``gossip`` and ``transport`` ($defs/status)."""
        self._require()
        ledger = self._rep.ledger
        out: NodeStatus = {
            "name": self.name, "public_key": self.public_key, "net": self.net, "listen": self.address,
            "network": self._core is not None, "pid": os.getpid(), "data_dir": str(self.data_dir),
            "started_at": self._started_ms, "digest": ledger.digest_hex, "events": len(ledger),
            "pending": ledger.counters.pending, "peers": 0,
            "rejected": sum(ledger.counters.rejected.values()),
            "rejected_by_reason": dict(sorted(ledger.counters.rejected.items())),
            "auctions": dict(ledger.status_counts()), "subscribers": self.feeds.subscribers,
            "scheduled_closes": len(self._deadlines),
            "uptime_s": round(time.monotonic() - self._started_mono, 3) if self._started_mono else 0.0,
            "ledger": _json_object(ledger.counters.to_json()), "node": dict(self.counters),
        }
        if self._core is not None and self._transport is not None:
            out["peers"] = len([p for p in self._core.peers() if p.get("role") == "node"])
            out["gossip"] = _json_object(self._core.stats(self._transport.now()))
            out["transport"] = _json_object(self._transport.stats())
        return out

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, auction: str | None = None, *, maxsize: int | None = None,
                  from_start: bool = False) -> Subscription:
        """An async iterator of notifications, for all auctions or one (id or prefix).

        ``from_start`` first replays the events already held (as notifications whose ``auction``
        is the view as it stands now); otherwise only new events are delivered.
        """
        self._require()
        auction_id = self.resolve(auction) if auction else None
        size = maxsize or self.queue_size
        backlog = self._backlog(auction_id) if from_start else []
        sub = self.feeds.subscribe(auction_id, max(size, len(backlog)))
        for note in backlog:
            sub.push(note)
        return sub

    def add_listener(self, callback: Callable[[Notification], None], auction: str | None = None) -> Listener:
        """Call ``callback(notification)`` (in the event loop) for every new event; ``.remove()`` it."""
        self._require()
        return self.feeds.add_listener(callback, self.resolve(auction) if auction else None)

    def _backlog(self, auction_id: str | None) -> list[Notification]:
        from p2pauction.state.events import decode_event

        ledger = self._rep.ledger
        out = []
        for raw in self._rep.store.iter_raw():
            event = decode_event(raw)
            if auction_id is None or event.auction_id == auction_id:
                out.append(Notification(event=event, auction=ledger.auction(event.auction_id),
                                        own=event.author == self.public_key))
        return out

    # ------------------------------------------------------------------ auto-close

    def _schedule_own_deadlines(self) -> None:
        from p2pauction.state.ledger import Status

        self._started_mono = time.monotonic()
        for view in self._rep.ledger.auctions(Status.OPEN):
            if view.seller == self.public_key and view.ends_at is not None:
                self._schedule(view.id, view.ends_at)

    def _schedule(self, auction_id: str, ends_at: int) -> None:
        at = ends_at + self.auto_close_grace * 1000
        if self._core is not None and self._catching_up():
            # Just restarted: give peers a moment to bring us bids we missed before we close.
            at = max(at, self._started_ms + self.catch_up_delay * 1000)
        self._deadlines[auction_id] = at
        self._deadline_wake.set()

    def _catching_up(self) -> bool:
        return self._clock() - self._started_ms < self.catch_up_delay * 1000

    async def _auto_close_loop(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            for auction_id in [a for a, at in sorted(self._deadlines.items()) if at <= now]:
                self._deadlines.pop(auction_id, None)
                await self._auto_close(auction_id)
            delay = (min(self._deadlines.values()) - self._clock()) / 1000 if self._deadlines else 30.0
            self._deadline_wake.clear()
            await wait_event(self._deadline_wake, min(max(delay, 0.01), 30.0))

    async def _auto_close(self, auction_id: str) -> None:
        from p2pauction.state.ledger import Status

        view = self._rep.ledger.auction(auction_id)
        if view.status != Status.OPEN or view.seller != self.public_key:
            return
        try:
            result = await self.close_auction(auction_id)
        except errors.P2PAuctionError as exc:
            self.counters["auto_close_failed"] += 1
            log.warning("auto_close_failed", auction=auction_id, error=str(exc))
            if isinstance(exc, errors.StoreWriteError):  # nothing was applied: try again later
                self._deadlines[auction_id] = self._clock() + AUTO_CLOSE_RETRY_MS
            return
        self.counters["auto_closed"] += 1
        log.info("auto_closed", auction=auction_id, result=result.describe())

    # ------------------------------------------------------------------ control socket

    def _open_watch(self, auction: str | None, from_start: bool) -> Subscription:
        return self.subscribe(auction, from_start=from_start)

    def _control_ops(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[JSONValue]]]:
        """The control socket's operations; each returns its command's --json output
        (docs/cli-output.schema.json). Arguments were checked against control.OP_SCHEMAS."""
        async def ping(a: dict[str, Any]) -> JSONValue:
            return {"pong": True, "pid": os.getpid()}

        async def open_(a: dict[str, Any]) -> JSONValue:
            auction_id = await self.open_auction(
                str(a["item"]), str(a["price"]), currency=str(a.get("currency") or "USDt"),
                min_increment=str(a.get("increment") or "0"),
                duration=None if a.get("duration") is None else float(a["duration"]))
            return {"auction_id": auction_id, "auction": self.auction(auction_id).to_json()}

        async def bid(a: dict[str, Any]) -> JSONValue:
            bid_id = await self.place_bid(str(a["auction"]), str(a["amount"]))
            view = self.auction(str(a["auction"]))
            from p2pauction.state.money import format_money

            return {"bid_id": bid_id, "auction_id": view.id, "amount": format_money(_money(str(a["amount"]), "amount")),
                    "is_leading": bool(view.leading and view.leading.id == bid_id), "auction": view.to_json()}

        async def close(a: dict[str, Any]) -> JSONValue:
            result = await self.close_auction(str(a["auction"]))
            return {**result.to_json(), "auction": self.auction(result.auction_id).to_json()}

        async def auctions(a: dict[str, Any]) -> JSONValue:
            return [v.to_json() for v in self.auctions(a.get("status") or "open")]

        async def show(a: dict[str, Any]) -> JSONValue:
            return self.auction(str(a["auction"])).to_json()

        async def history(a: dict[str, Any]) -> JSONValue:
            page = self.history(a.get("since"), a.get("until"), limit=a.get("limit") or HISTORY_PAGE,
                                offset=a.get("offset") or 0)
            return [_json_object(row) for row in page]

        async def stats(a: dict[str, Any]) -> JSONValue:
            return self.stats(a.get("since"), a.get("until"))

        async def status(a: dict[str, Any]) -> JSONValue:
            return self.status()

        async def peers(a: dict[str, Any]) -> JSONValue:
            return [_json_object(p) for p in self.peers()]

        return {"ping": ping, "open": open_, "bid": bid, "close": close, "auctions": auctions,
                "show": show, "history": history, "stats": stats, "status": status, "peers": peers}


# ---------------------------------------------------------------------- helpers


async def _wait_event(event: asyncio.Event, timeout: float, what: str) -> None:
    if not await wait_event(event, timeout):
        raise errors.UsageError(f"the {what} did not start within {timeout:g} s")


def _start_error(runner: asyncio.Task[None], listen: str) -> errors.P2PAuctionError:
    """Turn the exception that ended the runner during start into one actionable error."""
    exc: BaseException | None = runner.exception() if not runner.cancelled() else None
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, errors.P2PAuctionError):
        return exc
    if isinstance(exc, OSError):
        return errors.UsageError(f"cannot listen on {listen}: {exc.strerror or exc}")
    return errors.P2PAuctionError(f"the node failed to start: {exc!r}")


def _jsonable(value: Any) -> JSONValue:
    """Plain JSON types for the control socket (Decimals as canonical money strings)."""
    if isinstance(value, Decimal):
        from p2pauction.state.money import format_money

        return format_money(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_json"):
        return _jsonable(value.to_json())
    if hasattr(value, "__dataclass_fields__"):
        return {f: _jsonable(getattr(value, f)) for f in value.__dataclass_fields__}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)



def _json_object(value: Mapping[str, Any]) -> JSONObject:
    result = _jsonable(value)
    assert isinstance(result, dict)
    return result


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _history_row(row: Mapping[str, Any]) -> HistoryRow:
    """The store's finished-auction row under the output's names (one name per concept)."""
    price = row.get("price")
    return HistoryRow(
        auction_id=str(row["auction"]), item=str(row["item"]), currency=str(row["currency"]),
        status=str(row["status"]), seller=str(row["seller"]), seller_name=_opt_str(row.get("seller_name")),
        buyer=_opt_str(row.get("winner")), buyer_name=_opt_str(row.get("winner_name")),
        bid_id=_opt_str(row.get("winning_bid")),
        price=None if price is None else str(_jsonable(price)),
        opened_ts=int(row["opened_ts"]), closed_ts=None if row.get("closed_ts") is None else int(row["closed_ts"]),
        bid_count=int(row.get("bids") or 0), late_bid_count=int(row.get("late_bids") or 0))
