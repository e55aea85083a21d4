"""Identities: deterministic keys, the 0600 key file, verification."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from p2pauction.errors import StoreError, UsageError
from p2pauction.state.identity import Identity, SignatureVerifier, verify_signature


def test_seeded_identity_is_deterministic() -> None:
    a, b = Identity.generate(b"\x07" * 32), Identity.generate(b"\x07" * 32)
    assert a.public_hex == b.public_hex and len(a.public_hex) == 64 and a.public_hex == a.public_hex.lower()
    assert Identity.generate(b"\x08" * 32).public_hex != a.public_hex
    with pytest.raises(UsageError):
        Identity.generate(b"short")


def test_sign_and_verify() -> None:
    ident = Identity.generate(b"\x01" * 32)
    sig = ident.sign(b"hello")
    assert len(sig) == 64
    assert verify_signature(ident.public_hex, sig, b"hello")
    assert not verify_signature(ident.public_hex, sig, b"hellO")
    assert not verify_signature(Identity.generate(b"\x02" * 32).public_hex, sig, b"hello")
    assert not verify_signature("zz" * 32, sig, b"hello")
    assert not verify_signature(ident.public_hex, sig[:-1], b"hello")


def test_verifier_cache() -> None:
    ident = Identity.generate(b"\x01" * 32)
    sig = ident.sign(b"m")
    v = SignatureVerifier(cache_size=2)
    assert v.verify(ident.public_hex, sig, b"m") and v.verify(ident.public_hex, sig, b"m")
    assert v.verified == 1 and v.cache_hits == 1
    assert not v.verify(ident.public_hex, sig, b"x") and not v.verify(ident.public_hex, sig, b"x")
    uncached = SignatureVerifier()
    assert uncached.verify(ident.public_hex, sig, b"m") and uncached.verify(ident.public_hex, sig, b"m")
    assert uncached.verified == 2


def test_key_file_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    first = Identity.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Identity.load_or_create(path).public_hex == first.public_hex
    assert [p.name for p in tmp_path.iterdir()] == ["identity.key"]     # no temp file left


def test_key_file_with_loose_permissions_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    Identity.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        Identity.load_or_create(path)


@pytest.mark.parametrize("content", ["", "not hex", "ab" * 31, "AB" * 32, "ab" * 33])
def test_corrupt_key_file_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "identity.key"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(StoreError, match="corrupt"):
        Identity.load_or_create(path)


def test_stale_temp_file_and_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    (tmp_path / f".identity.key.{os.getpid()}.tmp").write_text("junk")
    Identity.load_or_create(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.key"]
    with pytest.raises(StoreError, match="cannot create"):
        Identity.load_or_create(tmp_path / "missing" / "identity.key")
