"""The data pass: embed batch k+1 while batch k is written.

At most two batches are alive (one embedding, one being written). The embedder runs in
a worker thread; numpy and onnxruntime release the GIL, so the two overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.errors import ReembedError
from vestige_embed.run.progress import Progress
from vestige_embed.run.reader import Batch

log = logging.getLogger("vestige_embed.reembed")

Writer = Callable[[Batch, Matrix], int]
#: A vector shorter than this has no direction: cosine distance to it is undefined.
MIN_NORM = 1e-6


def check_vectors(embedder: Embedder, vectors: Matrix, count: int) -> Matrix:
    """Refuse output that would corrupt the store: wrong shape, NaN, infinity, zero vectors."""
    shape = (count, embedder.dimension)
    if vectors.shape != shape:
        raise ReembedError(f"embedder '{embedder.name}' returned shape {vectors.shape}, expected {shape}")
    if not np.isfinite(vectors).all():
        raise ReembedError(
            f"embedder '{embedder.name}' returned NaN or infinite values; nothing of this batch was written"
        )
    zero = int((np.linalg.norm(vectors, axis=1) < MIN_NORM).sum())
    if zero:
        raise ReembedError(
            f"embedder '{embedder.name}' returned {zero} zero vector(s) in a batch of {count}: no distance is "
            "defined for them; nothing of this batch was written. Check the model and its input texts"
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def run_pipeline(
    batches: Iterable[Batch],
    embedder: Embedder,
    write: Writer,
    *,
    progress: Progress,
    on_batch: Callable[[], None] | None = None,
    label: str = "reembed",
) -> int:
    """Embed and write every batch; returns the rows written. `on_batch` runs after each write."""
    written = 0
    number = 0

    def finish(batch: Batch, future: Future[Matrix]) -> None:
        nonlocal written, number
        vectors = check_vectors(embedder, future.result(), len(batch.keys))
        count = write(batch, vectors)
        if on_batch is not None:
            on_batch()
        number += 1
        written += count
        log.info("%s: wrote batch %d (%d rows)", label, number, count)
        progress.advance(len(batch.keys))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vestige-embed") as pool:
        pending: tuple[Batch, Future[Matrix]] | None = None
        for batch in batches:
            future = pool.submit(embedder.embed_batch, batch.texts)
            if pending is not None:
                finish(*pending)
            pending = (batch, future)
        if pending is not None:
            finish(*pending)
    return written
