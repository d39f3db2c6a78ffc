"""The settings of an HNSW build under a plan: one place for the build, the dry run's
calibration build, the offline script and the benchmarks."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from vestige_embed.run.plan import ReembedPlan
from vestige_embed.target import Statements


def index_build_settings(
    plan: ReembedPlan, st: Statements, rows: int | None, dimension: int, *, local: bool = True
) -> list[sa.Select[Any]]:
    """`maintenance_work_mem` and parallel workers for building `st`'s index over `rows`
    vectors of `dimension` (None: the table is counted when the settings run, offline)."""
    return st.build_settings(
        rows,
        dimension,
        explicit_mb=plan.maintenance_work_mem_mb,
        cap_mb=plan.maintenance_work_mem_cap_mb,
        workers=plan.max_parallel_maintenance_workers,
        local=local,
    )
