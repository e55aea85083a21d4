"""The mutual handshake: HELLO both ways, then AUTH (a signature over the other side's nonce).

Each side sends ``HELLO {net, ver, key, addr, nonce, role}``. On the other's HELLO it checks the
network id and version and answers ``AUTH {sig}`` where ``sig`` is Ed25519 by its key over::

    b"p2pauction/handshake/v1\\0" + bytes.fromhex(their_nonce) + bytes.fromhex(our_key) + net (UTF-8)

Signing the *other side's* fresh nonce proves possession of the key on this very connection (no
replay), and binding our key and the net stops a signature being reused elsewhere.
"""

from __future__ import annotations

import random

from p2pauction.errors import HandshakeError
from p2pauction.gossip.messages import PROTOCOL_VERSION, Auth, Hello

DOMAIN = b"p2pauction/handshake/v1\0"


def new_nonce(rng: random.Random) -> str:
    """32 random bytes as 64 hex chars, from the caller's seeded rng."""
    return f"{rng.getrandbits(256):064x}"


def auth_payload(their_nonce: str, signer_key: str, net: str) -> bytes:
    return DOMAIN + bytes.fromhex(their_nonce) + bytes.fromhex(signer_key) + net.encode("utf-8")


def check_hello(hello: Hello, *, net: str, own_key: str) -> None:
    """Raise HandshakeError naming the problem when the HELLO is unacceptable."""
    if hello.net != net:
        raise HandshakeError(f"wrong network: this node is on {net!r}, the peer on {hello.net[:64]!r}")
    if hello.ver != PROTOCOL_VERSION:
        raise HandshakeError(f"unsupported protocol version {hello.ver} (this node speaks {PROTOCOL_VERSION})")
    if hello.key == own_key:
        raise HandshakeError("self-connection: the peer has this node's own key")


def make_auth(identity: object, their_nonce: str, net: str) -> Auth:
    key: str = identity.public_hex  # type: ignore[attr-defined]
    sig: bytes = identity.sign(auth_payload(their_nonce, key, net))  # type: ignore[attr-defined]
    return Auth(sig=sig.hex())


def check_auth(auth: Auth, *, their_key: str, our_nonce: str, net: str) -> None:
    from p2pauction.state.identity import verify_signature

    if not verify_signature(their_key, bytes.fromhex(auth.sig), auth_payload(our_nonce, their_key, net)):
        raise HandshakeError("bad handshake signature: the peer does not hold the key it claims")
