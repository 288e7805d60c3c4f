"""Structure rules the code keeps: a one-way Platform seam and a domain core free of Temporal.

Built from the source with the stdlib ``ast`` (nothing is imported), so a violation fails here with the
offending module named, before it shows up as an import error or a cycle at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "flywheel"
APP_PACKAGES = ("flywheel", "activities", "workflows", "workers", "starter")
PLATFORM_KINDS = {"local", "nemo_v1", "nemo_v2"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def core_modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in sorted(CORE.rglob("*.py"))}


def imported_modules(tree: ast.AST, known: set[str]) -> set[str]:
    """Project modules a module imports anywhere (top level or inside functions). ``from pkg import sub``
    points at the submodule when ``sub`` is one; implicit parent-package imports are not counted."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & known
            if len(subs) < len(node.names) and node.module in known:
                out.add(node.module)
            out.update(subs)
    return out


def import_graph() -> dict[str, set[str]]:
    trees = core_modules()
    known = set(trees)
    return {name: imported_modules(tree, known) - {name} for name, tree in trees.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative-free is not needed: the graph is small)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]


def test_no_import_cycle_inside_flywheel() -> None:
    cycles = [c for c in strongly_connected(import_graph()) if len(c) > 1]
    assert cycles == [], f"import cycles inside flywheel/: {cycles}"


def test_value_types_do_not_depend_on_platforms() -> None:
    graph = import_graph()
    for name in ("flywheel.types", "flywheel.vocabulary", "flywheel.metrics", "flywheel.evaluator"):
        assert not {m for m in graph[name] if m.startswith("flywheel.platforms")}, name


def test_domain_core_never_imports_temporalio() -> None:
    offenders = []
    for name, tree in core_modules().items():
        for node in ast.walk(tree):
            roots = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{name}:{node.lineno}" for r in roots if r.split(".")[0] == "temporalio"]
    assert offenders == []


def _is_platform_kind_branch(node: ast.Compare) -> bool:
    """``<...>.kind == "local"``, ``platform.kind != ...``, ``kind in ("nemo_v1", ...)``."""
    sides = [node.left, *node.comparators]
    names = [s.attr if isinstance(s, ast.Attribute) else s.id if isinstance(s, ast.Name) else None for s in sides]
    if "kind" not in names:
        return False
    literals = {c.value for s in sides for c in ast.walk(s) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    chain = ast.unparse(node)
    return bool(literals & PLATFORM_KINDS) or "platform.kind" in chain


@pytest.mark.parametrize("package", [p for p in APP_PACKAGES])
def test_no_platform_kind_branch_outside_the_seam(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if (ROOT / "flywheel" / "platforms") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and _is_platform_kind_branch(node):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == [], "branch on the Platform's capabilities instead:\n" + "\n".join(offenders)


def test_kind_branch_detector_sees_a_branch() -> None:
    tree = ast.parse('x = settings.platform.kind == "local"\ny = store.kind == "sqlite"')
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Compare) and _is_platform_kind_branch(n)]
    assert len(found) == 1


def test_registry_mirrors_each_platforms_customization_queue() -> None:
    from flywheel import platforms

    for kind in platforms.registered_kinds():
        cls = platforms.platform_class(kind)
        assert cls.kind == kind
        assert platforms._entry(kind).customization_queue == cls.customization_queue, kind
