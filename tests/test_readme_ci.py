"""CI must see what a newcomer sees: .ci/run runs the README's set-up and test line verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_exactly_the_readme_test_line() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = re.search(r"## Quick start\n+```sh\n(.*?)```", readme, re.S)
    assert quick, "the README lost its Quick start block"
    demo, tests = quick.group(1).strip().splitlines()
    assert demo.endswith("p2pauction demo") and tests.endswith("python -m pytest -q")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert tests in ci_lines, f".ci/run does not run the README's line: {tests}"
    # ...and installs nothing the README's line does not (no extra pip install in CI).
    assert [line for line in ci_lines if "pip install" in line] == [tests]
