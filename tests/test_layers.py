"""The layers hold: campaigns/ (the domain) never imports workers/ (the engine), and the engine never
imports an entry point (workers/entrypoints: CLI, API, demo). Every import is read with ast, including
those inside functions, so a lazy import cannot hide an edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINTS = "workers.entrypoints"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


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


def _edges(package_dir: str, forbidden: str, *, exempt: str | None = None) -> list[str]:
    edges = []
    for path in sorted((REPO / package_dir).rglob("*.py")):
        module = _module_name(path)
        if exempt and _inside(module, exempt):
            continue
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        names = imported_modules(path.read_text(), package)
        edges += [f"{module} imports {name}" for name in sorted(names) if _inside(name, forbidden)]
    return edges


def test_the_domain_never_imports_the_engine() -> None:
    assert _edges("campaigns", "workers") == []


def test_the_engine_never_imports_an_entry_point() -> None:
    assert _edges("workers", ENTRYPOINTS, exempt=ENTRYPOINTS) == []


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
