"""No import circles among p2pauction's modules, nor among the simulator's: the arrows run one way
(cli -> node/api -> feeds/results/render -> gossip/state; and in simulations/, clock -> process ->
network -> engine -> nodes/faults/checker/workloads/hostile -> runner -> report/replay/sweep/cli).

Every import counts, also those inside functions and under TYPE_CHECKING: a lazy import hides a
circle from the interpreter, not from the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "p2pauction"
SIMULATOR_DIR = ROOT / "simulations"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module the file ``path`` (module ``name``) imports, anywhere in it, absolute names;
    ``from package import x`` is module ``package.x`` when that is one of ``modules``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return targets


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports."""
    files = sorted(package_dir.rglob("*.py"))
    modules = {module_name(f, package_dir.parent) for f in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        name = module_name(path, package_dir.parent)
        graph[name] = {t for t in imports_of(path, name, modules) if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_among_p2pauction_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_product_layer_imports_run_one_way() -> None:
    graph = import_graph()
    assert "p2pauction.cli" not in set().union(*(graph[m] for m in graph if m != "p2pauction.__main__"))
    for lower in ("p2pauction.node", "p2pauction.feeds", "p2pauction.results", "p2pauction.render",
                  "p2pauction.demo", "p2pauction.bootstrap"):
        assert "p2pauction.api" not in graph[lower], f"{lower} imports the API facade"


def test_no_import_cycles_among_simulator_modules() -> None:
    found = cycles(import_graph(SIMULATOR_DIR))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


# The simulator's layers, lowest first: a module may import only from its own layer or below.
SIMULATOR_LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"clock", "process", "storage", "standin"}),
    frozenset({"network"}),
    frozenset({"engine"}),
    frozenset({"nodes", "faults", "views_check", "checker", "context", "workloads", "hostile"}),
    frozenset({"runner"}),
    frozenset({"report", "replay", "progress", "sweep", "cli", "seeds", "__main__"}),
)


def test_simulator_imports_point_down_the_layers() -> None:
    graph = import_graph(SIMULATOR_DIR)
    layer_of = {f"simulations.{m}": i for i, layer in enumerate(SIMULATOR_LAYERS) for m in layer}
    layer_of["simulations"] = len(SIMULATOR_LAYERS) - 1
    assert set(graph) <= set(layer_of), f"modules in no layer: {sorted(set(graph) - set(layer_of))}"
    upward = [f"{m} -> {t}" for m in sorted(graph) for t in sorted(graph[m]) if layer_of[t] > layer_of[m]]
    assert not upward, "imports pointing up: " + "; ".join(upward)


def test_the_simulator_does_not_import_the_testbed() -> None:
    """The deterministic simulator stays apart from the real-process test bed (testbed/)."""
    found = [f"{module_name(path)} -> {target}"
             for path in sorted(SIMULATOR_DIR.rglob("*.py"))
             for target in sorted(imports_of(path, module_name(path), set()))
             if target.split(".")[0] == "testbed" or target.split(".")[-1] in {"testbed", "netns"}]
    assert not found, "the simulator imports the test bed: " + "; ".join(found)
    assert not (SIMULATOR_DIR / "testbed.py").exists() and not (SIMULATOR_DIR / "netns.py").exists()


def test_function_level_and_type_checking_imports_count(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    (package / "b.py").write_text("def f() -> None:\n    from pkg import c\n")
    (package / "c.py").write_text("from . import a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_checker_finds_a_planted_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
