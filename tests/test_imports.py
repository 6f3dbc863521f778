"""The package's modules import each other without a cycle, counting imports made
inside functions too: an import moved into a function to dodge a cycle is still one."""

from __future__ import annotations

import ast

from pulseboard.config import PROJECT_ROOT

SOURCE = PROJECT_ROOT / "src"


def modules() -> dict[str, tuple[ast.Module, bool]]:
    """Every module of the package by dotted name: its syntax tree, and whether a package."""
    found = {}
    for path in (SOURCE / "pulseboard").rglob("*.py"):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = (ast.parse(path.read_text()), is_package)
    return found


def imported(name: str, tree: ast.Module, is_package: bool, known) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in it."""
    targets = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = name.split(".")[: None if is_package else -1]
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            if f"{target}.{alias.name}" in known:
                targets.add(f"{target}.{alias.name}")
            # ``from . import bp``: a blueprint package defines bp before loading its
            # route modules, the pattern Flask documents; anything else counts.
            elif alias.name != "bp" and target in known:
                targets.add(target)
    return targets


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_module_imports_itself_through_others():
    known = modules()
    graph = {name: imported(name, tree, pkg, known) - {name} for name, (tree, pkg) in known.items()}
    assert cycles(graph) == []
