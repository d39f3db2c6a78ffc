"""A re-embed in its own process, for tests that SIGKILL it at a chosen step.

Usage: python tests/reembed_worker.py URL atomic|batched|stage [fast|heavy]
Slowed down (BATCH_SECS a batch of 8) so a kill lands mid-pass; `fast` embeds at full
speed in big batches, for kills at the steps after the data pass; `heavy` too, with an
index build that takes seconds (serial, wide graph), for a kill in the middle of it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import sqlalchemy as sa

from vestige_embed import DEFAULT_TARGET, HashEmbedder, HnswParams, ReembedPlan, run_reembed, stage
from vestige_embed.embedders.base import Matrix

BATCH_SECS = 0.2


class SlowHash(HashEmbedder):
    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        time.sleep(BATCH_SECS)
        return super().embed_batch(texts)


def main(url: str, mode: str, speed: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    embedder = SlowHash(128) if speed == "slow" else HashEmbedder(128)
    batch_size = 8 if speed == "slow" else 1024
    heavy = speed == "heavy"
    target = replace(DEFAULT_TARGET, hnsw=HnswParams(m=48, ef_construction=512)) if heavy else DEFAULT_TARGET
    with engine.connect() as conn:
        if mode == "stage":
            stage(conn, embedder, target=target, batch_size=batch_size)
            return
        workers = 0 if heavy else ReembedPlan().max_parallel_maintenance_workers
        batched = mode == "batched"
        plan = ReembedPlan(batch_size=batch_size, commit_batches=batched, max_parallel_maintenance_workers=workers)
        run_reembed(conn, embedder, plan, target=target)
        conn.commit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "slow")
