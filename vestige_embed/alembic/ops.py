"""`op.reembed(...)`: the Alembic operation that makes a model change a revision.

A thin adapter: online it runs the engine on the migration's connection (atomic,
inside the migration transaction; `CONCURRENTLY` inside Alembic's autocommit block);
offline (`--sql`) it emits the staged script of `run.offline`, statement objects that
Alembic compiles itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from alembic.operations import MigrateOperation, Operations

from vestige_embed.embedders import Embedder, resolve_embedder
from vestige_embed.run.engine import run_reembed
from vestige_embed.run.plan import DEFAULT_BATCH_SIZE, ReembedPlan
from vestige_embed.settings.config import Settings, load_settings, project_folder
from vestige_embed.target import DEFAULT_TARGET, Statements, Target

#: `op.reembed` keywords that describe the target (the rest describe the plan).
TARGET_FIELDS = ("table", "key", "content", "embedding", "storage", "distance", "index")


@Operations.register_operation("reembed")
class ReembedOp(MigrateOperation):
    """State of one model change: the model, its target and the plan."""

    def __init__(
        self,
        model: str,
        dimension: int,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        drop_hnsw_first: bool = True,
        concurrent_index: bool = False,
        threads: int | None = None,
        device: str | None = None,
        **target: Any,
    ) -> None:
        unknown = set(target) - set(TARGET_FIELDS)
        if unknown:
            raise TypeError(f"op.reembed() got unexpected keyword(s): {', '.join(sorted(unknown))}")
        self.model = model
        self.dimension = dimension
        self.threads = threads
        self.device = device
        self.target = Target(**target)
        self.plan = ReembedPlan(
            batch_size=batch_size, drop_hnsw_first=drop_hnsw_first, concurrent_index=concurrent_index
        )

    @classmethod
    def reembed(cls, operations: Operations, model: str, dimension: int, **kw: Any) -> None:
        """Re-embed every stored vector of a table with `model` (`dimension` is checked first).

        ``op.reembed(model="sentence-transformers/all-MiniLM-L6-v2", dimension=384)`` changes
        the default target, `knowledge_nodes.embedding`. Another table names itself:
        ``op.reembed(model=..., dimension=..., table="documents", key="doc_id",
        content="title || ' ' || body", embedding="emb", storage="halfvec",
        distance="inner_product")``. Plan options: `batch_size`, `drop_hnsw_first`,
        `concurrent_index`. When staging covers the store, the new column and its index
        are built before the window whatever the revision says, unless the operator sets
        `VESTIGE_EMBED_PREBUILD_INDEX=0`. `threads` and `device` (`auto`, `cpu`, `cuda`)
        configure the model; the machine that runs the upgrade has the last word
        (`VESTIGE_EMBED_THREADS`, `VESTIGE_EMBED_DEVICE`).
        """
        operations.invoke(cls(model, dimension, **kw))


def embedder_for(operation: ReembedOp, settings: Settings) -> Embedder:
    """The revision's model, configured by the revision, the machine's environment first."""
    return resolve_embedder(
        operation.model,
        operation.dimension,
        models_dir=settings.models_dir,
        threads=settings.embed_threads or operation.threads,
        device=settings.embed_device or operation.device or "auto",
    )


@Operations.implementation_for(ReembedOp)
def _reembed(operations: Operations, operation: ReembedOp) -> None:
    context = operations.get_context()
    ini_file = context.config.config_file_name if context.config is not None else None
    settings = load_settings(project=project_folder(ini_file))
    embedder = embedder_for(operation, settings)
    plan = replace(operation.plan, prebuild_index=settings.prebuild_index)
    if context.as_sql:
        from vestige_embed.run.offline import offline_reembed_script

        for statement in offline_reembed_script(operation.target, embedder.signature(), plan):
            operations.execute(statement)
        return
    from vestige_embed.run.progress import progress_for

    run_reembed(
        operations.get_bind(),
        embedder,
        plan,
        target=operation.target,
        autocommit_block=context.autocommit_block,
        progress=progress_for("reembed"),
    )


#: The `-x` argument with which `alembic downgrade` past a base revision may drop the rows.
DROP_ROWS_ARGUMENT = "drop_rows"


def refuse_dropping_rows(target: Target = DEFAULT_TARGET) -> None:
    """In a base revision's downgrade, before it drops the table: stop while the table holds
    rows, unless the operator said `alembic downgrade ... -x drop_rows=yes`."""
    from alembic import context, op

    if context.get_x_argument(as_dictionary=True).get(DROP_ROWS_ARGUMENT) == "yes":
        return
    op.execute(Statements(target).rows_guard(f"-x {DROP_ROWS_ARGUMENT}=yes"))
