"""Adoption: register a column of vectors a team made elsewhere, without re-embedding it.

The registry is the one claim search trusts ("these vectors are model M's"), so the claim
is checked first: a sample of stored rows is embedded again with M and compared with what
is stored. Vectors of another model (even one of the same size) are near-orthogonal to M's;
M's own vectors agree to rounding (another build of M, int8 against fp32, to about 0.99).
Then the registry is created if absent, the target registered, and its HNSW index built,
or an existing HNSW index on the column given the target's index name. One transaction,
the caller's: a refusal changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder
from vestige_embed.errors import ReembedError
from vestige_embed.run import steps
from vestige_embed.run.context import Run, own_autocommit_block
from vestige_embed.run.plan import ReembedPlan
from vestige_embed.run.progress import NoProgress
from vestige_embed.store import catalog
from vestige_embed.store.registry import find_registry, read_registry, register_target
from vestige_embed.target import ModelSignature, Statements, Target
from vestige_embed.target.statements import compiled

log = logging.getLogger(__name__)

#: Stored rows embedded again to check the claim.
SAMPLE_ROWS = 64
#: The median cosine similarity (stored vs. re-embedded) at or above which the claim holds.
MIN_SIMILARITY = 0.95


@dataclass(frozen=True)
class AdoptReport:
    """What adoption found and did; `median_similarity` is None when no row had a vector."""

    sampled: int
    median_similarity: float | None
    index: str


def verify_claim(conn: Connection, embedder: Embedder, target: Target, rows: int) -> tuple[int, float | None]:
    """`(rows sampled, median cosine similarity)` of stored vectors with `embedder`'s (`rows`:
    the table's); refuses when they are not its vectors."""
    st = Statements(target)
    percent = min(100.0, 100.0 * 4 * SAMPLE_ROWS / max(rows, 1))
    sample = conn.execute(st.sample_stored(), {"percent": percent, "size": SAMPLE_ROWS}).all()
    if not sample:
        return 0, None
    stored = np.array([json.loads(text) for _, text in sample], dtype=np.float32)
    signature = embedder.signature()
    if stored.shape[1] != signature.dimension:
        raise ReembedError(
            f"{target.describe()} holds {stored.shape[1]}-d vectors; {signature.name} makes "
            f"{signature.dimension}-d ones. Nothing was changed: name the model the vectors were made with"
        )
    fresh = embedder.embed_batch([str(content) for content, _ in sample])
    norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(fresh, axis=1)
    similarity = float(np.median(np.einsum("ij,ij->i", stored, fresh) / np.where(norms > 0, norms, 1.0)))
    if similarity < MIN_SIMILARITY:
        raise ReembedError(
            f"{target.describe()} does not hold {signature.name}'s vectors: {len(sample)} of its rows embedded "
            f"again with it have a median cosine similarity of {similarity:.3f} with the stored vectors "
            f"(at least {MIN_SIMILARITY} when they are its own). Nothing was changed. Name the model the "
            "vectors were made with (--model), and the content it embedded (--content: the column or SQL "
            "expression the application embeds)"
        )
    return len(sample), similarity


def adopt_embeddings(conn: Connection, embedder: Embedder, target: Target) -> AdoptReport:
    """Verify, register and index `target` as `embedder`'s; idempotent for the same model."""
    target = catalog.resolve_target(conn, target)
    st = Statements(target)
    signature = embedder.signature()
    _require_column_shape(conn, st, signature)
    existing = find_registry(conn, target)
    if existing is not None and existing.signature != signature:
        raise ReembedError(
            f"{target.describe()} is already registered with {existing.signature.describe()}; "
            "change its model with a re-embed revision (`vestige migrate revision`), not an adoption"
        )
    rows = catalog.count(conn, st.count_rows())
    sampled, similarity = verify_claim(conn, embedder, target, rows)
    if similarity is None:
        log.warning("adopt: %s has no stored vector to check the claim against", target.describe())
    else:
        log.info("adopt: %d rows embedded again with %s: median similarity %.4f", sampled, signature.name, similarity)
    if catalog.column_dimension(conn, st) is None:
        conn.execute(st.tighten(signature.dimension))
    register_target(conn, target, signature)
    report = AdoptReport(sampled, similarity, _take_or_build_index(conn, embedder, target, rows))
    log.info("adopt: %s registered as %s; index %s", target.describe(), signature.describe(), report.index)
    return report


def release_embeddings(conn: Connection, target: Target) -> None:
    """Forget the registration (an adoption's downgrade); the table, its vectors and index stay."""
    if find_registry(conn, target) is not None:
        conn.execute(Statements(target).delete_registry())


def _require_column_shape(conn: Connection, st: Statements, signature: ModelSignature) -> None:
    found = catalog.column_type(conn, st)
    assert found is not None  # resolve_target checked the column
    kind, dimension = found
    target = st.target
    if kind != target.storage.value:
        raise ReembedError(f"{target.describe()} is {kind}, not {target.storage.value}: pass --storage {kind}")
    if dimension is not None and dimension != signature.dimension:
        raise ReembedError(
            f"{target.describe()} is {kind}({dimension}); {signature.name} makes {signature.dimension}-d "
            "vectors. Nothing was changed: name the model the vectors were made with"
        )


def _take_or_build_index(conn: Connection, embedder: Embedder, target: Target, rows: int) -> str:
    """The target's HNSW index: kept, renamed from an existing one, or built."""
    st = Statements(target)
    found = conn.execute(st.hnsw_indexes()).all()
    if any(name == target.index for name, _ in found):
        return f"{target.index} kept"
    wanted = target.distance.opclass(target.storage)
    for name, opclass in found:
        if opclass == wanted:
            conn.execute(st.rename_index(name))
            log.info("adopt: HNSW index %s is now %s", name, target.index)
            return f"{name} taken over as {target.index}"
    if found:
        name, opclass = found[0]
        raise ReembedError(
            f"{target.describe()}'s HNSW index {name} uses {opclass}, but the target's distance is "
            f"{target.distance.value} ({wanted}). Nothing was changed: pass the distance search uses "
            f"(--distance), or drop the index first: {compiled(st.drop_index(name))};"
        )
    run = Run(
        conn, embedder, ReembedPlan(), target, read_registry(conn, target), NoProgress(), own_autocommit_block(conn)
    )
    steps.build_index(run, rows)
    return f"{target.index} built"
