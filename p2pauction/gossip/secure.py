"""The p2pauction secure session (protocol version 2): Noise XX bound to node identities. Sans-IO.

One :class:`SecureSession` per connection. The initiator (the side that dialed) calls
:meth:`~SecureSession.start` and sends the bytes it returns as a frame body; each side then feeds
every frame body it receives to :meth:`~SecureSession.receive_handshake` and sends the body it
returns (if any), until :attr:`~SecureSession.established`. From then on every frame body is
``encrypt(plaintext)`` one way and ``decrypt(body)`` the other. The exact wire format is in
docs/protocol.md, section "v2 transport (being integrated)"::

    -> e                                   (32 bytes: the initiator's ephemeral key, no payload)
    <- e, ee, s, es, IDENTITY(responder)   (encrypted)
    -> s, se, IDENTITY(initiator)          (encrypted)

- The prologue is ``b"p2pauction/2\\0" + net``: a peer on another network or protocol version
  derives other keys, and message 2 fails to decrypt at the initiator ("wrong network or
  protocol version").
- IDENTITY is a compact JSON object ``{"t":"identity","key":..,"sig":..,"addr":..,"role":..}``:
  the Ed25519 node key, its signature over ``b"p2pauction-noise-static\\0" + noise static key``,
  the listen address and the role. The Noise static key is proven by the DH tokens and the node
  key by the signature, so a peer can only complete a handshake as a node key it holds; a relay
  in the middle derives no usable key (it holds neither side's ephemeral or static secret).
- After the handshake a frame body is one or more ChaCha20-Poly1305 records (at most 65535 bytes
  each, all full but the last) whose associated data is the frame's 4-byte length header, so a
  frame cannot be cut, split or joined without failing. Nonces count up per direction: a
  replayed, reordered, dropped or injected frame fails too.

Errors: HandshakeError (the peer failed the handshake), ChannelError (a frame failed to
decrypt), both ProtocolErrors: close the connection. Either error, or any failure inside, moves
the session to FAILED for good. UsageError: local misuse (e.g. ``encrypt`` before the handshake
completed, or an empty or oversized plaintext).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Protocol, TypeVar

from p2pauction.errors import ChannelError, FrameError, HandshakeDecryptError, HandshakeError, UsageError
from p2pauction.gossip.entropy import RandBytes
from p2pauction.gossip.framing import HEADER_BYTES, MAX_FRAME_BYTES, decode_body, encode_body
from p2pauction.gossip.messages import HEX64, HEX128, MAX_NET, Error, valid_addr
from p2pauction.gossip.noise import (
    DHLEN, MAX_MESSAGE_BYTES, PROTOCOL_XX_SHA256, TAGLEN, CipherPair, HandshakeState, KeyPair,
)
from p2pauction.state.identity import verify_signature

SECURE_VERSION = 2
NOISE_PROTOCOL = PROTOCOL_XX_SHA256
PROLOGUE_PREFIX = b"p2pauction/%d\0" % SECURE_VERSION   # b"p2pauction/2\0"
STATIC_SIG_DOMAIN = b"p2pauction-noise-static\0"
MAX_HANDSHAKE_BODY = 1024
"""The largest handshake frame body (message 2 is about 600 bytes with the longest address): the
link's frame decoder uses this limit until the session is established."""
RECORD_BYTES = MAX_MESSAGE_BYTES                 # one AEAD record on the wire, at most
RECORD_PLAINTEXT = RECORD_BYTES - TAGLEN         # 65519 plaintext bytes per full record
ROLES = ("node", "bootstrap")
IDENTITY_TYPE = "identity"


def prologue(net: str) -> bytes:
    """The Noise prologue: binds the protocol version and the network id into the handshake."""
    if not isinstance(net, str) or not 0 < len(net) <= MAX_NET:
        raise UsageError(f"a network id is 1 to {MAX_NET} characters")
    return PROLOGUE_PREFIX + net.encode("utf-8")


def sealed_size(plaintext_len: int) -> int:
    """The frame body size that ``encrypt`` makes of a plaintext of this many bytes."""
    records = -(-plaintext_len // RECORD_PLAINTEXT)
    return plaintext_len + TAGLEN * records


class NodeSigner(Protocol):
    """What the session needs of a node identity (:class:`~p2pauction.state.identity.Identity`)."""

    @property
    def public_hex(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """A node's Noise static key pair and its node key's signature over it. Made once per node
    (one Ed25519 signature) and shared by all its sessions."""

    node_key: str
    static: KeyPair
    static_sig: bytes

    @classmethod
    def create(cls, signer: NodeSigner, randbytes: RandBytes) -> LocalIdentity:
        """A fresh Noise static key from ``randbytes``, signed by the node key."""
        return cls.from_static(signer, KeyPair.generate(randbytes))

    @classmethod
    def from_static(cls, signer: NodeSigner, static: KeyPair) -> LocalIdentity:
        return cls(node_key=signer.public_hex, static=static,
                   static_sig=signer.sign(STATIC_SIG_DOMAIN + static.public))


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What a handshake proved about the peer (``key``, ``static``) and what it claims
    (``addr``: where it listens, or None; ``role``: "node" or "bootstrap")."""

    key: str
    addr: str | None
    role: str
    static: bytes


@dataclass(frozen=True, slots=True)
class IdentityPayload:
    """The handshake payload of messages 2 and 3 (validated when built)."""

    key: str
    sig: str
    addr: str | None
    role: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not HEX64.match(self.key):
            raise HandshakeError("handshake identity: 'key' must be 64 lowercase hex characters")
        if not isinstance(self.sig, str) or not HEX128.match(self.sig):
            raise HandshakeError("handshake identity: 'sig' must be 128 lowercase hex characters")
        if self.addr is not None and not valid_addr(self.addr):
            raise HandshakeError("handshake identity: 'addr' must be 'host:port' or null")
        if self.role not in ROLES:
            raise HandshakeError("handshake identity: 'role' must be 'node' or 'bootstrap'")

    def to_bytes(self) -> bytes:
        return encode_body({"t": IDENTITY_TYPE, "key": self.key, "sig": self.sig, "addr": self.addr,
                            "role": self.role})

    @classmethod
    def from_bytes(cls, data: bytes) -> IdentityPayload:
        try:
            d = decode_body(data)
        except FrameError as exc:
            raise HandshakeError(f"handshake identity is not a JSON object: {exc}") from None
        if d["t"] != IDENTITY_TYPE:
            raise HandshakeError(f"handshake identity has type {str(d['t'])[:32]!r}, not {IDENTITY_TYPE!r}")
        return cls(key=d.get("key", ""), sig=d.get("sig", ""), addr=d.get("addr"), role=d.get("role", ""))


# --- the state machine ------------------------------------------------------------------------

class SessionState(str, Enum):   # str: hashed in C, the transition lookup runs on every frame
    START = "start"                # initiator, before start()
    AWAIT_MSG1 = "await_msg1"      # responder, waiting for message 1
    AWAIT_MSG2 = "await_msg2"      # initiator, sent message 1
    AWAIT_MSG3 = "await_msg3"      # responder, sent message 2
    ESTABLISHED = "established"
    FAILED = "failed"              # terminal: close the connection


class SessionInput(str, Enum):
    START = "start"
    HANDSHAKE = "handshake"        # a handshake frame body from the peer
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"


_S, _I = SessionState, SessionInput
TRANSITIONS: dict[tuple[SessionState, SessionInput], SessionState] = {
    (_S.START, _I.START): _S.AWAIT_MSG2,
    (_S.AWAIT_MSG1, _I.HANDSHAKE): _S.AWAIT_MSG3,
    (_S.AWAIT_MSG2, _I.HANDSHAKE): _S.ESTABLISHED,
    (_S.AWAIT_MSG3, _I.HANDSHAKE): _S.ESTABLISHED,
    (_S.ESTABLISHED, _I.ENCRYPT): _S.ESTABLISHED,
    (_S.ESTABLISHED, _I.DECRYPT): _S.ESTABLISHED,
}
"""Every legal (state, input) -> next state. Anything else is refused by ``_step`` (UsageError);
any error while handling a legal input moves the session to FAILED."""

_T = TypeVar("_T")


class SecureSession:
    """One connection's secure channel. See the module docstring for the flow."""

    __slots__ = ("_local", "_net", "_payload", "_noise", "_state", "_ciphers", "_peer", "_hash",
                 "max_plaintext", "max_body", "initiator")

    def __init__(self, local: LocalIdentity, *, initiator: bool, net: str, addr: str | None,
                 randbytes: RandBytes, role: str = "node", max_plaintext: int = MAX_FRAME_BYTES) -> None:
        if not 0 < max_plaintext < 1 << 31:
            raise UsageError("max_plaintext must be a positive frame size")
        try:
            self._payload = IdentityPayload(key=local.node_key, sig=local.static_sig.hex(), addr=addr,
                                            role=role).to_bytes()
        except HandshakeError as exc:
            raise UsageError(f"cannot announce this identity: {exc}") from None
        self._local = local
        self._net = net
        self._noise = HandshakeState(NOISE_PROTOCOL, initiator=initiator, prologue=prologue(net),
                                     static=local.static, randbytes=randbytes)
        self._state = SessionState.START if initiator else SessionState.AWAIT_MSG1
        self._ciphers: CipherPair | None = None
        self._peer: PeerIdentity | None = None
        self._hash: bytes | None = None
        self.max_plaintext = max_plaintext
        self.max_body = sealed_size(max_plaintext)   # the frame decoder's limit once established
        self.initiator = initiator

    # -- state -----------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def established(self) -> bool:
        return self._state is SessionState.ESTABLISHED

    @property
    def peer(self) -> PeerIdentity | None:
        """The authenticated peer: set when the session is established, else None."""
        return self._peer if self.established else None

    @property
    def handshake_hash(self) -> bytes:
        """A 32-byte value unique to this session, the same on both ends (channel binding)."""
        if self._hash is None:
            raise UsageError("the handshake hash exists once the session is established")
        return self._hash

    def _step(self, event: SessionInput, work: Callable[[], _T]) -> _T:
        """The one place that applies TRANSITIONS: refuse an illegal input, fail on any error."""
        target = TRANSITIONS.get((self._state, event))
        if target is None:
            raise UsageError(f"cannot {event.value} in state {self._state.value}"
                             + (" (the session failed: close the connection)"
                                if self._state is SessionState.FAILED else ""))
        try:
            result = work()
        except BaseException:
            self._fail()
            raise
        self._state = target
        return result

    def _fail(self) -> None:
        self._state = SessionState.FAILED
        self._ciphers = None

    # -- handshake -------------------------------------------------------------------------------

    def start(self) -> bytes:
        """Initiator: the body of handshake message 1."""
        return self._step(SessionInput.START, lambda: self._noise.write_message(b""))

    def receive_handshake(self, body: bytes) -> bytes | None:
        """Process one handshake frame body from the peer; return the body to send back, if any.

        HandshakeError when the peer is not acceptable (its reason says why).
        """
        return self._step(SessionInput.HANDSHAKE, lambda: self._handshake(bytes(body)))

    def _handshake(self, body: bytes) -> bytes | None:
        if len(body) > MAX_HANDSHAKE_BODY:
            raise HandshakeError(f"handshake message of {len(body)} bytes is over {MAX_HANDSHAKE_BODY}")
        if self._state is SessionState.AWAIT_MSG1:
            if len(body) != DHLEN:
                raise HandshakeError(_v1_reason(body) or
                                     f"handshake message 1 must be {DHLEN} bytes, not {len(body)}")
            self._noise.read_message(body)
            return self._noise.write_message(self._payload)
        try:
            payload = self._noise.read_message(body)
        except HandshakeDecryptError as exc:
            reason = _v1_reason(body) if self._state is SessionState.AWAIT_MSG2 else None
            raise HandshakeError(reason or (
                f"wrong network or protocol version: the peer's handshake does not decrypt under this "
                f"node's network {self._net!r} and protocol {SECURE_VERSION} (both sides need the same "
                f"--net and a p2pauction that speaks protocol {SECURE_VERSION}), or it was altered on "
                f"the way ({exc})")) from None
        self._accept_peer(payload)
        reply = self._noise.write_message(self._payload) if self.initiator else None
        self._ciphers = self._noise.split()
        self._hash = self._noise.handshake_hash
        return reply

    def _accept_peer(self, payload: bytes) -> None:
        ident = IdentityPayload.from_bytes(payload)
        static = self._noise.remote_static
        assert static is not None  # the s token came before this payload
        if not verify_signature(ident.key, bytes.fromhex(ident.sig), STATIC_SIG_DOMAIN + static):
            raise HandshakeError("bad handshake signature: the peer's node key did not sign its Noise "
                                 "static key (it does not hold the key it claims, or relays another node)")
        if ident.key == self._local.node_key:
            raise HandshakeError("self-connection: the peer has this node's own key")
        self._peer = PeerIdentity(key=ident.key, addr=ident.addr, role=ident.role, static=static)

    # -- transport -------------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes) -> bytes:
        """The frame body carrying ``plaintext`` (1 .. max_plaintext bytes)."""
        size = len(plaintext)
        if self._state is SessionState.ESTABLISHED and 0 < size <= RECORD_PLAINTEXT and size <= self.max_plaintext:
            # The hot path (every frame sent): one record, the same transition as _step spelled out.
            try:
                return self._ciphers.send.encrypt_with_ad(  # type: ignore[union-attr]
                    (size + TAGLEN).to_bytes(HEADER_BYTES, "big"), plaintext)
            except BaseException:
                self._fail()
                raise
        if not 0 < len(plaintext) <= self.max_plaintext:
            raise UsageError(f"a frame carries 1 to {self.max_plaintext} bytes, not {len(plaintext)}")
        return self._step(SessionInput.ENCRYPT, lambda: self._seal(plaintext))

    def decrypt(self, body: bytes) -> bytes:
        """The plaintext of a frame body; ChannelError when it fails (the session is then FAILED)."""
        size = len(body)
        if self._state is SessionState.ESTABLISHED and TAGLEN < size <= RECORD_BYTES and size <= self.max_body:
            # The hot path (every frame received): one record, the same transition as _step spelled out.
            try:
                return self._ciphers.receive.decrypt_with_ad(  # type: ignore[union-attr]
                    size.to_bytes(HEADER_BYTES, "big"), body)
            except BaseException:
                self._fail()
                raise
        return self._step(SessionInput.DECRYPT, lambda: self._open(body))

    def _seal(self, plaintext: bytes) -> bytes:
        assert self._ciphers is not None
        send = self._ciphers.send
        ad = sealed_size(len(plaintext)).to_bytes(HEADER_BYTES, "big")
        if len(plaintext) <= RECORD_PLAINTEXT:
            return send.encrypt_with_ad(ad, plaintext)
        return b"".join(send.encrypt_with_ad(ad, plaintext[i:i + RECORD_PLAINTEXT])
                        for i in range(0, len(plaintext), RECORD_PLAINTEXT))

    def _open(self, body: bytes) -> bytes:
        assert self._ciphers is not None
        size = len(body)
        if size > self.max_body:
            raise ChannelError(f"encrypted frame of {size} bytes is over {self.max_body}")
        if size % RECORD_BYTES and size % RECORD_BYTES <= TAGLEN:
            raise ChannelError(f"encrypted frame of {size} bytes ends with a record of no plaintext")
        receive = self._ciphers.receive
        ad = size.to_bytes(HEADER_BYTES, "big")
        if size <= RECORD_BYTES:
            return receive.decrypt_with_ad(ad, body)
        view = memoryview(body)
        return b"".join(receive.decrypt_with_ad(ad, bytes(view[i:i + RECORD_BYTES]))
                        for i in range(0, size, RECORD_BYTES))


# --- protocol version 1 peers -------------------------------------------------------------------

def _v1_hello(body: bytes) -> bool:
    if not body.startswith(b"{"):
        return False
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("t") == "hello"


def _v1_reason(body: bytes) -> str | None:
    if not _v1_hello(body):
        return None
    return (f"the peer speaks protocol version 1 (a plaintext HELLO); this node speaks version "
            f"{SECURE_VERSION} (encrypted): the peer must upgrade p2pauction")


def v1_refusal(body: bytes) -> bytes | None:
    """When ``body`` is a version-1 HELLO: the version-1 ERROR frame body to send back before
    closing, so that an old node reports a clear reason instead of a malformed frame."""
    if not _v1_hello(body):
        return None
    reason = f"protocol version {SECURE_VERSION} required (encrypted transport): upgrade p2pauction"
    return encode_body(Error(reason=reason).to_wire())


__all__ = ["LocalIdentity", "PeerIdentity", "IdentityPayload", "SecureSession", "SessionState",
           "SessionInput", "TRANSITIONS", "NodeSigner", "prologue", "sealed_size", "v1_refusal"]
