"""The API example under examples/ runs as a program and ends with the expected winner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embed.py"


def test_embed_example_runs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path)], capture_output=True, text=True,
                          timeout=90, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "bob wins Guitar at 110 USDt"
    assert "alice closed: bob wins Guitar at 110 USDt" in lines
    assert any(line.startswith("[alice feed] alice opens Guitar") and line.endswith("(own)") for line in lines)
    assert any(line.startswith("[alice feed] bob bids 110 USDt on Guitar") and "(own)" not in line
               for line in lines)
    assert (tmp_path / "alice" / "store.db").exists() and (tmp_path / "bob" / "store.db").exists()
