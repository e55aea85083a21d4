"""Membership helpers: addresses and the bounded passive view (HyParView-flavoured).

The *active view* is the set of handshaken node links (kept by the core, target 6, min 3, max
12). The *passive view* here is a bounded set of known-but-idle peers ``key -> address``, fed by
discovery samples, shuffles, HELLO addresses and the store; the core dials from it when below the
target degree. Eviction when full is random (from the core's rng) so an attacker cannot flush it
deterministically; iteration order is insertion order (dicts), never hash order.
"""

from __future__ import annotations

import random

UNSPECIFIED_HOSTS = ("0.0.0.0", "::", "[::]", "")


def split_addr(addr: str) -> tuple[str, str]:
    """``"host:port"`` -> (host, port) as strings; brackets of IPv6 hosts are kept."""
    host, _, port = addr.rpartition(":")
    return host, port


def ip_of(addr: str) -> str:
    """The host of an address, without IPv6 brackets (used for per-IP caps and bans)."""
    host = split_addr(addr)[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def fix_addr(advertised: str | None, remote_addr: str) -> str | None:
    """The address to dial a peer at: its advertised listen address, with an unspecified host
    (0.0.0.0) replaced by the host the connection actually came from."""
    if advertised is None:
        return None
    host, port = split_addr(advertised)
    if host in UNSPECIFIED_HOSTS:
        return f"{split_addr(remote_addr)[0]}:{port}"
    return advertised


class PassiveView:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._peers: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, key: str) -> bool:
        return key in self._peers

    def items(self) -> list[tuple[str, str]]:
        return list(self._peers.items())

    def get(self, key: str) -> str | None:
        return self._peers.get(key)

    def add(self, key: str, addr: str, rng: random.Random) -> None:
        if key in self._peers:
            self._peers[key] = addr
            return
        if len(self._peers) >= self.max_size:
            victim = rng.choice(list(self._peers))
            del self._peers[victim]
        self._peers[key] = addr

    def remove(self, key: str) -> None:
        self._peers.pop(key, None)

    def sample(self, n: int, rng: random.Random) -> list[tuple[str, str]]:
        items = list(self._peers.items())
        if len(items) <= n:
            return items
        return rng.sample(items, n)
