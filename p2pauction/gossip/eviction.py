"""Which inbound peer to drop when a newcomer needs the slot (eclipse resistance, sans-IO).

Modelled on Bitcoin Core's inbound eviction (``SelectNodeToEvict``): an attacker who can open many
connections from many keys should not be able to push out the honest peers a node already has. So
before choosing a victim, several kinds of peer are *protected*, each by a property an attacker
finds expensive to fake:

- **network diversity**: a few peers from distinct network groups (the /16 of an IPv4 address, the
  /32 of an IPv6 one), picked by a keyed hash the attacker cannot predict, so that owning many
  addresses in a few ranges does not help;
- **usefulness**: the peers that most recently delivered an event we had not seen (they did work
  for us; Sybils that only connect do not);
- **age**: half of the rest, the longest connected (an attacker must keep connections up for a long
  time before it can displace them).

Outbound peers are never candidates: we chose them, and the core keeps slots that only outbound
connections may use. Among the unprotected inbound peers, the network group with the most
connections loses its youngest member: a flood from one range evicts itself.

Everything is a pure function of its inputs (times are the caller's clock), so the simulator can
drive it deterministically.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

PROTECT_BY_NETGROUP = 4
PROTECT_BY_USEFULNESS = 4


@dataclass(frozen=True, slots=True)
class EvictionCandidate:
    """What the core knows about one connected peer."""

    key: str                    # the peer's node key (hex); ties break on it, so order is stable
    ip: str
    inbound: bool
    connected_at: float         # when the link was established (the core's clock)
    last_useful: float | None   # when it last delivered an event first; None if it never did


def netgroup(ip: str) -> str:
    """The network group an address belongs to: IPv4 /16, IPv6 /32; anything else is its own."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"other:{ip}"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return "ipv4:" + str(ipaddress.ip_network(f"{addr}/16", strict=False))
    return "ipv6:" + str(ipaddress.ip_network(f"{addr}/32", strict=False))


def _keyed(salt: bytes, group: str) -> bytes:
    return hashlib.blake2b(group.encode(), key=salt[:64], digest_size=16).digest()


def select_inbound_to_evict(peers: Sequence[EvictionCandidate], salt: bytes) -> str | None:
    """The key of the inbound peer to evict, or None when every inbound peer is protected.

    ``salt`` is a per-node secret (from the entropy source), so which network groups are
    protected cannot be predicted from outside.
    """
    candidates = sorted((p for p in peers if p.inbound), key=lambda p: p.key)
    candidates = _protect_netgroups(candidates, salt)
    candidates = _protect_most_useful(candidates)
    candidates = _protect_oldest_half(candidates)
    if not candidates:
        return None
    groups: dict[str, list[EvictionCandidate]] = {}
    for p in candidates:
        groups.setdefault(netgroup(p.ip), []).append(p)
    # The biggest group loses; among equals, the one whose youngest connection is the newest.
    biggest = max(groups.values(), key=lambda g: (len(g), max(p.connected_at for p in g)))
    return max(biggest, key=lambda p: (p.connected_at, p.key)).key


def _protect_netgroups(candidates: list[EvictionCandidate], salt: bytes) -> list[EvictionCandidate]:
    by_group: dict[str, EvictionCandidate] = {}
    for p in sorted(candidates, key=lambda p: (p.connected_at, p.key)):  # the group's oldest speaks for it
        by_group.setdefault(netgroup(p.ip), p)
    chosen = sorted(by_group, key=lambda g: _keyed(salt, g))[:PROTECT_BY_NETGROUP]
    protected = {by_group[g].key for g in chosen}
    return [p for p in candidates if p.key not in protected]


def _protect_most_useful(candidates: list[EvictionCandidate]) -> list[EvictionCandidate]:
    useful = sorted((p for p in candidates if p.last_useful is not None),
                    key=lambda p: (-(p.last_useful or 0.0), p.key))[:PROTECT_BY_USEFULNESS]
    protected = {p.key for p in useful}
    return [p for p in candidates if p.key not in protected]


def _protect_oldest_half(candidates: list[EvictionCandidate]) -> list[EvictionCandidate]:
    by_age = sorted(candidates, key=lambda p: (p.connected_at, p.key))
    protected = {p.key for p in by_age[:len(by_age) // 2]}
    return [p for p in candidates if p.key not in protected]
