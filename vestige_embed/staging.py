"""Stage, then swap: precompute the target model's vectors while search is still served.

`stage()` fills `knowledge_nodes_reembed_staging` with one vector per row for a target
signature, plus the sha256 of the content it embedded. A staged vector is *fresh* when
its signature is the target's and its content hash matches the row's current content;
the engine applies fresh vectors with one set-based UPDATE and embeds only the rest.
Staging commits every batch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.pipeline import NoProgress, Progress, count_rows, run_pipeline, stream_batches
from vestige_embed.schema import (
    EMBEDDING,
    STAGING,
    content_sha256,
    knowledge_nodes,
    metadata,
    quoted,
    staging,
)
from vestige_embed.signature import ModelSignature
from vestige_embed.vector_io import PassThrough, UuidArray, VectorArray, register_binary_arrays

log = logging.getLogger("vestige_embed.stage")


@dataclass(frozen=True)
class StageReport:
    rows_staged: int
    rows_already_fresh: int
    duration_secs: float

    def summary_line(self) -> str:
        return (
            f"rows_staged {self.rows_staged}  rows_already_fresh {self.rows_already_fresh}  "
            f"duration_secs {self.duration_secs:.3f}"
        )


def staging_exists(conn: Connection) -> bool:
    return bool(conn.execute(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": quoted(STAGING)}).scalar_one())


def signature_matches(target: ModelSignature) -> sa.ColumnElement[bool]:
    s = staging.c
    return sa.and_(s.model_name == target.name, s.dimension == target.dimension, s.model_hash == target.hash)


def fresh_staged(target: ModelSignature) -> sa.ColumnElement[bool]:
    """True for a `knowledge_nodes` row whose staged vector is for `target` and its current content."""
    s = staging.c
    return (
        sa.select(sa.literal(1))
        .where(s.id == knowledge_nodes.c.id, signature_matches(target))
        .where(s.content_sha256 == content_sha256(knowledge_nodes.c.content))
        .exists()
    )


def apply_staged_statement(target: ModelSignature, column: str = EMBEDDING) -> sa.Update:
    """Copy every fresh staged vector into `column` (online and in the offline script)."""
    s = staging.c
    table = sa.table(knowledge_nodes.name, sa.column("id"), sa.column("content"), sa.column(column))
    return (
        table.update()
        .values({column: s.embedding})
        .where(s.id == table.c.id, signature_matches(target))
        .where(s.content_sha256 == content_sha256(table.c.content))
    )


def apply_staged(conn: Connection, target: ModelSignature, column: str = EMBEDDING) -> int:
    return int(conn.execute(apply_staged_statement(target, column)).rowcount)


def drop_staging(conn: Connection) -> None:
    staging.drop(conn, checkfirst=True)


def release_staging(conn: Connection, target: ModelSignature) -> None:
    """After a successful change to `target`: its staged rows are spent; vectors staged for
    another model are kept (they stay valid for rows whose content does not change)."""
    if not staging_exists(conn):
        return
    conn.execute(staging.delete().where(signature_matches(target)))
    if conn.execute(sa.select(staging.c.id).limit(1)).first() is None:
        drop_staging(conn)


def stage(
    conn: Connection,
    embedder: Embedder,
    *,
    batch_size: int = 128,
    progress: Progress | None = None,
) -> StageReport:
    """Embed every row that has no fresh staged vector for this embedder; commit per batch.

    `conn` must not be inside a transaction the caller wants to keep: staging commits.
    The application may keep reading and writing `knowledge_nodes` meanwhile.
    """
    import time

    progress = progress or NoProgress()
    started = time.perf_counter()
    target = embedder.signature()
    metadata.create_all(conn, tables=[staging], checkfirst=True)
    stale = conn.execute(staging.delete().where(~signature_matches(target))).rowcount
    if stale:
        log.info("stage: removed %d vectors staged for another model", stale)
    register_binary_arrays(conn)
    conn.commit()
    already = count_rows(conn, fresh_staged(target))
    todo = count_rows(conn) - already
    conn.commit()
    log.info("stage: %d rows to embed with %s, %d already staged", todo, target.describe(), already)
    progress.start(max(todo, 0))
    upsert = _upsert_statement(target)
    contents: dict[uuid.UUID, bytes] = {}

    def batches() -> Iterator[tuple[list[uuid.UUID], list[str]]]:
        with conn.engine.connect() as reader:
            for ids, texts in stream_batches(reader, batch_size, ~fresh_staged(target)):
                for i, text in zip(ids, texts, strict=True):
                    contents[i] = hashlib.sha256(text.encode("utf-8")).digest()
                yield ids, texts

    def write(ids: list[uuid.UUID], vectors: Matrix) -> int:
        hashes = [contents.pop(i) for i in ids]
        conn.execute(upsert, {"ids": UuidArray(ids), "vectors": VectorArray(vectors), "hashes": hashes})
        conn.commit()
        return len(ids)

    try:
        staged = run_pipeline(batches(), embedder, write, progress=progress, label="stage")
    finally:
        progress.finish()
    return StageReport(staged, already, round(time.perf_counter() - started, 6))


def _upsert_statement(target: ModelSignature) -> sa.Insert:
    rows = (
        sa.func.unnest(
            sa.bindparam("ids", type_=PassThrough()),
            sa.bindparam("vectors", type_=PassThrough()),
            sa.bindparam("hashes", type_=PassThrough()),
        )
        .table_valued("id", "embedding", "content_sha256")
        .render_derived(name="v")
    )
    source = sa.select(
        rows.c.id,
        rows.c.embedding,
        rows.c.content_sha256,
        sa.literal(target.name),
        sa.literal(target.dimension),
        sa.literal(target.hash),
    )
    stmt = insert(staging).from_select(
        ["id", EMBEDDING, "content_sha256", "model_name", "dimension", "model_hash"], source
    )
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[staging.c.id],
        set_={name: excluded[name] for name in (EMBEDDING, "content_sha256", "model_name", "dimension", "model_hash")},
    )


def staged_ids(conn: Connection) -> Sequence[uuid.UUID]:
    """Ids currently staged (tests and status use it)."""
    return list(conn.execute(sa.select(staging.c.id)).scalars())
