"""`vestige migrate status`: what an operator checks before, during and after a model change.

Reading never fails on a store that is only half there: each part that is missing or
disagrees with another becomes a problem, a sentence that names it and its fix.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from vestige_embed.errors import ReembedError
from vestige_embed.store import catalog
from vestige_embed.store.registry import RegistryRow, find_registry
from vestige_embed.target import ModelSignature, ModelState, Statements, Target
from vestige_embed.target.statements import REGISTRY, compiled

#: The key of the problem list in the status dict (and in `--json`).
PROBLEMS = "problems"


def store_status(conn: Connection, target: Target) -> dict[str, Any]:
    """Registry, column, index, rows and staging of one target, as one JSON-able dict."""
    st = Statements(target)
    if not _table_exists(conn, st):
        return {
            "target": target.describe(),
            "store": "absent",
            PROBLEMS: [
                f"table {target.table} (or its column {target.key}) does not exist in this database: "
                "run `alembic upgrade head` (or `make upgrade`), or name your table with --table/--key"
            ],
        }
    problems: list[str] = []
    try:
        registry = find_registry(conn, target)
    except ReembedError as e:  # 0.1's registry: the message says which revision converts it
        registry = None
        problems.append(str(e))
    validity = catalog.index_validity(conn, st)
    column = catalog.column_dimension(conn, st)
    staged = catalog.count(conn, st.count_staged()) if catalog.staging_exists(conn, st) else None
    status: dict[str, Any] = {
        "target": target.describe(),
        "registry": None if registry is None else _registry_json(registry),
        "search_may_be_served": registry is not None and registry.state is ModelState.READY,
        "column_dimension": column,
        "index": {"name": target.index, "present": validity is not None, "valid": validity},
        "rows": catalog.count(conn, st.count_rows()),
        "rows_without_embedding": catalog.count(conn, st.count_rows_without_vector()),
        "staged_rows": staged,
    }
    if registry is None and not problems:
        problems.append(
            f"{target.describe()} has no row in {REGISTRY}: vestige-embed does not know which model its vectors "
            "are in, and search refuses. Run `alembic upgrade head` (the base revision registers "
            "knowledge_nodes); for your own table, call `vestige_embed.register_target` in a revision"
        )
    if registry is not None:
        problems += _registry_problems(target, registry, column)
        if staged:
            problems += _staging_problems(conn, st, registry.signature, staged)
    if registry is None or registry.state is ModelState.READY:  # an unfinished change builds its own index
        problems += _index_problems(st, validity)
    status[PROBLEMS] = problems
    return status


def _registry_json(registry: RegistryRow) -> dict[str, Any]:
    updated = registry.updated_at.isoformat()
    return {**registry.signature.to_json(), "state": registry.state.value, "updated_at": updated}


def _table_exists(conn: Connection, st: Statements) -> bool:
    return catalog.column_type(conn, st, st.target.key) is not None


def _registry_problems(target: Target, registry: RegistryRow, column: int | None) -> list[str]:
    model = registry.signature
    if registry.state is not ModelState.READY:
        return [
            f"a change of {target.describe()} away from {model.name} has not finished (registry state "
            f"'{registry.state.value}'): search refuses until it does. Re-run the command that started it "
            "(`alembic upgrade head` or `vestige migrate reembed ...`); it resumes"
        ]
    if column is not None and column != model.dimension:
        return [
            f"{target.describe()} is vector({column}) but the registry says {model.name} makes "
            f"{model.dimension}-d vectors: the column was changed outside vestige-embed. Re-embed to the "
            f"model you want: `vestige migrate reembed --model NAME --dimension N`"
        ]
    return []


def _staging_problems(conn: Connection, st: Statements, serving: ModelSignature, staged: int) -> list[str]:
    if catalog.registry_shape(conn) is not catalog.RegistryShape.CURRENT:
        return []
    row = conn.execute(st.read_staged_model()).first()
    if row is None or row[0] is None:
        return []
    if (row[0], row[1], row[2]) == (serving.name, serving.dimension, serving.hash):
        return [
            f"the staging table holds {staged:,} vectors of {serving.name}, the model the store already "
            f"serves: nothing will use them. Drop it: `vestige migrate stage --drop` (with the same --table)"
        ]
    return []


def _index_problems(st: Statements, validity: bool | None) -> list[str]:
    if validity is True:
        return []
    name = st.target.index
    build = compiled(st.create_index(concurrently=True))
    if validity is None:
        return [f"the HNSW index {name} is missing: search scans every row. Build it: {build};"]
    return [  # False: INVALID
        f"the HNSW index {name} is INVALID (an interrupted CREATE INDEX CONCURRENTLY): search cannot use "
        f"it. Rebuild it: {compiled(st.drop_index(concurrently=True))}; then {build};"
    ]


def format_status(status: dict[str, Any]) -> str:
    """The human form: one `key: value` line each, nested keys dotted; problems last, one a line."""
    lines: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            lines.append(f"{prefix}: {'-' if value is None else value}")

    walk("", {k: v for k, v in status.items() if k != PROBLEMS})
    problems = status.get(PROBLEMS) or []
    lines += [f"problem: {p}" for p in problems] or ["problems: none"]
    return "\n".join(lines)
