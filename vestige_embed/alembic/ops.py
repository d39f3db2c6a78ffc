"""The Alembic operations: `op.reembed(...)` makes a model change a revision;
`op.adopt_embeddings(...)` registers a team's existing column (its downgrade,
`op.release_embeddings(...)`, forgets the registration).

Thin adapters: online they run the engine on the migration's connection (atomic, inside
the migration transaction; `CONCURRENTLY` inside Alembic's autocommit block); offline
(`--sql`) they emit statement objects that Alembic compiles itself. A revision written by
`vestige migrate revision` or `adopt` pins the model's files (`model_hash`): an upgrade on
other files refuses unless the operator accepts them (`-x accept_model_hash=yes`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from alembic.operations import MigrateOperation, Operations
from alembic.util import CommandError

from vestige_embed.embedders import Embedder, resolve_embedder
from vestige_embed.errors import ModelIntegrityError, VestigeError
from vestige_embed.run.engine import run_reembed
from vestige_embed.run.plan import DEFAULT_BATCH_SIZE, ReembedPlan
from vestige_embed.settings.config import Settings, load_settings, project_folder
from vestige_embed.target import DEFAULT_TARGET, Statements, Target

log = logging.getLogger(__name__)

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
        model_hash: str | None = None,
        **target: Any,
    ) -> None:
        self.model = model
        self.dimension = dimension
        self.threads = threads
        self.device = device
        self.model_hash = model_hash
        self.target = target_of("reembed", target)
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
        distance="inner_product")``. `model_hash` pins the model's files (weights, tokenizer,
        config) as `vestige migrate revision` found them. Plan options: `batch_size`, `drop_hnsw_first`,
        `concurrent_index`. When staging covers the store, the new column and its index
        are built before the window whatever the revision says, unless the operator sets
        `VESTIGE_EMBED_PREBUILD_INDEX=0`. `threads` and `device` (`auto`, `cpu`, `cuda`)
        configure the model; the machine that runs the upgrade has the last word
        (`VESTIGE_EMBED_THREADS`, `VESTIGE_EMBED_DEVICE`).
        """
        operations.invoke(cls(model, dimension, **kw))


def target_of(operation: str, fields: dict[str, Any]) -> Target:
    unknown = set(fields) - set(TARGET_FIELDS)
    if unknown:
        raise TypeError(f"op.{operation}() got unexpected keyword(s): {', '.join(sorted(unknown))}")
    return Target(**fields)


@Operations.register_operation("adopt_embeddings")
class AdoptEmbeddingsOp(MigrateOperation):
    """Register a table's existing vectors as `model`'s, after checking a sample of them."""

    def __init__(self, model: str, dimension: int, *, model_hash: str | None = None, **target: Any) -> None:
        self.model = model
        self.dimension = dimension
        self.model_hash = model_hash
        self.threads: int | None = None
        self.device: str | None = None
        self.target = target_of("adopt_embeddings", target)

    @classmethod
    def adopt_embeddings(cls, operations: Operations, model: str, dimension: int, **kw: Any) -> None:
        """Adopt a column of vectors made with `model`, without re-embedding it:
        ``op.adopt_embeddings(model=..., dimension=384, table="documents", key="doc_id",
        content="body", embedding="emb")``. A sample of stored rows is embedded again and
        compared first (refused, nothing changed, when they are not `model`'s); then the
        registry is created if absent, the target registered, and its HNSW index built (or an
        HNSW index already on the column renamed to the target's index name)."""
        operations.invoke(cls(model, dimension, **kw))


@Operations.register_operation("release_embeddings")
class ReleaseEmbeddingsOp(MigrateOperation):
    """Forget a target's registration: an adoption's downgrade. Its data and index stay."""

    def __init__(self, **target: Any) -> None:
        self.target = target_of("release_embeddings", target)

    @classmethod
    def release_embeddings(cls, operations: Operations, **kw: Any) -> None:
        """Remove the target's registry row; the table, its vectors and its index are the team's."""
        operations.invoke(cls(**kw))


def embedder_for(operation: ReembedOp | AdoptEmbeddingsOp, settings: Settings) -> Embedder:
    """The revision's model, configured by the revision, the machine's environment first."""
    return resolve_embedder(
        operation.model,
        operation.dimension,
        models_dir=settings.models_dir,
        threads=settings.embed_threads or operation.threads,
        device=settings.embed_device or operation.device or "auto",
    )


#: The `-x` argument with which `alembic upgrade` takes model files other than a revision pins.
ACCEPT_HASH_ARGUMENT = "accept_model_hash"


def project_settings(operations: Operations) -> Settings:
    """Settings of the migration's project: its folders are beside its alembic.ini."""
    config = operations.get_context().config
    return load_settings(project=project_folder(config.config_file_name if config is not None else None))


def pinned_embedder(operation: ReembedOp | AdoptEmbeddingsOp, settings: Settings) -> Embedder:
    """The operation's model, refused when its files are not the ones the revision pins."""
    from alembic import context as alembic_context

    embedder = embedder_for(operation, settings)
    if operation.model_hash is None:
        return embedder
    found = embedder.signature().hash
    if found == operation.model_hash:
        return embedder
    accepted = alembic_context.get_x_argument(as_dictionary=True).get(ACCEPT_HASH_ARGUMENT) == "yes"
    if accepted:
        log.warning(
            "%s: files sha256 %s accepted in place of the pinned %s (-x %s=yes)",
            operation.model,
            found[:12],
            operation.model_hash[:12],
            ACCEPT_HASH_ARGUMENT,
        )
        return embedder
    raise ModelIntegrityError(
        f"the revision pins {operation.model} to files with sha256 {operation.model_hash[:12]}, but this "
        f"machine's {operation.model} has {found[:12]}: other weights, tokenizer or config (an int8 build in place "
        "of fp32, say) make other vectors. Nothing was changed. Put the pinned files in the models folder "
        f"(VESTIGE_MODELS_DIR, default .vestige/models beside alembic.ini), or take these: "
        f"`alembic -x {ACCEPT_HASH_ARGUMENT}=yes upgrade ...`"
    )


@contextlib.contextmanager
def operator_errors() -> Iterator[None]:
    """Our errors as Alembic's `CommandError`: `alembic` prints `FAILED: <what to do>` instead
    of a traceback (the migration's transaction is rolled back either way)."""
    try:
        yield
    except VestigeError as e:
        raise CommandError(str(e)) from e


@Operations.implementation_for(ReembedOp)
@operator_errors()
def _reembed(operations: Operations, operation: ReembedOp) -> None:
    context = operations.get_context()
    settings = project_settings(operations)
    embedder = pinned_embedder(operation, settings)
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


@Operations.implementation_for(AdoptEmbeddingsOp)
@operator_errors()
def _adopt(operations: Operations, operation: AdoptEmbeddingsOp) -> None:
    embedder = pinned_embedder(operation, project_settings(operations))
    if operations.get_context().as_sql:
        from vestige_embed.run.offline import offline_adopt_script

        log.warning(
            "adopt: a script cannot check that %s holds %s's vectors; it registers them as they are",
            operation.target.describe(),
            operation.model,
        )
        for statement in offline_adopt_script(operation.target, embedder.signature()):
            operations.execute(statement)
        return
    from vestige_embed.run.adopt import adopt_embeddings

    adopt_embeddings(operations.get_bind(), embedder, operation.target)


@Operations.implementation_for(ReleaseEmbeddingsOp)
@operator_errors()
def _release(operations: Operations, operation: ReleaseEmbeddingsOp) -> None:
    if operations.get_context().as_sql:
        operations.execute(Statements(operation.target).delete_registry())
        return
    from vestige_embed.run.adopt import release_embeddings

    release_embeddings(operations.get_bind(), operation.target)


#: The `-x` argument with which `alembic downgrade` past a base revision may drop the rows.
DROP_ROWS_ARGUMENT = "drop_rows"


def refuse_dropping_rows(target: Target = DEFAULT_TARGET) -> None:
    """In a base revision's downgrade, before it drops the table: stop while the table holds
    rows, unless the operator said `alembic downgrade ... -x drop_rows=yes`."""
    from alembic import context, op

    if context.get_x_argument(as_dictionary=True).get(DROP_ROWS_ARGUMENT) == "yes":
        return
    op.execute(Statements(target).rows_guard(f"-x {DROP_ROWS_ARGUMENT}=yes"))
