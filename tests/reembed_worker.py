"""A re-embed in its own process, slowed down so a test can SIGKILL it mid-pass.

Usage: python tests/reembed_worker.py URL atomic|batched|stage
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

import sqlalchemy as sa

from vestige_embed import HashEmbedder, ReembedPlan, run_reembed, stage
from vestige_embed.embedders.base import Matrix

BATCH_SECS = 0.2


class SlowHash(HashEmbedder):
    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        time.sleep(BATCH_SECS)
        return super().embed_batch(texts)


def main(url: str, mode: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        if mode == "stage":
            stage(conn, SlowHash(128), batch_size=8)
            return
        plan = ReembedPlan(batch_size=8, commit_batches=mode == "batched")
        run_reembed(conn, SlowHash(128), plan)
        conn.commit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
