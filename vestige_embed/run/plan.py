"""What a re-embed is asked to do (`ReembedPlan`) and what it reports back. Value types."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from vestige_embed.errors import ConfigError
from vestige_embed.target import ModelSignature

DEFAULT_BATCH_SIZE = 128
DEFAULT_LOCK_TIMEOUT = "10s"
DEFAULT_BUILD_MEMORY_CAP_MB = 2048
DEFAULT_BUILD_WORKERS = 2


class TypmodApproach(enum.StrEnum):
    """`auto`: relax/tighten (approach B) with approach C as fallback; `new_column`: C always."""

    AUTO = "auto"
    NEW_COLUMN = "new_column"


@dataclass(frozen=True)
class ReembedPlan:
    """How to run a re-embed. The defaults are the plan's; the CLI sets `commit_batches`.

    - `commit_batches`: False runs everything in the caller's transaction (atomic, what an
      Alembic revision gives); True commits after every batch (for very large tables).
    - `typmod_approach`: `auto` (relax/tighten, approach C as fallback) or `new_column`.
    - `lock_timeout`: how long DDL waits for the table before failing (PostgreSQL syntax).
    - `maintenance_work_mem_mb`: None sizes it from rows x dimension, up to the cap.
    - `use_staged`: take fresh vectors from the staging table when there are any.
    - `prebuild_index`: when fresh staged vectors cover the store, build the new column
      and its HNSW index before the window (CONCURRENTLY), even where `concurrent_index`
      is False, so the window is seconds; False builds the index inside the window.
    """

    batch_size: int = DEFAULT_BATCH_SIZE
    drop_hnsw_first: bool = True
    concurrent_index: bool = False
    commit_batches: bool = False
    typmod_approach: TypmodApproach = TypmodApproach.AUTO
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    maintenance_work_mem_mb: int | None = None
    maintenance_work_mem_cap_mb: int = DEFAULT_BUILD_MEMORY_CAP_MB
    max_parallel_maintenance_workers: int = DEFAULT_BUILD_WORKERS
    use_staged: bool = True
    prebuild_index: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.max_parallel_maintenance_workers < 0:
            raise ConfigError("max_parallel_maintenance_workers must be 0 or more")
        if self.maintenance_work_mem_mb is not None and self.maintenance_work_mem_mb < 1:
            raise ConfigError("maintenance_work_mem_mb must be positive (or None to size it automatically)")
        object.__setattr__(self, "typmod_approach", TypmodApproach(self.typmod_approach))


class Strategy(enum.StrEnum):
    """How a run moves the vectors, chosen once per run from the plan and the catalog."""

    #: Same column: write over it (relaxing its typmod first when the size changes).
    IN_PLACE = "in_place"
    #: Approach C: a new column typed for the new size, dropped into place at the end.
    NEW_COLUMN = "new_column"
    #: Staged swap: new column and its index built before the window, catalog-only swap.
    STAGED_SWAP = "staged_swap"


@dataclass(frozen=True)
class ReembedReport:
    """One run.

    - `duration_secs`: first statement to registry update, minus `index_rebuild_secs`;
    - `rows_from_staging`: updated rows that came precomputed;
    - `window_secs`: first statement that blocks search to the registry update;
    - `data_pass_secs`: applying staged vectors, streaming, embedding and writing;
    - `writes_blocked_secs`: how long this run held locks that make writers wait.
    """

    rows_updated: int
    duration_secs: float
    index_rebuild_secs: float
    rows_from_staging: int = 0
    window_secs: float = 0.0
    data_pass_secs: float = 0.0
    writes_blocked_secs: float = 0.0
    strategy: str = ""

    def summary_line(self) -> str:
        return (
            f"rows_updated {self.rows_updated}  duration_secs {self.duration_secs:.3f}  "
            f"index_rebuild_secs {self.index_rebuild_secs:.3f}"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    """Seconds for each path, and what they were computed from (`run.estimate` measures)."""

    rows: int
    distinct_contents: int
    write_rows_per_sec: float
    sampled_rows: int
    sample_embed_secs: float
    embed_rows_per_sec: float
    calibration_rows: int
    #: What the scratch index was built over (`target.statements.Calibration`'s words).
    calibration_vectors: str
    calibration_index_secs: float
    data_pass_secs: float
    index_secs: float
    #: A staged swap's copy inserts every row into the old index once more.
    old_index_insert_secs: float
    in_place_secs: float
    staged_secs: float
    staged_window_secs: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def basis(self) -> str:
        return (
            f"embedded {self.sampled_rows} sampled rows in {self.sample_embed_secs:.2f} s "
            f"({self.embed_rows_per_sec:,.0f} rows/s); {self.distinct_contents:,} distinct contents of "
            f"{self.rows:,} rows; writes at {self.write_rows_per_sec:,.0f} rows/s; index: built over "
            f"{self.calibration_rows:,} {self.calibration_vectors} in {self.calibration_index_secs:.2f} s, "
            "scaled (n log n)"
        )


@dataclass(frozen=True)
class DryRunSummary:
    """What a run would do. Computed without embedding or writing anything."""

    rows_to_update: int
    embedder_batches: int
    estimated_walltime_secs: float
    current_signature: ModelSignature
    target_signature: ModelSignature
    would_alter_typmod: bool
    #: The measurements behind `estimated_walltime_secs`, and each path's seconds.
    estimate: Estimate | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
