"""The house has floors: no import circle between modules of kpop_helpers, and no import from a floor up.

The floors are read from docs/design.md ("Floors"), the one place they are written down. Every import
counts, also those inside functions and under TYPE_CHECKING: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

PACKAGE = "kpop_helpers"
ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"

# Arrows still being moved by a change in flight, as (file, imported module): allowed, and ignored by the
# circle check, until that change is merged; then remove them. Empty now: the sampling rewrite's one arrow up
# (compress/sampling.py -> export.parity) already runs down to kpop_helpers.runners.
KNOWN_PENDING: set[tuple[str, str]] = set()


def documented_floors() -> dict[str, int]:
    """Unit (a subpackage or top-level module of kpop_helpers, or kpop_helpers itself) -> floor, from design.md."""
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split("## Floors", 1)[1].split("\n## ", 1)[0]
    floors: dict[str, int] = {}
    for line in section.splitlines():
        row = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if row:
            for name in re.findall(r"`([\w.]+)`", row.group(2)):
                floors[name.removesuffix("/").removesuffix(".py")] = int(row.group(1))
    return floors


@lru_cache(maxsize=1)
def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (`from a import b` counts as a.b if a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a.b -> a.b
                target = target.rpartition(".")[0]
            if target.split(".")[0] == PACKAGE and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def unit_of(module: str) -> str:
    """The floor-plan unit of a module: its subpackage or top-level module (kpop_helpers itself for the face)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def relative_file(module: str) -> str:
    """The module's file, relative to the repository."""
    return module_files()[module].relative_to(ROOT).as_posix()


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules tied in circles: each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def closed_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return component


def test_every_unit_has_a_floor():
    floors = documented_floors()
    units = {unit_of(module) for module in module_files()}
    assert not units - set(floors), f"give these a floor in docs/design.md 'Floors': {sorted(units - set(floors))}"
    assert not set(floors) - units, f"design.md 'Floors' names what does not exist: {sorted(set(floors) - units)}"


def test_no_import_circles():
    graph = import_graph()
    pending = {(module, target) for module in graph for target in graph[module]
               if (relative_file(module), target) in KNOWN_PENDING}
    for module, target in pending:
        graph[module].discard(target)
    circles = find_cycles(graph)
    assert not circles, "import circles:\n" + "\n".join(
        " -> ".join(closed_path(graph, tied)) + f"  (tied together: {', '.join(tied)})" for tied in circles)


def test_imports_only_run_down_the_floors():
    floors = documented_floors()
    upward = []
    for module, targets in sorted(import_graph().items()):
        here = unit_of(module)
        for target in sorted(targets):
            there = unit_of(target)
            if there == here or floors[there] < floors[here]:
                continue
            if (relative_file(module), target) in KNOWN_PENDING:
                continue
            upward.append(f"{relative_file(module)} -> {target} (floor {floors[here]} {here} imports floor "
                          f"{floors[there]} {there})")
    assert not upward, "imports that do not run down the floors:\n" + "\n".join(upward)


def test_known_pending_is_still_needed():
    graph = import_graph()
    present = {(relative_file(module), target) for module, targets in graph.items() for target in targets}
    stale = KNOWN_PENDING - present
    assert not stale, f"no longer imported, remove from KNOWN_PENDING: {sorted(stale)}"
