"""The pipeline's shape: one stage per folder, no import cycle between first-party modules, and no module of an
earlier stage importing a later one. Imports are read with `ast`, so nothing is executed; imports inside
functions count too, and only `if TYPE_CHECKING:` blocks are left out (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "models", "device_runners", "reports", "suites")

# The stages in pipeline order (README, "Architecture"): a module may import its own stage and earlier ones.
# Longest prefix wins, so `harness.measure` is stage 4 while `harness` alone (the package's version) is 0.
STAGES = {
    "harness": 0, "harness.common": 0,  # shared by every stage: cache paths, hashing, the option registry
    "models": 1,
    "harness.artifacts": 2,
    "device_runners": 3,
    "harness.measure": 4,
    "harness.accuracy": 5,
    "harness.store": 6,
    "harness.gate": 7,
    "reports": 8,
    "harness.run": 9,  # the session: spec → artifact → device bench → store → verdict
    "harness.cli": 10, "harness.__main__": 10, "suites": 10,  # entry points: they may import anything
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """First-party modules a file imports at run time (resolving `from pkg import module`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules}


def stage(module: str) -> int:
    matches = [prefix for prefix in STAGES if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"{module} belongs to no stage: add its folder to STAGES (and the README's diagram)")
    return STAGES[max(matches, key=len)]


def graph() -> dict[str, set[str]]:
    modules = first_party_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node], path[len(path):] = 1, [node]
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(edges):
        if start not in state and (cycle := walk(start)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_no_stage_imports_a_later_stage():
    backwards = sorted(f"{m} (stage {stage(m)}) imports {d} (stage {stage(d)})"
                       for m, deps in graph().items() for d in deps
                       # a package's __init__ may not exist as a stage of its own; parents import children freely
                       if stage(d) > stage(m) and not d.startswith(m + "."))
    assert not backwards, "\n".join(backwards)


def test_the_checks_can_fail():
    """The two walks above find what they look for: a cycle and a backwards import planted in a fake graph."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert stage("harness.store.store") > stage("harness.measure.bench") > stage("models.spec")
    with pytest.raises(AssertionError, match="belongs to no stage"):
        stage("elsewhere.module")
