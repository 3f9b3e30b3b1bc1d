"""The package's modules import one another without circles.

The graph is read from the source with :mod:`ast` (nothing is imported), so an import inside a
function counts as much as one at the top: a function-level import only hides a circle until
the day someone moves it up. A module importing its own package (``cnnlab.models.vgg`` ->
``cnnlab.models``) is not counted, as Python loads the package first anyway. Loading a declared
list of plugin modules by name (``cnnlab.registry.MODEL_MODULES`` through ``importlib``) is not
an import statement and is not counted: the registry names the modules that register into it,
as an entry-point list would, and imports none of their code into its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cnnlab

SRC = Path(cnnlab.__file__).resolve().parent.parent
PACKAGE = "cnnlab"


def _modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    mods = {}
    for path in sorted((src / package).rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(parts)] = path
    return mods


def _resolve(target: str, mods: dict[str, Path]) -> str | None:
    """The module a dotted import target lives in (``a.b.name`` -> ``a.b``), or None."""
    while target and target not in mods:
        target = target.rpartition(".")[0]
    return target or None


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: {modules it imports}}`` over every ``import``/``from`` statement, at any depth."""
    mods = _modules(src, package)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1
                    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                # `from pkg import sub` imports the submodule `pkg.sub` when there is one
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                dep = _resolve(t, mods)
                if dep and dep != mod and not mod.startswith(dep + "."):
                    graph[mod].add(dep)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One closed path ``[a, b, ..., a]`` per strongly connected component of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[set[str]] = []

    def strong(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return [_path_in(comp, graph) for comp in comps]


def _path_in(comp: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest closed import path through the component's first module (breadth first)."""
    start = min(comp)
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return sorted(comp)  # unreachable for a strongly connected component


def _fmt(cycle: list[str]) -> str:
    return " -> ".join(cycle)


def test_find_cycles_reports_a_closed_path():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert find_cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]
    assert find_cycles({"p.a": {"p.b"}, "p.b": set()}) == []


def test_function_level_imports_count(tmp_path):
    pkg = tmp_path / "pk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pk import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    graph = import_graph(tmp_path, "pk")
    assert graph["pk.b"] == {"pk.a"}
    assert find_cycles(graph) == [["pk.a", "pk.b", "pk.a"]]


def test_package_has_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    # each: a closed path, then every module caught in the same knot (its strongly connected
    # component: each reaches every other), as /work/shared/tools/import_cycles.py lists them
    knots = [sorted(_component(c[0], graph)) for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(
        f"{_fmt(c)}   (knot: {', '.join(k)})" for c, k in zip(cycles, knots))


def _component(start: str, graph: dict[str, set[str]]) -> set[str]:
    def reach(v, edges):
        seen, todo = {v}, [v]
        while todo:
            for w in edges[todo.pop()] - seen:
                seen.add(w)
                todo.append(w)
        return seen

    back = {v: {u for u in graph if v in graph[u]} for v in graph}
    return reach(start, graph) & reach(start, back)
