"""The mutation script (benchmarks/mutants.py) itself: stale snippets are reported, not crashed on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mutants.py"


@pytest.fixture(scope="module")
def mutants() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutants_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_apply_edits_only_the_copy_and_reports_stale_or_ambiguous_snippets(mutants: ModuleType,
                                                                           tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    target = tmp_path / "pkg" / "rule.py"
    target.write_text("x = min(a, b)\ny = 1\ny = 1\n", encoding="utf-8")

    def mutant(original: str, file: str = "pkg/rule.py") -> object:
        return mutants.Mutant("m", file, original, "REPLACED", "test mutant", ())

    status, saved = mutants.apply(tmp_path, mutant("min(a, b)"))
    assert status is None and saved == "x = min(a, b)\ny = 1\ny = 1\n"
    assert target.read_text(encoding="utf-8").startswith("x = REPLACED\n")
    target.write_text(saved, encoding="utf-8")
    status, reason = mutants.apply(tmp_path, mutant("max(a, b)"))
    assert status == "SNIPPET NOT FOUND" and "update the mutant" in reason
    status, reason = mutants.apply(tmp_path, mutant("y = 1"))
    assert status == "SNIPPET AMBIGUOUS" and "2 times" in reason
    status, reason = mutants.apply(tmp_path, mutant("x", file="pkg/moved.py"))
    assert status == "SNIPPET NOT FOUND" and "does not exist" in reason
    assert target.read_text(encoding="utf-8") == saved  # failed applications change nothing


def test_every_mutant_names_a_test_and_a_unique_name(mutants: ModuleType) -> None:
    names = [m.name for m in mutants.MUTANTS]
    assert len(names) == len(set(names))
    assert all(m.tests and all("::" in t for t in m.tests) for m in mutants.MUTANTS)


def test_every_named_test_exists(mutants: ModuleType) -> None:
    """A renamed test would make the script's baseline run fail: keep the names in step."""
    root = SCRIPT.parents[1]
    for m in mutants.MUTANTS:
        for node in m.tests:
            path, name = node.split("::")
            assert f"def {name.split('[')[0]}(" in (root / path).read_text(encoding="utf-8"), (m.name, node)
