"""The offline (`alembic upgrade --sql`) form of a model change: a script a DBA runs with
`psql -v ON_ERROR_STOP=1`.

Embeddings cannot be computed in SQL, so the script applies vectors staged beforehand
by `vestige migrate stage`. A guard block checks that every row has a fresh staged
vector of the right size before anything changes; the rest is what the online path
does, statement for statement, from the same definitions.
"""

from __future__ import annotations

import sqlalchemy as sa

from vestige_embed import index, typmod
from vestige_embed.plan import ReembedPlan
from vestige_embed.registry import register_model, update_state
from vestige_embed.schema import (
    DIALECT,
    EMBEDDING,
    KNOWLEDGE_NODES,
    STAGING,
    ModelState,
    create_hnsw_index_sql,
    drop_hnsw_index_sql,
    knowledge_nodes,
    quoted,
    staging,
)
from vestige_embed.signature import ModelSignature
from vestige_embed.staging import apply_staged_statement, fresh_staged


def compiled(statement: sa.ClauseElement) -> str:
    return str(statement.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True})).strip()


def stage_command(target: ModelSignature) -> str:
    return f"vestige migrate stage --model {target.name} --dimension {target.dimension}"


def header(target: ModelSignature, plan: ReembedPlan) -> str:
    lines = [
        f"vestige-embed: re-embed {KNOWLEDGE_NODES} with {target.describe()}",
        f"model hash {target.hash}",
        "",
        "Run with: psql -v ON_ERROR_STOP=1 -f this-script.sql",
        "Before running it, stage the new vectors (search keeps working meanwhile):",
        f"    {stage_command(target)}",
        "The guard below stops the script, before any change, if a row has no fresh staged vector.",
        "",
        f"Locks: ACCESS EXCLUSIVE on {KNOWLEDGE_NODES} from the DROP INDEX to the end of the",
        "transaction (search is down, writes wait); lock_timeout "
        f"{plan.lock_timeout} makes the script fail instead of queueing behind long transactions.",
        f"The registry ({ModelState.REEMBEDDING.value} -> {ModelState.READY.value}) tells the application when it may search again.",
    ]
    return "\n".join(f"-- {line}".rstrip() for line in lines)


def guard_block(target: ModelSignature) -> str:
    """Stops the script before any change unless every row has a fresh staged vector.

    No `%` anywhere: Alembic's offline output doubles it for the driver's paramstyle.
    """
    s = staging.c
    missing = compiled(
        sa.select(sa.literal_column("count(*)"))
        .select_from(knowledge_nodes)
        .where(~fresh_staged(target).where(sa.func.vector_dims(s.embedding) == target.dimension))
    )
    command = _sql_text(stage_command(target))
    name = _sql_text(target.name)
    return f"""DO $vestige_guard$
DECLARE
    missing bigint;
BEGIN
    IF to_regclass('{quoted(STAGING)}') IS NULL THEN
        RAISE EXCEPTION 'vestige: table {STAGING} does not exist: nothing is staged for {name}. Run `{command}`, then run this script again. Nothing was changed.';
    END IF;
    {missing.replace("SELECT count(*)", "SELECT count(*) INTO missing", 1)};
    IF missing > 0 THEN
        RAISE EXCEPTION USING MESSAGE = 'vestige: ' || missing || ' rows have no fresh staged vector for {name} ({target.dimension}-d): added or edited since staging. Run `{command}` again, then run this script again. Nothing was changed.';
    END IF;
END
$vestige_guard$"""


def _sql_text(value: str) -> str:
    """`value` as the inside of a single-quoted SQL literal."""
    return value.replace("'", "''")


def offline_reembed_script(target: ModelSignature, plan: ReembedPlan) -> list[str]:
    """The statements of the offline model change, in the order the online path runs them."""
    settings_sql = (
        f"SELECT set_config('max_parallel_maintenance_workers', '{plan.max_parallel_maintenance_workers}', true)"
    )
    if plan.maintenance_work_mem_mb is not None:
        memory_sql = f"SELECT set_config('maintenance_work_mem', '{plan.maintenance_work_mem_mb}MB', true)"
    else:
        memory_sql = (
            "SELECT set_config('maintenance_work_mem', "
            f"{index.build_memory_sql(target.dimension, plan.maintenance_work_mem_cap_mb)}, true)"
        )
    return [
        header(target, plan) + f"\nSELECT set_config('lock_timeout', '{plan.lock_timeout}', true)",
        guard_block(target),
        compiled(update_state(ModelState.REEMBEDDING)),
        drop_hnsw_index_sql().strip(),
        typmod.alter_type_sql(None),
        compiled(apply_staged_statement(target, EMBEDDING)),
        typmod.alter_type_sql(target.dimension),
        memory_sql,
        settings_sql,
        create_hnsw_index_sql().strip(),
        f"ANALYZE {quoted(KNOWLEDGE_NODES)}",
        compiled(register_model(target)),
        f"DROP TABLE {quoted(STAGING)}",
    ]
