"""The house's layers hold, read from every import with ast (function-level ones too, so a lazy import
cannot hide an edge):

- campaigns/ (the domain) never imports workers/ (the engine);
- inside workers/, each wing imports only the wings below it (WINGS, docs/DESIGN.md's map), and the
  three that run the pipeline's steps (dispatch, dialing, housekeeping) never import each other;
- no module of campaigns/, workers/ or simulator/ is part of an import circle;
- an import inside a function says why on its line (an optional dependency, or a measured start-up cost).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("campaigns", "workers", "simulator")

# workers/ from the top down. A wing may import the wings on the rows below its own, never one on its
# own row or above; `core` is workers/'s own top-level modules (pg, redis_keys, queues).
WINGS: list[tuple[str, ...]] = [
    ("entrypoints",),
    ("runtime",),
    ("dispatch", "dialing", "housekeeping"),
    ("callbacks",),
    ("metrics",),
    ("ratelimit",),
    ("providers",),
    ("core",),
]
RANK = {wing: len(WINGS) - row for row, names in enumerate(WINGS) for wing in names}
MAX_TOP_LEVEL_MODULES = 6
# The reason an import inside a function must give, on its own line.
DEFERRED_IMPORT_REASON = re.compile(r"#.*\b(optional dependency|start-up)\b")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(path: Path) -> str:
    module = _module_name(path)
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _sources(*packages: str) -> list[Path]:
    return [path for package in packages for path in sorted((REPO / package).rglob("*.py"))]


def imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` (a module of `package`) imports, anywhere in it, as absolute dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def wing_of(module: str) -> str | None:
    """The wing of a workers/ module (`core` for workers/'s own top-level modules); None outside workers/."""
    parts = module.split(".")
    if parts[0] != "workers":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "core"


def wing_violations(edges: list[tuple[str, str]]) -> list[str]:
    """The edges (importer, imported) of workers/ that run sideways or up between wings."""
    found = []
    for importer, imported in edges:
        above, below = wing_of(importer), wing_of(imported)
        if above is None or below is None or above == below or imported == "workers":
            continue
        if RANK[below] >= RANK[above]:
            found.append(f"{importer} ({above}) imports {imported} ({below})")
    return found


def _edges(*packages: str) -> list[tuple[str, str]]:
    edges = []
    for path in _sources(*packages):
        module = _module_name(path)
        edges += [(module, name) for name in sorted(imported_modules(path.read_text(), _package_of(path)))]
    return edges


def import_circles(edges: list[tuple[str, str]], modules: set[str]) -> list[list[str]]:
    """The circles (strongly connected groups of two or more modules) among
    `modules`, an imported name counting as the module it names (`a.b.c` where `a.b.c` is not a module
    but `a.b` is: a name taken from `a.b`)."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for importer, name in edges:
        target = name
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if importer in graph and target and target != importer:
            graph[importer].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def deferred_imports_without_a_reason(source: str) -> list[int]:
    """Lines of imports made inside a function whose line gives no reason for the deferral."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    if not DEFERRED_IMPORT_REASON.search(lines[inner.lineno - 1]):
                        found.append(inner.lineno)
    return sorted(set(found))


def test_the_domain_never_imports_the_engine() -> None:
    assert [f"{a} imports {b}" for a, b in _edges("campaigns") if _inside(b, "workers")] == []


def test_each_wing_of_the_engine_imports_only_the_wings_below_it() -> None:
    assert wing_violations(_edges("workers")) == []


def test_every_wing_of_the_engine_is_on_the_map() -> None:
    packages = {path.parent.name for path in (REPO / "workers").glob("*/__init__.py")}
    assert packages == set(RANK) - {"core"}


def test_the_engine_keeps_few_modules_at_its_top_level() -> None:
    modules = [path.name for path in (REPO / "workers").glob("*.py") if path.name != "__init__.py"]
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_no_module_is_part_of_an_import_circle() -> None:
    edges = _edges(*PACKAGES)
    modules = {_module_name(path) for path in _sources(*PACKAGES)}
    assert import_circles(edges, modules) == []


def test_every_import_inside_a_function_says_why() -> None:
    found = {
        str(path.relative_to(REPO)): lines
        for path in _sources("campaigns", "workers")
        if (lines := deferred_imports_without_a_reason(path.read_text()))
    }
    assert found == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f():\n    from workers.dialing import x\n", "workers.dialing"),
        ("import workers.entrypoints.cli as c\n", "workers.entrypoints.cli"),
        ("from .entrypoints import demo\n", "workers.entrypoints.demo"),
    ],
)
def test_the_import_reader_sees_function_level_aliased_and_relative_imports(
    source: str, expected: str
) -> None:
    assert expected in imported_modules(source, "workers")


def test_the_wing_check_refuses_an_import_upwards_or_sideways() -> None:
    edges = [
        ("workers.metrics.counters", "workers.callbacks.applier_thread"),  # up
        ("workers.dialing.chunk", "workers.housekeeping.reaper"),  # sideways
        ("workers.dialing.chunk", "workers.callbacks.urls"),  # down: fine
        ("workers.ratelimit.cps", "workers.redis_keys"),  # to core: fine
    ]
    assert wing_violations(edges) == [
        "workers.metrics.counters (metrics) imports workers.callbacks.applier_thread (callbacks)",
        "workers.dialing.chunk (dialing) imports workers.housekeeping.reaper (housekeeping)",
    ]


def test_the_circle_finder_finds_a_circle_through_a_name_taken_from_a_module() -> None:
    modules = {"a.one", "a.two", "a.three"}
    edges = [("a.one", "a.two.thing"), ("a.two", "a.three"), ("a.three", "a.one"), ("a.three", "os")]
    assert import_circles(edges, modules) == [["a.one", "a.three", "a.two"]]
    assert import_circles(edges[1:], modules) == []


def test_a_deferred_import_without_a_reason_is_found() -> None:
    source = (
        "def f():\n"
        "    import json\n"
        "    import yaml  # optional dependency: only the compose checks need it\n"
        "    from x import y  # start-up: 40 ms of imports a CLI command never uses\n"
    )
    assert deferred_imports_without_a_reason(source) == [2]
