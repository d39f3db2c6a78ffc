"""`op.reembed(...)`: the Alembic operation that makes a model change a revision.

A thin adapter: online it runs the engine on the migration's connection (atomic,
inside the migration transaction; `CONCURRENTLY` inside Alembic's autocommit block);
offline (`--sql`) it prints the staged-swap script of `offline_sql`.
"""

from __future__ import annotations

from typing import Any

from alembic.operations import MigrateOperation, Operations

from vestige_embed.embedders import resolve_embedder
from vestige_embed.engine import run_reembed
from vestige_embed.plan import DEFAULT_BATCH_SIZE, ReembedPlan
from vestige_embed.progress import progress_for


@Operations.register_operation("reembed")
class ReembedOp(MigrateOperation):
    """Re-embed every stored vector with `model` (`dimension` is checked before any write)."""

    def __init__(
        self,
        model: str,
        dimension: int,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        drop_hnsw_first: bool = True,
        concurrent_index: bool = False,
    ) -> None:
        self.model = model
        self.dimension = dimension
        self.plan = ReembedPlan(
            batch_size=batch_size, drop_hnsw_first=drop_hnsw_first, concurrent_index=concurrent_index
        )

    @classmethod
    def reembed(cls, operations: Operations, model: str, dimension: int, **kw: Any) -> None:
        """`op.reembed(model="...", dimension=N, batch_size=..., drop_hnsw_first=..., concurrent_index=...)`."""
        operations.invoke(cls(model, dimension, **kw))


@Operations.implementation_for(ReembedOp)
def _reembed(operations: Operations, operation: ReembedOp) -> None:
    embedder = resolve_embedder(operation.model, operation.dimension)
    context = operations.get_context()
    if context.as_sql:
        from vestige_embed.offline_sql import offline_reembed_script

        for statement in offline_reembed_script(embedder.signature(), operation.plan):
            operations.execute(statement)
        return
    run_reembed(
        operations.get_bind(),
        embedder,
        operation.plan,
        autocommit_block=context.autocommit_block,
        progress=progress_for("reembed"),
    )
