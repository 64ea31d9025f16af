"""No import cycles among the package's modules (cals_bench and the folders installed under it).

The graph is read from the source (AST), not by importing: an edge ``a -> b`` is an import of module ``b``
(or of a name from it) written in ``a``. ``if TYPE_CHECKING:`` blocks never run and are left out.

- Module level (what runs when a module is imported): no cycle at all.
- Any level (function-level imports too): a cycle there means two modules call into each other (the
  audit page and the leaderboard once rendered each other). Those that remain are listed below, each with
  the reason it is a deliberate lazy import, and the list must match what the source holds: a new cycle
  fails, and so does an entry whose cycle is gone (delete it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]

# Function-level cycles kept on purpose: frozenset of the modules in the cycle -> why.
KNOWN_LAZY_CYCLES: dict[frozenset[str], str] = {
    frozenset({"cals_bench.face.mobilefacenet", "cals_bench.face.recognize"}): (
        "the recogniser registry imports the optional MobileFaceNet backend on first use; it registers itself"
    ),
    frozenset({"cals_bench.enhancer", "cals_bench.submit.wrap"}): (
        "load_enhancer wraps a user's file or callable on demand; the wrapper subclasses Enhancer"
    ),
    frozenset({"cals_bench.store", "cals_bench.store_rebuild"}): (
        "a store whose index was deleted re-indexes its run folders on open (store_rebuild), and"
        " `runs rebuild` opens a store"
    ),
    frozenset({"cals_bench.train.cli", "cals_bench.train.seeds"}): (
        "the `train seeds` command is defined beside its seed loop, which reuses the train command's steps"
    ),
    frozenset({"cals_bench.train.config", "cals_bench.train.data", "cals_bench.train.sources"}): (
        "training configs resolve their data source by name from the source registry on use"
    ),
}


def _package_dirs() -> dict[str, Path]:
    """Package name -> folder, from pyproject's setuptools package-dir mapping."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapping = conf["tool"]["setuptools"]["package-dir"]
    return {name: REPO / folder for name, folder in mapping.items()}


def _modules() -> dict[str, Path]:
    mods = {}
    for prefix, folder in _package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            if name in mods and mods[name] != path:  # a folder that is both a mapped package and a subfolder
                continue
            mods[name] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module, module_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run: module-level ones only, or every one (TYPE_CHECKING blocks left out)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if not module_level:
                    visit(node.body)
            else:
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, ast.AST)])

    visit(tree.body)
    return found


def _graph(module_level: bool) -> dict[str, set[str]]:
    mods = _modules()

    def owner(name: str) -> str | None:
        while name:
            if name in mods:
                return name
            name = name.rpartition(".")[0]
        return None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8")), module_level):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name if is_pkg else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                # `from pkg import mod` imports the submodule; `from mod import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                dep = owner(target) if target.startswith("cals_bench") else None
                if dep and dep != name:
                    edges.add(dep)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


def _describe(cycle: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in sorted(cycle) for b in sorted(graph[a] & cycle)]
    return "; ".join(edges)


def test_the_graph_sees_the_package():
    graph = _graph(module_level=False)
    assert "cals_bench.engine" in graph
    assert "cals_bench.baselines.zero_dce" in graph
    assert "cals_bench.padding" in graph["cals_bench.baselines.zero_dce"]  # a module-level import
    assert "cals_bench.report.audit_page" in _graph(module_level=True)["cals_bench.report.site"]
    # a function-level import is an edge of the full graph only
    assert "cals_bench.features" in graph["cals_bench.engine"]
    assert "cals_bench.features" not in _graph(module_level=True)["cals_bench.engine"]
    # the cycle finder finds cycles
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_no_import_cycle_at_module_level():
    graph = _graph(module_level=True)
    cycles = _cycles(graph)
    assert not cycles, "import cycles at module level: " + " | ".join(_describe(c, graph) for c in cycles)


def test_function_level_cycles_are_the_listed_ones():
    graph = _graph(module_level=False)
    found = set(_cycles(graph))
    new = [_describe(c, graph) for c in found - set(KNOWN_LAZY_CYCLES)]
    assert not new, "new import cycles (break them, or list them with a reason): " + " | ".join(new)
    gone = [sorted(c) for c in set(KNOWN_LAZY_CYCLES) - found]
    assert not gone, f"listed cycles no longer in the source (delete them from KNOWN_LAZY_CYCLES): {gone}"


def test_report_pages_do_not_import_each_other():
    graph = _graph(module_level=False)
    assert "cals_bench.report.leaderboard" not in graph["cals_bench.report.audit_page"]
    assert "cals_bench.report.audit_page" not in graph["cals_bench.report.leaderboard"]
