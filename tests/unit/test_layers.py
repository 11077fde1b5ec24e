"""Imports go one way: schemas <- domain <- config <- ports <- services|adapters <- runtime <- cli.

Reads every module's imports with `ast` (lazy and type-checking imports included: a seam in the
wrong place is wrong whether or not it runs at import time) and fails on an upward import, on
services and adapters reaching into each other, and on any cycle between modules.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS: dict[str, int] = {
    "schemas": 0,
    # The kernel: our error types and log formatting, which every layer may use.
    "processor.errors": 1,
    "processor.logs": 1,
    "processor.domain": 2,
    "processor.config": 3,
    "processor.simulation": 3,
    "processor.ports": 4,
    "processor.services": 5,
    "processor.adapters": 5,
    "processor.webhooks": 6,
    "processor.mail": 6,
    "processor.dashboard": 6,
    "processor.runtime": 7,
    "processor.cli": 8,
    "processor.__main__": 9,
}
"""Rank of each package: a module may import its own package and anything of a lower rank."""

SIBLINGS_APART = {frozenset({"processor.services", "processor.adapters"})}
"""Packages of one rank that must not import each other: use cases see ports, never adapters."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    paths = [*ROOT.glob("processor/**/*.py"), *ROOT.glob("schemas/**/*.py")]
    return {_module_name(path): path for path in paths}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in {"processor", "schemas"}}


def _layer_of(module: str) -> str:
    matches = [name for name in LAYERS if module == name or module.startswith(name + ".")]
    if not matches:
        msg = f"{module} belongs to no layer: add its package to LAYERS"
        raise AssertionError(msg)
    return max(matches, key=len)


MODULES = _modules()
GRAPH = {module: _imports(path) for module, path in MODULES.items()}


def test_every_module_belongs_to_a_layer() -> None:
    """A new top-level module must be placed in a layer, not left beside them."""
    unplaced = [m for m in MODULES if m not in {"processor", "schemas"} and not _safe_layer(m)]
    assert unplaced == []


def _safe_layer(module: str) -> bool:
    try:
        _layer_of(module)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in {"processor", "schemas"}))
def test_imports_point_down(module: str) -> None:
    """A module imports its own package or lower layers; services and adapters stay apart."""
    layer = _layer_of(module)
    upward = []
    for imported in GRAPH[module]:
        if imported in {"processor", "schemas"}:
            continue
        target = _layer_of(imported)
        if target == layer:
            continue
        if LAYERS[target] > LAYERS[layer]:
            upward.append(f"{imported} ({target} is above {layer})")
        elif LAYERS[target] == LAYERS[layer] or frozenset({layer, target}) in SIBLINGS_APART:
            upward.append(f"{imported} ({target} is beside {layer})")
    assert upward == []


def test_no_module_imports_in_a_cycle() -> None:
    """No two modules import each other, directly or through others."""
    graph = {module: {i for i in imports if i in MODULES} for module, imports in GRAPH.items()}
    # A package's own __init__ may name its modules (the CLI registers its commands that way).
    # `from package import module` inside the package itself names the package: not an edge.
    graph = {
        m: {i for i in deps if not m.startswith(i + ".") and i != m} for m, deps in graph.items()
    }
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_layer_test_sees_an_upward_import(tmp_path: Path) -> None:
    """The reader finds lazy imports inside functions too (how the CLI cycle used to hide)."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from processor.cli import main\n    return main\n")
    assert _imports(module) == {"processor.cli"}
