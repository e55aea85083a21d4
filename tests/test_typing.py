"""The public API is typed: the package, the README's Python API snippet and examples/ pass
``mypy --strict`` (run as a subprocess, as a user would run it on their own program)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                 reason="mypy is not installed (it is in the `test` extra)")]

ROOT = Path(__file__).resolve().parent.parent


def readme_python_blocks() -> list[str]:
    """The ```python blocks of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_readme_has_a_python_snippet() -> None:
    blocks = readme_python_blocks()
    assert blocks and "AuctionNode" in blocks[0]


def test_package_readme_snippet_and_examples_pass_mypy_strict(tmp_path: Path) -> None:
    files = []
    for number, block in enumerate(readme_python_blocks()):
        snippet = tmp_path / f"readme_snippet_{number}.py"
        snippet.write_text(block)
        files.append(str(snippet))
    files += [str(p) for p in sorted((ROOT / "examples").glob("*.py"))]
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
                           str(ROOT / "p2pauction"), *files], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=540, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
