"""The package's layers, read from its source: arrows point down, no circle, one owner each.

Run alone as the proof of the layout: `.venv/bin/python -m pytest tests/test_layers.py -v`.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vestige_embed"

#: Lower ranks are lower layers; a module imports its own layer or lower ones only.
RANKS = {
    "errors": 0,
    "target": 1,
    "embedders": 2,
    "settings": 2,
    "store": 3,
    "run": 4,
    "alembic": 5,
    "demo": 6,
    "cli": 7,
}
#: Layers that must not know Alembic exists (the engine serves Alembic, the CLI and tests alike).
WITHOUT_ALEMBIC = ("target", "embedders", "store", "run")
#: The statement builder (and its constructs): the only place SQL is written.
BUILDER = ("target/statements.py", "target/ddl.py")
#: A string that starts a statement.
_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|ALTER|CREATE|DROP|LOCK|ANALYZE|SET|COPY|DO)\s")


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("vestige_embed", *path.relative_to(PACKAGE).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = ast.parse(path.read_text(), str(path))
    return found


def imports_of(tree: ast.Module) -> set[str]:
    """Every module of ours this one imports, at any depth (function-level imports too)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


MODULES = modules()
GRAPH = {
    name: {imported for imported in imports_of(tree) if imported in MODULES and imported != name}
    for name, tree in MODULES.items()
}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) in RANKS))
def test_imports_point_down(module: str) -> None:
    own = RANKS[layer(module)]
    upward = sorted(i for i in GRAPH[module] if layer(i) in RANKS and RANKS[layer(i)] > own)
    assert not upward, f"{module} imports from a higher layer: {upward}"


def test_no_import_circle() -> None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for nxt in sorted(GRAPH[name]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) in WITHOUT_ALEMBIC))
def test_the_engine_never_imports_alembic(module: str) -> None:
    third_party = {i for i in imports_of(MODULES[module]) if i == "alembic" or i.startswith("alembic.")}
    assert not third_party, f"{module} imports {sorted(third_party)}"


def test_only_settings_read_the_environment() -> None:
    readers = sorted(
        name
        for name, tree in MODULES.items()
        if any(isinstance(n, ast.Attribute) and n.attr in {"environ", "getenv"} for n in ast.walk(tree))
    )
    assert readers == ["vestige_embed.settings.config"]


def test_value_types_import_nothing_of_ours_but_errors_and_each_other() -> None:
    value_types = ("vestige_embed.target.signature", "vestige_embed.target.target", "vestige_embed.run.plan")
    allowed = {"vestige_embed.errors", "vestige_embed.target", *value_types}
    for name in value_types:
        ours = {i for i in imports_of(MODULES[name]) if i.startswith("vestige_embed")}
        assert ours <= allowed | {f"{a}.{n}" for a in allowed for n in ("ModelSignature", "ConfigError")}, name


def test_sql_is_written_only_in_the_statement_builder() -> None:
    """No `text()`, no string or f-string statement executed, no string that starts a statement."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in BUILDER:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(d) for d in _docstrings(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                if called == "text" or (called == "execute" and node.args and _is_string(node.args[0])):
                    offenders.append(f"{relative}:{node.lineno}: {called}(...)")
            constant = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            if constant and _STATEMENT.search(node.value):  # type: ignore[attr-defined]
                offenders.append(f"{relative}:{node.lineno}: {node.value[:60]!r}")
            if isinstance(node, ast.JoinedStr) and node.values:
                head = node.values[0]
                if isinstance(head, ast.Constant) and _STATEMENT.search(str(head.value)):
                    offenders.append(f"{relative}:{node.lineno}: f-string {str(head.value)[:60]!r}")
    assert not offenders, "SQL outside the statement builder:\n" + "\n".join(offenders)


def _is_string(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _docstrings(tree: ast.Module) -> list[ast.Constant]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.append(first.value)
    return found


def test_the_command_starts_without_loading_the_database_or_model_libraries() -> None:
    """`vestige --help` stays fast: the CLI and the package import no heavy library."""
    heavy = ("sqlalchemy", "numpy", "psycopg", "fastembed", "onnxruntime", "alembic", "pgvector")
    probe = f"import sys, vestige_embed.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_loads_from_the_package() -> None:
    import vestige_embed

    assert set(vestige_embed._EXPORTS) == set(vestige_embed.__all__)
    for name in vestige_embed.__all__:
        assert getattr(vestige_embed, name) is getattr(importlib.import_module(vestige_embed._EXPORTS[name]), name)
