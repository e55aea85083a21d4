"""The project's error tree.

Every error the project raises on purpose derives from :class:`P2PAuctionError`. Two branches
matter to callers:

- :class:`ProtocolError`: a *remote* party (a peer, a corrupt file, a client on the control
  socket) sent something that breaks the protocol. The local side is fine; drop or penalise the
  sender.
- :class:`UsageError`: *local* misuse (bad user input, an operation the rules forbid for this
  caller). The message says what to do instead.
"""

from __future__ import annotations


class P2PAuctionError(Exception):
    """Base of every error p2pauction raises deliberately."""


class ProtocolError(P2PAuctionError):
    """A remote party broke the protocol (malformed bytes, invalid signature, bad frame...)."""


class DecodeError(ProtocolError):
    """Bytes that are not a well-formed, canonical message or event.

    ``reason`` is a short machine-readable tag (for counters); the message is for people.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class FrameError(DecodeError):
    """A frame on the wire is malformed or over the size limit."""


class ReconcileError(DecodeError):
    """A peer's coded symbols (set reconciliation, ``gossip/riblt.py``) are malformed, out of
    sequence, over the agreed limit, or inconsistent (they decode to something no honest set
    can produce). ``reason`` is one of ``riblt_malformed``, ``riblt_sequence``, ``riblt_limit``,
    ``riblt_inconsistent``."""


class HandshakeError(ProtocolError):
    """The peer failed the handshake (wrong net, version, signature, or too slow)."""


class HandshakeDecryptError(HandshakeError):
    """A handshake message failed to decrypt: altered on the way, or the two sides disagree on
    the prologue (network id, protocol version)."""


class ChannelError(ProtocolError):
    """A frame on an encrypted channel failed to decrypt or authenticate (tampered, replayed,
    reordered, or sent under other keys). The channel is unusable: close the connection."""


class UsageError(P2PAuctionError):
    """Local misuse: the caller asked for something invalid; the message says why."""


class MoneyError(UsageError, ValueError):
    """A string that is not a canonical money amount (e.g. ``7,5``, ``1e3``, ``075``, ``-1``)."""


class RuleViolation(UsageError):
    """A locally authored action that the auction rules refuse (bid too low, not the seller...).

    ``reason`` is the same tag the ledger uses when it rejects such an event from a peer.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(UsageError):
    """An unknown auction id or an ambiguous id prefix."""


class StoreError(P2PAuctionError):
    """The on-disk store is unusable (corrupt, locked by another node, wrong network)."""


class StoreWriteError(StoreError):
    """A write to the store failed (disk full, I/O error). Nothing was changed, in memory or on
    disk: the action can be retried once the cause is fixed, and the node recovers by itself."""


class NodeUnavailable(UsageError):
    """No node answers on this data directory's control socket."""
