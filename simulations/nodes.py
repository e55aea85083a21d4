"""The real node parts for the simulator: GossipCore / DiscoveryCore over a Replica on a MemoryStore.

Nothing here re-implements the protocol: this module only constructs the project's own objects
with deterministic inputs (identity seeds and core rngs derived from the run's seed, one shared
``SignatureVerifier`` with a cache, keyed by the exact signed bytes, so each distinct event's
signature is checked once per run instead of once per node).

``Hooks`` lets a test plant a bug in chosen nodes -- a different replica or core class, or
config overrides -- without touching the project's code.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p2pauction.errors import DecodeError
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.discovery import DiscoveryCore
from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.messages import EventMsg
from p2pauction.state.authoring import Author
from p2pauction.state.events import decode_event
from p2pauction.state.identity import Identity, SignatureVerifier
from p2pauction.state.replica import Replica
from simulations.storage import FaultyStore

if TYPE_CHECKING:
    from simulations.engine import World
    from simulations.process import SimNode

NET = "simnet"


class SharedMemo:
    """bytes -> an immutable value computed from them, shared by every simulated node of a run.

    Bounded by count; eviction is oldest-first (insertion order: deterministic). ``hits`` and
    ``misses`` go into the report.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: dict[bytes, Any] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> Any:
        value = self._d.get(key)
        if value is not None:
            self.hits += 1
        return value

    def put(self, key: bytes, value: Any) -> None:
        self.misses += 1
        d = self._d
        d[key] = value
        if len(d) > self.size:
            del d[next(iter(d))]


class DecodeCache(SharedMemo):
    """raw bytes -> decoded Event.

    ``decode_event`` is a pure function of the bytes and an Event is immutable, so handing every
    node the same Event object for the same bytes is sound; it saves the decode of each copy and
    lets a thousand nodes share one Event (and one ``raw``) per event instead of a thousand.
    """

    def decode(self, raw: bytes) -> Any:
        ev = self.get(raw)
        if ev is None:
            ev = decode_event(raw)  # DecodeError propagates: the caller falls back to the real path
            self.put(ev.raw, ev)
        return ev


class FrameCache(SharedMemo):
    """Frame body bytes -> parsed EVENT message (the cores' ``message_cache``).

    A node pushes one EVENT frame to each of its eager peers, and nodes at the same hop count
    send the very same bytes, so most EVENT frames a run delivers were parsed before. Parsing is a
    pure function of the bytes and messages are frozen, so sharing the result is sound. Other
    message types carry per-link content (nonces, per-peer id batches) and would only fill it.
    """

    def put(self, key: bytes, value: Any) -> None:
        if type(value) is EventMsg:
            super().put(key, value)


_CACHED_CLASSES: dict[type, type] = {}


def with_decode_cache(base: type) -> type:
    """A subclass of the Replica class ``base`` whose receive_raw decodes through the shared cache.

    ``Replica.receive_raw(raw)`` is ``decode_event(raw)`` then the ledger's checks; this keeps
    exactly that, through the public ``receive(event)``, and leaves bytes that do not decode to the
    original method (so rejects are counted by the real code).
    """
    cls = _CACHED_CLASSES.get(base)
    if cls is None:
        def receive_raw(self: Any, raw: bytes, **kw: Any) -> Any:
            try:
                ev = self._decode_cache.decode(raw)
            except DecodeError:
                return base.receive_raw(self, raw, **kw)  # type: ignore[attr-defined]
            return self.receive(ev, **kw)

        cls = type(base.__name__ + "WithDecodeCache", (base,), {"receive_raw": receive_raw})
        _CACHED_CLASSES[base] = cls
    return cls


@dataclass
class Hooks:
    """Per-node substitutions (planted bugs). Each callable gets the node and returns a class or None."""

    store_class: Callable[[SimNode], type | None] | None = None
    replica_class: Callable[[SimNode], type | None] | None = None
    core_class: Callable[[SimNode], type | None] | None = None
    config: Callable[[SimNode], dict[str, Any]] | None = None
    applies: Callable[[SimNode], bool] = field(default=lambda node: True)


class RealFactory:
    net = NET

    def __init__(self, *, dissemination: str = "plumtree", overrides: dict[str, Any] | None = None,
                 hooks: Hooks | None = None, verifier_cache: int = 1 << 17, net: str = NET,
                 decode_cache: int = 1 << 17) -> None:
        self.net = net
        self.dissemination = dissemination
        self.overrides = dict(overrides or {})
        self.hooks = hooks or Hooks()
        self.verifier = SignatureVerifier(cache_size=verifier_cache)
        self.decode_cache = DecodeCache(decode_cache) if decode_cache > 0 else None
        self.frame_cache = FrameCache(decode_cache) if decode_cache > 0 else None
        self.world: World | None = None

    def setup(self, world: World) -> None:
        self.world = world

    def new_identity(self, node: SimNode) -> Any:
        assert self.world is not None
        seed = random.Random(f"{self.world.seed}/identity/{node.idx}").randbytes(32)
        ident = Identity.generate(seed=seed)
        if node.role == "node":
            node.author = Author(ident, self.net, name=node.name[:32])
        return ident

    def new_store(self, node: SimNode) -> Any:
        cls = self._hooked(node, "store_class") or FaultyStore
        store = cls()
        if isinstance(store, FaultyStore):
            world = self.world
            # the fault plan is applied after the first nodes exist: look it up at each commit
            store.draw = lambda: world.storage_faults.draw(node) if world and world.storage_faults else None
        return store

    @staticmethod
    def on_crash(node: SimNode) -> None:
        """A store with volatile state (a planted bug) loses it now."""
        crash = getattr(node.store, "crash", None)
        if callable(crash):
            crash()

    def _hooked(self, node: SimNode, which: str) -> Any:
        h = self.hooks
        fn = getattr(h, which)
        if fn is None or node.role != "node" or not h.applies(node):
            return None
        return fn(node)

    def new_replica(self, node: SimNode) -> Any:
        cls = self._hooked(node, "replica_class") or Replica
        if self.decode_cache is None:
            return cls(self.net, node.store, verifier=self.verifier)
        rep = with_decode_cache(cls)(self.net, node.store, verifier=self.verifier)
        rep._decode_cache = self.decode_cache
        return rep

    def config(self, node: SimNode) -> Any:
        assert self.world is not None
        kw: dict[str, Any] = {"dissemination": self.dissemination}
        kw.update(self.overrides)
        kw.update(self._hooked(node, "config") or {})
        boots = [b.addr for b in self.world.bootstraps]
        return GossipConfig(net=self.net, listen_addr=node.addr, bootstraps=boots, **kw)

    def new_core(self, node: SimNode, now: float) -> Any:
        assert self.world is not None

        rng = random.Random(f"{self.world.seed}/core/{node.idx}/{node.incarnation}")
        # Secrets (Noise keys) from a stream of their own, derived from the run seed, so a run
        # stays a pure function of its seed without the protocol rng ever making a key.
        entropy = SeededEntropy(f"{self.world.seed}/entropy/{node.idx}/{node.incarnation}".encode())
        cfg = self.config(node)
        if node.role == "bootstrap":
            return DiscoveryCore(cfg, node.identity, rng, now, entropy=entropy)
        cls = self._hooked(node, "core_class") or GossipCore
        core = cls(cfg, node.identity, node.replica, rng, now, entropy=entropy)
        core.message_cache = self.frame_cache
        return core

    @staticmethod
    def accepted_kind(outcome: Any) -> bool:
        if outcome is None:
            return False
        k = outcome.kind
        return str(getattr(k, "value", k)).lower() == "accepted"
