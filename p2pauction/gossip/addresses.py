"""Peer addresses: ``"host:port"`` strings, IPv6 hosts in brackets."""

from __future__ import annotations

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
