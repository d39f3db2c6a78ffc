"""Staging on a Ray cluster: the single-machine staging pass, cut into key ranges and run
by a pool of actors (Ray Data), each with its own model and its own database connection.

Each actor stages its ranges with the single-machine code (`staging.stage_rows`: the same
freshness rule, content-hash dedupe, idempotent upsert, key-paged short transactions), so a
range retried on a restarted actor writes no row twice, and a rerun after the driver died
reads only what is missing. Rows never travel through Ray's object store: a range number
goes out, a count comes back (in the prototype, moving rows through Arrow and the object
store cost the hashing embedder 4x its wall time). Reads run inside the actors, so they
never wait for CPUs the actors hold (the prototype's silent hang).

Everything the workers run is in this module, imported by name on each node: code shipped
from a script's `__main__` travels by value and silently lost the freshness check's
correlation in the prototype.
"""

from __future__ import annotations

import _thread
import contextlib
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.embedders import Embedder, resolve_embedder
from vestige_embed.errors import ConfigError, ModelIntegrityError, StagingError
from vestige_embed.run.context import idle_while_embedding
from vestige_embed.run.progress import NoProgress, Progress
from vestige_embed.run.staging import StageReport, prepare_staging, stage_rows
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.urls import connect_args
from vestige_embed.store import catalog
from vestige_embed.store.run_lock import run_lock
from vestige_embed.store.transactions import commit
from vestige_embed.target import ModelSignature, Statements, Target

log = logging.getLogger("vestige_embed.stage")

RAY_EXTRA = "vestige-embed[ray]"
#: `--ray-address` that starts a cluster on this machine (tests, one big machine).
LOCAL = "local"
#: The fewest rows a range is cut to, however many workers there are.
MIN_RANGE_ROWS = 100
#: Keys sampled to cut the key space into ranges of about equal row counts.
SAMPLE_KEYS = 100_000


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: `workers` actors of `cpus_per_worker` CPUs (the model's threads)
    and `gpus_per_worker` GPUs (CUDA when above 0); the job fails when no row was staged
    for `stall_secs`."""

    address: str = LOCAL
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    rows_per_range: int = 2000
    stall_secs: float = 300.0
    #: Environment variables for the workers (`VESTIGE_MODELS_DIR`, `HF_HUB_OFFLINE`, ...).
    worker_env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0 or self.rows_per_range < 1:
            raise ConfigError(
                "Ray staging needs workers >= 1, cpus per worker > 0, gpus per worker >= 0 and rows per range >= 1"
            )
        if self.stall_secs <= 0:
            raise ConfigError(f"the stall timeout must be above 0 seconds (got {self.stall_secs})")

    def parts(self, rows: int) -> int:
        """Ranges of about `rows_per_range` rows, but at least 4 per worker (so every worker has
        work and a slow range does not hold up the end) while they hold 100 rows or more."""
        return max(1, min(max(math.ceil(rows / self.rows_per_range), 4 * self.workers), rows // MIN_RANGE_ROWS))

    @property
    def threads(self) -> int:
        """The model's threads in an actor: its CPUs, so actors on one node never oversubscribe it."""
        return max(1, int(self.cpus_per_worker))

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_worker > 0 else "cpu"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"staging on Ray needs Ray: pip install '{RAY_EXTRA}'") from None
    return ray


def key_ranges(conn: Connection, st: Statements, rows: int, parts: int) -> list[tuple[Any, Any]]:
    """`parts` ranges `[low, high)` of the key (None: open end) holding about as many of the
    table's `rows` each: cut at quantiles of a sample of the keys, in the server's own key
    order (uuid, bigint or text alike)."""
    if parts <= 1:
        return [(None, None)]
    percent = min(100.0, 100.0 * SAMPLE_KEYS / max(rows, 1))
    keys = conn.execute(st.key_sample(), {"percent": percent}).scalars().all()
    commit(conn)
    step = len(keys) / parts
    cuts = list(dict.fromkeys(keys[int(step * k)] for k in range(1, parts) if int(step * k) < len(keys)))
    bounds: list[Any] = [None, *cuts, None]
    return list(itertools.pairwise(bounds))


class RangeStager:
    """A Ray actor: loads the model once, checks it is the driver's, stages ranges."""

    def __init__(
        self,
        url: str,
        target: Target,
        ranges: list[tuple[Any, Any]],
        signature: ModelSignature,
        batch_size: int,
        threads: int,
        device: str,
    ) -> None:
        # The node's own models folder (VESTIGE_MODELS_DIR there), never the driver's path.
        models_dir = load_settings().models_dir
        self.embedder = resolve_embedder(
            signature.name, signature.dimension, models_dir=models_dir, threads=threads, device=device
        )
        found = self.embedder.signature()
        if found != signature:
            import socket

            # Other files under the same name would mix two embedding spaces: refuse.
            raise ModelIntegrityError(
                f"worker {socket.gethostname()}: {found.describe()} from {models_dir} is not the driver's "
                f"{signature.describe()}; give every node the same model files"
            )
        self.conn = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args()).connect()
        self.st = Statements(target)
        self.ranges = ranges
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        staged = []
        for number in batch["range"].tolist():
            low, high = self.ranges[number]
            within = self.st.key_in_range(low, high)
            staged.append(stage_rows(self.conn, self.st, self.embedder, self.batch_size, NoProgress(), within=within))
        return {"range": batch["range"], "staged": np.asarray(staged, dtype=np.int64)}


def stage_on_ray(
    conn: Connection,
    url: str,
    embedder: Embedder,
    options: RayOptions,
    *,
    target: Target,
    batch_size: int = 128,
    progress: Progress | None = None,
) -> StageReport:
    """`staging.stage()` on a Ray cluster. `url` is how the workers reach the database;
    `embedder` gives the signature every worker must reproduce (the driver does not embed)."""
    ray = import_ray()
    progress = progress or NoProgress()
    started = time.perf_counter()
    target = catalog.resolve_target(conn, target)
    st = Statements(target)
    signature = embedder.signature()
    description = f"vestige-embed: stage {target.describe()} for {embedder.name} on Ray"
    with idle_while_embedding(conn), run_lock(conn, target, description, transaction=False):
        todo, already = prepare_staging(conn, st, signature)
        inserted_before = _inserted(conn, st)
        ranges = key_ranges(conn, st, todo + already, options.parts(todo + already))
        _start(ray, options)
        dataset = ray.data.from_items([{"range": n} for n in range(len(ranges))], override_num_blocks=len(ranges))
        dataset = dataset.map_batches(
            RangeStager,
            fn_constructor_kwargs={
                "url": url,
                "target": target,
                "ranges": ranges,
                "signature": signature,
                "batch_size": batch_size,
                "threads": options.threads,
                "device": options.device,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker,
            **({"runtime_env": {"env_vars": dict(options.worker_env)}} if options.worker_env else {}),
        )
        log.info(
            "stage: %d ranges on Ray (%s), %d workers of %g CPU, %g GPU",
            len(ranges),
            options.address,
            options.workers,
            options.cpus_per_worker,
            options.gpus_per_worker,
        )
        progress.start(todo)
        staged, stalled = 0, threading.Event()
        try:
            with _watchdog(url, st, options.stall_secs, stalled):
                for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    count = int(out["staged"].sum())
                    staged += count
                    progress.advance(count)
        except KeyboardInterrupt:
            if stalled.is_set():
                raise StagingError(
                    f"no row was staged for {options.stall_secs:g} s: the Ray job is stuck (a worker waiting on a "
                    "lock, a node gone, or too few CPUs or GPUs for the workers asked for). What was staged is "
                    "kept; run the same command again to go on"
                ) from None
            raise
        except Exception as e:
            raise StagingError(f"the Ray job failed: {_cause(e)}. What was staged is kept; run again to go on") from e
        finally:
            progress.finish()
        _verify(conn, st, signature, _inserted(conn, st) - inserted_before)
    return StageReport(staged, already, round(time.perf_counter() - started, 6))


def _start(ray: Any, options: RayOptions) -> None:
    if not ray.is_initialized():
        if options.address == LOCAL:
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=options.address, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the driver's progress says it


def _inserted(conn: Connection, st: Statements) -> int:
    row = conn.execute(st.write_counters(st.relation())).first()
    commit(conn)
    return 0 if row is None else int(row[0])


def _verify(conn: Connection, st: Statements, signature: ModelSignature, inserted: int) -> None:
    """Every row is fresh, but rows edited or inserted while the job ran; anything else is a
    fault of the job, said loudly."""
    stale, edited = conn.execute(
        st.count_rows_and_matching(st.staged_any(signature), among=sa.not_(st.fresh_staged(signature)))
    ).one()
    missing = stale - edited
    commit(conn)
    if missing > inserted:
        raise StagingError(
            f"{missing} rows have no staged vector although every range reported done (only {inserted} rows were "
            "inserted while it ran): the job lost rows. Run the same command again (it stages only what is "
            "missing) and report this"
        )
    if edited or missing:
        log.info(
            "stage: %d rows edited and %d inserted while staging ran are not staged yet; "
            "run again, or let the change embed them",
            edited,
            missing,
        )


@contextlib.contextmanager
def _watchdog(url: str, st: Statements, stall_secs: float, stalled: threading.Event) -> Iterator[None]:
    """Sets `stalled` and interrupts the driver when the staging table's write counters stand
    still for `stall_secs` (the server's statistics: no scan, any table size)."""
    done = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        log.warning("stage: no watchdog: it interrupts the main thread, and this job runs in another")
        yield
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args())

    def watch() -> None:
        last, since = None, time.monotonic()
        with engine.connect() as watcher:
            while not done.wait(min(5.0, stall_secs / 4)):
                row = watcher.execute(st.write_counters(st.relation(st.target.staging_table))).first()
                commit(watcher)
                now = None if row is None else (int(row[0]), int(row[1]))
                if now != last:
                    last, since = now, time.monotonic()
                elif time.monotonic() - since > stall_secs:
                    stalled.set()
                    _thread.interrupt_main()
                    return

    thread = threading.Thread(target=watch, name="vestige-embed-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)
        engine.dispose()


def _cause(error: BaseException) -> str:
    """Our error's message when a worker raised one (Ray wraps it in tracebacks), else the
    error's last line."""
    text = str(error)
    ours = re.findall(r"^vestige_embed\.errors\.\w+: (.+)$", text, flags=re.MULTILINE)
    if ours:
        return str(ours[-1]).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
