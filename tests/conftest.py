"""Shared fixtures. Process helpers live in ``tests/procs.py`` (import them from there)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Start bootstrap/node processes with ``cluster.bootstrap()`` / ``cluster.node("C1")``;
    every one of them is stopped (SIGTERM, then SIGKILL) when the test ends."""
    with Cluster(tmp_path) as c:
        yield c
