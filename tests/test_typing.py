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


def test_the_public_api_has_no_any() -> None:
    """Every public function, method and property of what p2pauction.api exports is typed
    precisely: no ``Any`` in a parameter or a return (a TypedDict or JSONValue says more)."""
    import inspect
    import typing

    from p2pauction import api

    found = []
    for name in api.__all__:
        obj = getattr(api, name)
        members = [(name, obj)] if inspect.isfunction(obj) else []
        if inspect.isclass(obj):
            members += [(f"{name}.{attr}", getattr(value, "fget", value)) for attr, value in vars(obj).items()
                        if (not attr.startswith("_") or attr == "__init__")
                        and (inspect.isfunction(value) or isinstance(value, property))]
        for label, func in members:
            module = sys.modules[func.__module__]
            hints = typing.get_type_hints(func, vars(module), vars(api))
            found += [f"{label}: {arg}" for arg, hint in hints.items() if "Any" in repr(hint)]
    assert not found, found
