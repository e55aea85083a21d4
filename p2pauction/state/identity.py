"""Ed25519 identities: key pairs, the key file, and signature verification.

The author id of a node is its public key in lowercase hex. The key file holds the 32-byte raw
private key as hex; it is created atomically with mode 0600 and refused if anyone else may read it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import OrderedDict
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from p2pauction.errors import StoreError, UsageError

_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw
_NOENC = serialization.NoEncryption()


class Identity:
    """An Ed25519 key pair; ``public_hex`` is the author id."""

    __slots__ = ("_key", "public_hex")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_hex: str = key.public_key().public_bytes(_RAW, _RAW_PUB).hex()

    @classmethod
    def generate(cls, seed: bytes | None = None) -> Identity:
        """A new key pair; a 32-byte ``seed`` makes it deterministic (simulations, tests)."""
        if seed is None:
            return cls(Ed25519PrivateKey.generate())
        if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
            raise UsageError("an identity seed must be exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    def private_bytes(self) -> bytes:
        return self._key.private_bytes(_RAW, _RAW_PRIV, _NOENC)

    @classmethod
    def load_or_create(cls, path: Path | str) -> Identity:
        """Load the key at ``path``, or create it (mode 0600, atomically) when absent."""
        path = Path(path)
        if path.exists():
            return cls._load(path)
        ident = cls.generate()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            try:
                fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:   # left by a crashed process that had our pid: never used
                os.unlink(tmp)
                fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create the identity key {path}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(ident.private_bytes().hex() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            # link() fails if another process created the key meanwhile: never clobber a key.
            try:
                os.link(tmp, path)
            except FileExistsError:
                return cls._load(path)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        _fsync_dir(path.parent)
        return ident

    @classmethod
    def _load(cls, path: Path) -> Identity:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise StoreError(f"cannot read the identity key {path}: {exc.strerror or exc}") from None
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise StoreError(
                f"identity key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                f"run `chmod 600 {path}`")
        try:
            text = path.read_text("ascii").strip()
            raw = bytes.fromhex(text)
        except (OSError, UnicodeDecodeError, ValueError):
            raise StoreError(f"identity key {path} is corrupt (expected 64 hex characters)") from None
        if len(raw) != 32 or text != raw.hex():
            raise StoreError(f"identity key {path} is corrupt (expected 64 lowercase hex characters)")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Identity({self.public_hex[:16]}…)"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _public_key(public_hex: str) -> Ed25519PublicKey | None:
    try:
        raw = bytes.fromhex(public_hex)
        if len(raw) != 32:
            return None
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        return None


def verify_signature(public_hex: str, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is ``public_hex``'s Ed25519 signature of ``message``."""
    key = _public_key(public_hex)
    if key is None or len(signature) != 64:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class SignatureVerifier:
    """Verification with a cache of parsed public keys and, optionally, of results.

    ``cache_size`` > 0 keeps an LRU of verdicts keyed by (key, sig, sha256(message)): the simulator shares
    one verifier across all simulated nodes so each event is verified once, not once per node.
    """

    def __init__(self, cache_size: int = 0, key_cache_size: int = 4096) -> None:
        self.cache_size = cache_size
        self._results: OrderedDict[tuple[str, bytes, bytes], bool] = OrderedDict()
        self._keys: OrderedDict[str, Ed25519PublicKey | None] = OrderedDict()
        self._key_cache_size = key_cache_size
        self.verified = 0
        self.cache_hits = 0

    def _key(self, public_hex: str) -> Ed25519PublicKey | None:
        key = self._keys.get(public_hex)
        if key is not None:
            self._keys.move_to_end(public_hex)
            return key
        key = _public_key(public_hex)
        if key is not None:
            self._keys[public_hex] = key
            if len(self._keys) > self._key_cache_size:
                self._keys.popitem(last=False)
        return key

    def verify(self, public_hex: str, signature: bytes, message: bytes) -> bool:
        triple: tuple[str, bytes, bytes] | None = None
        if self.cache_size > 0:
            # keyed by the message's SHA-256, not the message: the cache stays small
            triple = (public_hex, signature, hashlib.sha256(message).digest())
            hit = self._results.get(triple)
            if hit is not None:
                self._results.move_to_end(triple)
                self.cache_hits += 1
                return hit
        key = self._key(public_hex)
        ok = False
        if key is not None and len(signature) == 64:
            self.verified += 1
            try:
                key.verify(signature, message)
                ok = True
            except InvalidSignature:
                ok = False
        if triple is not None:
            self._results[triple] = ok
            if len(self._results) > self.cache_size:
                self._results.popitem(last=False)
        return ok
