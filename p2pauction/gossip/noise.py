"""The Noise Protocol Framework (revision 34), XX pattern: X25519 and ChaCha20-Poly1305 from
``cryptography``, SHA-256 / BLAKE2s and HMAC from the standard library (both OpenSSL-backed).

Supported protocol names: ``Noise_XX_25519_ChaChaPoly_SHA256`` (what p2pauction uses) and
``Noise_XX_25519_ChaChaPoly_BLAKE2s``. The objects follow the specification's names (section 5):
:class:`CipherState`, :class:`SymmetricState`, :class:`HandshakeState`; ``split()`` gives the two
transport :class:`CipherState` s. It is sans-IO: bytes in, bytes out, and the ephemeral keys come
from the ``randbytes`` callable the caller injects (``os.urandom`` in the adapter, a seeded source
in the simulator), so the same seed gives the same bytes.

Errors: a message from the peer that cannot be processed raises
:class:`~p2pauction.errors.HandshakeError` (during the handshake) or
:class:`~p2pauction.errors.ChannelError` (a transport message that fails to authenticate); local
misuse (writing out of turn, a payload over 65535 bytes) raises
:class:`~p2pauction.errors.UsageError`. No ``cryptography`` exception escapes. After any error a
:class:`HandshakeState` refuses further use (the specification says to abandon it).

Checked against the published test vectors (tests/vectors/noise_xx.json).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pauction.errors import ChannelError, HandshakeDecryptError, HandshakeError, UsageError
from p2pauction.gossip.entropy import RandBytes

DHLEN = 32
KEYLEN = 32
TAGLEN = 16
MAX_MESSAGE_BYTES = 65535            # every Noise message, handshake or transport (spec 3)
MAX_NONCE = (1 << 64) - 1            # reserved: never used to encrypt (spec 5.1)
_ZERO_NONCE_PREFIX = b"\0\0\0\0"     # ChaChaPoly nonce: 32 zero bits + 64-bit little-endian n

PROTOCOL_XX_SHA256 = "Noise_XX_25519_ChaChaPoly_SHA256"
PROTOCOL_XX_BLAKE2S = "Noise_XX_25519_ChaChaPoly_BLAKE2s"

_RAW = serialization.Encoding.Raw


# --- hash functions -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HashFunction:
    """HASH, HMAC-HASH and HKDF of spec section 4.3 (HASHLEN = 32, BLOCKLEN = 64 for both)."""

    name: str           # as in the protocol name
    hashlib_name: str   # as hashlib and hmac know it
    hashlen: int = 32

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hashlib_name, data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self.hashlib_name)

    def hkdf2(self, chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        temp_key = self.hmac(chaining_key, ikm)
        out1 = self.hmac(temp_key, b"\x01")
        return out1, self.hmac(temp_key, out1 + b"\x02")


SHA256 = HashFunction("SHA256", "sha256")
BLAKE2S = HashFunction("BLAKE2s", "blake2s")
_HASHES = {h.name: h for h in (SHA256, BLAKE2S)}


# --- DH: X25519 ---------------------------------------------------------------------------------

class KeyPair:
    """An X25519 key pair. ``public`` is the 32-byte raw public key sent on the wire."""

    __slots__ = ("_private", "public")

    def __init__(self, private: X25519PrivateKey, public: bytes) -> None:
        self._private = private
        self.public = public

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        if len(private) != DHLEN:
            raise UsageError(f"an X25519 private key is {DHLEN} bytes, not {len(private)}")
        key = X25519PrivateKey.from_private_bytes(bytes(private))
        return cls(key, key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw))

    @classmethod
    def generate(cls, randbytes: RandBytes) -> KeyPair:
        """A key pair from ``randbytes(32)`` (X25519 clamps any 32 bytes into a valid scalar)."""
        return cls.from_private(randbytes(DHLEN))

    def private_bytes(self) -> bytes:
        return self._private.private_bytes(_RAW, serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption())

    def dh(self, public: bytes) -> bytes:
        """X25519(self.private, public); HandshakeError for a key that gives the all-zero secret."""
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError:
            # cryptography refuses low-order points (all-zero shared secret): the peer sent a key
            # that would let anyone compute the secret.
            raise HandshakeError("the peer sent an invalid X25519 public key (a low-order point)") from None

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()[:16]}…)"


# --- CipherState (spec 5.1) ---------------------------------------------------------------------

class CipherState:
    """A key ``k`` (or none) and a 64-bit nonce ``n``; ChaCha20-Poly1305 AEAD.

    Without a key, encryption is the identity (as the spec says). With a key, a message that
    fails to authenticate raises ChannelError and leaves ``n`` unchanged.
    """

    __slots__ = ("_aead", "_key", "n")

    def __init__(self, key: bytes | None = None) -> None:
        self._aead: ChaCha20Poly1305 | None = None
        self._key: bytes | None = None
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        if len(key) != KEYLEN:
            raise UsageError(f"a cipher key is {KEYLEN} bytes, not {len(key)}")
        self._key = bytes(key)
        self._aead = ChaCha20Poly1305(self._key)
        self.n = 0

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def set_nonce(self, n: int) -> None:
        if not 0 <= n <= MAX_NONCE:
            raise UsageError(f"nonce {n} is out of [0, 2^64-1]")
        self.n = n

    def _nonce(self) -> bytes:
        return _ZERO_NONCE_PREFIX + self.n.to_bytes(8, "little")

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return bytes(plaintext)
        if self.n >= MAX_NONCE:
            raise UsageError("this channel sent 2^64-1 messages, its nonce is spent: open a new session")
        ciphertext = self._aead.encrypt(self._nonce(), plaintext, ad)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return bytes(ciphertext)
        if self.n >= MAX_NONCE:
            raise ChannelError("the peer sent more than 2^64-2 messages on one channel")
        if len(ciphertext) < TAGLEN:
            raise ChannelError(f"encrypted message of {len(ciphertext)} bytes is shorter than its "
                               f"{TAGLEN}-byte tag")
        try:
            plaintext = self._aead.decrypt(self._nonce(), ciphertext, ad)
        except InvalidTag:
            raise ChannelError("message failed authentication (tampered, replayed, reordered, "
                               "or encrypted under other keys)") from None
        self.n += 1
        return plaintext

    def rekey(self) -> None:
        """REKEY (spec 4.2): k = first 32 bytes of ENCRYPT(k, 2^64-1, empty ad, 32 zero bytes)."""
        if self._aead is None:
            raise UsageError("cannot rekey a cipher that has no key")
        n = self.n
        self.n = MAX_NONCE
        new_key = self._aead.encrypt(self._nonce(), bytes(KEYLEN), b"")[:KEYLEN]
        self.initialize_key(new_key)
        self.n = n


# --- SymmetricState (spec 5.2) ------------------------------------------------------------------

class SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and the handshake's CipherState."""

    __slots__ = ("hash_fn", "ck", "h", "cipher")

    def __init__(self, protocol_name: str, hash_fn: HashFunction) -> None:
        name = protocol_name.encode("ascii")
        self.hash_fn = hash_fn
        self.h = name.ljust(hash_fn.hashlen, b"\0") if len(name) <= hash_fn.hashlen else hash_fn.hash(name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_key = self.hash_fn.hkdf2(self.ck, ikm)
        self.cipher.initialize_key(temp_key[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = self.hash_fn.hash(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """(initiator -> responder cipher, responder -> initiator cipher)."""
        k1, k2 = self.hash_fn.hkdf2(self.ck, b"")
        return CipherState(k1[:KEYLEN]), CipherState(k2[:KEYLEN])


# --- HandshakeState (spec 5.3) ------------------------------------------------------------------

# XX (spec 7.5):  -> e   <- e, ee, s, es   -> s, se
_XX: tuple[tuple[str, ...], ...] = (("e",), ("e", "ee", "s", "es"), ("s", "se"))


@dataclass(frozen=True, slots=True)
class CipherPair:
    """The transport ciphers of one side, after the handshake: ``send`` and ``receive``."""

    send: CipherState
    receive: CipherState


def parse_protocol_name(protocol_name: str) -> HashFunction:
    """The hash function of a supported protocol name; UsageError for anything else."""
    parts = protocol_name.split("_")
    if (len(parts) != 5 or parts[0] != "Noise" or parts[1] != "XX" or parts[2] != "25519"
            or parts[3] != "ChaChaPoly" or parts[4] not in _HASHES):
        raise UsageError(f"unsupported Noise protocol {protocol_name!r}: this implementation has "
                         f"{PROTOCOL_XX_SHA256} and {PROTOCOL_XX_BLAKE2S}")
    return _HASHES[parts[4]]


class HandshakeState:
    """One side of an XX handshake.

    Call :meth:`write_message` when :attr:`my_turn` is true, else :meth:`read_message` with the
    peer's message, until :attr:`complete`; then :meth:`split` once for the transport ciphers.
    ``static`` is this side's Noise static key pair; the ephemeral key is drawn from
    ``randbytes(32)`` when the first ``e`` token is written.
    """

    __slots__ = ("_symmetric", "_initiator", "_s", "_e", "_rs", "_re", "_randbytes", "_index",
                 "_failed", "_split_done")

    def __init__(self, protocol_name: str, *, initiator: bool, prologue: bytes, static: KeyPair,
                 randbytes: RandBytes) -> None:
        self._symmetric = SymmetricState(protocol_name, parse_protocol_name(protocol_name))
        self._symmetric.mix_hash(prologue)
        self._initiator = initiator
        self._s = static
        self._e: KeyPair | None = None
        self._rs: bytes | None = None
        self._re: bytes | None = None
        self._randbytes = randbytes
        self._index = 0              # next message of the pattern
        self._failed = False
        self._split_done = False

    # -- state -----------------------------------------------------------------------------------

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def complete(self) -> bool:
        return self._index >= len(_XX)

    @property
    def my_turn(self) -> bool:
        """True when the next handshake message is ours to write."""
        return not self.complete and (self._index % 2 == 0) == self._initiator

    @property
    def handshake_hash(self) -> bytes:
        """``h``: after completion, a unique identifier of this session (channel binding)."""
        return self._symmetric.h

    @property
    def remote_static(self) -> bytes | None:
        """The peer's Noise static public key, once its ``s`` token was read."""
        return self._rs

    @property
    def local_static(self) -> KeyPair:
        return self._s

    def _check_usable(self, writing: bool) -> None:
        if self._failed:
            raise UsageError("this handshake failed earlier: abandon it and start a new one")
        if self.complete:
            raise UsageError("the handshake is already complete")
        if self.my_turn != writing:
            raise UsageError("it is the peer's turn to send a handshake message" if writing
                             else "it is our turn to send a handshake message, not to read one")

    # -- messages --------------------------------------------------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        """The next handshake message, carrying ``payload`` (encrypted once a key exists)."""
        self._check_usable(writing=True)
        try:
            out = bytearray()
            for token in _XX[self._index]:
                out += self._write_token(token)
            out += self._symmetric.encrypt_and_hash(payload)
            if len(out) > MAX_MESSAGE_BYTES:
                raise UsageError(f"handshake message of {len(out)} bytes is over {MAX_MESSAGE_BYTES}: "
                                 f"make the payload smaller")
        except BaseException:
            self._failed = True
            raise
        self._index += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's handshake message; return its payload. HandshakeError when bad."""
        self._check_usable(writing=False)
        try:
            if len(message) > MAX_MESSAGE_BYTES:
                raise HandshakeError(f"handshake message of {len(message)} bytes is over {MAX_MESSAGE_BYTES}")
            view = memoryview(message)
            for token in _XX[self._index]:
                view = self._read_token(token, view)
            try:
                payload = self._symmetric.decrypt_and_hash(bytes(view))
            except ChannelError:
                raise HandshakeDecryptError(f"handshake message {self._index + 1} failed to decrypt") from None
        except BaseException:
            self._failed = True
            raise
        self._index += 1
        return payload

    def _write_token(self, token: str) -> bytes:
        sym = self._symmetric
        if token == "e":
            self._e = KeyPair.generate(self._randbytes)
            sym.mix_hash(self._e.public)
            return self._e.public
        if token == "s":
            return sym.encrypt_and_hash(self._s.public)
        self._mix_dh(token)
        return b""

    def _read_token(self, token: str, view: memoryview) -> memoryview:
        sym = self._symmetric
        if token == "e":
            if len(view) < DHLEN:
                raise HandshakeError(f"handshake message {self._index + 1} is too short for an ephemeral key")
            self._re = bytes(view[:DHLEN])
            sym.mix_hash(self._re)
            return view[DHLEN:]
        if token == "s":
            size = DHLEN + (TAGLEN if sym.cipher.has_key else 0)
            if len(view) < size:
                raise HandshakeError(f"handshake message {self._index + 1} is too short for a static key")
            try:
                self._rs = sym.decrypt_and_hash(bytes(view[:size]))
            except ChannelError:
                raise HandshakeDecryptError(f"handshake message {self._index + 1}: the static key "
                                            f"failed to decrypt") from None
            return view[size:]
        self._mix_dh(token)
        return view

    def _mix_dh(self, token: str) -> None:
        """ee / es / se / ss: which local key meets which remote key depends on the role."""
        e, s, re, rs = self._e, self._s, self._re, self._rs
        local: KeyPair | None
        remote: bytes | None
        if token == "ee":
            local, remote = e, re
        elif token == "es":   # initiator's ephemeral with responder's static
            local, remote = (e, rs) if self._initiator else (s, re)
        elif token == "se":   # initiator's static with responder's ephemeral
            local, remote = (s, re) if self._initiator else (e, rs)
        else:
            local, remote = s, rs
        if local is None or remote is None:  # cannot happen with the XX table; guards the invariant
            raise UsageError(f"DH token {token!r} before both keys are known")
        self._symmetric.mix_key(local.dh(remote))

    def split(self) -> CipherPair:
        """The transport ciphers oriented for this side. Once, after the last message."""
        if not self.complete or self._failed:
            raise UsageError("split() before the handshake completed")
        if self._split_done:
            raise UsageError("split() was already called for this handshake")
        self._split_done = True
        c1, c2 = self._symmetric.split()
        return CipherPair(send=c1, receive=c2) if self._initiator else CipherPair(send=c2, receive=c1)
