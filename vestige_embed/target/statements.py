"""The statement builder: every statement vestige-embed runs, as SQLAlchemy constructs.

Online the store and run layers execute these objects; offline Alembic compiles the
same objects into the `--sql` script. No other module writes SQL. Identifiers are
quoted by SQLAlchemy; a target's `content` expression is the one piece of SQL text
that comes from outside (the operator writes it, like a revision's DDL).
"""

from __future__ import annotations

import enum
from typing import Any, cast

import sqlalchemy as sa
from pgvector.sqlalchemy import HALFVEC, VECTOR
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import OID
from sqlalchemy.schema import CreateIndex, CreateTable, DropIndex, DropTable

from vestige_embed.target.ddl import (
    AddColumn,
    AlterColumnType,
    Analyze,
    CloseCursor,
    CreateDatabase,
    CreateExtension,
    CreateUniqueIndexIfNotExists,
    DeclareCursor,
    DropColumn,
    DropDefault,
    FetchCursor,
    GuardBlock,
    LockTable,
    RenameColumn,
    RenameIndex,
    WhenTrue,
)
from vestige_embed.target.signature import ModelSignature, ModelState
from vestige_embed.target.target import DEFAULT_TARGET, KeyType, Storage, Target

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]

#: Blocks writers (and a second run: the mode conflicts with itself), never readers.
TABLE_LOCK_MODE = "SHARE ROW EXCLUSIVE"
#: What an application's INSERT or UPDATE takes anyway; the write helper takes it first,
#: so applications and runs lock in one order: the table, then the registry row.
WRITER_LOCK_MODE = "ROW EXCLUSIVE"
#: First key of the advisory lock that admits one run per target (second key: the target).
RUN_LOCK_NAMESPACE = 0x5645_4D42  # "VEMB"

REGISTRY = "embedding_model"
#: The staging table's column naming the model of each vector (`ModelSignature.key`), and
#: one that only vestige-embed 0.2's staging tables have (name, size and hash on every row).
STAGED_MODEL_KEY = "model_key"
LEGACY_STAGING_COLUMN = "model_hash"
#: pgvector's index access method that every target's search index uses.
INDEX_METHOD = "hnsw"
REGISTRY_KEY = "embedding_model_target_key"
#: The server-side cursor a locked data pass reads its rows through.
ROWS_CURSOR = "vestige_rows"
#: A row version's position in its table (block, line pointer): PostgreSQL's system column.
ROW_ADDRESS = "ctid"
#: Table locks (pg_locks' names) that keep every other session from writing the table or
#: vacuuming it: while this transaction holds one, only its own statements move a row.
WRITER_EXCLUDING_LOCKS = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
#: `pg_trigger.tgtype`'s bit of a trigger that fires on UPDATE.
_TRIGGER_ON_UPDATE = 1 << 4
#: The single-row registry of vestige-embed 0.1 had this key column (always 1).
LEGACY_REGISTRY_ID = "id"

# The build-memory formula: bytes of pgvector's in-memory HNSW graph per element, beyond
# the vector itself (measured order of magnitude: header, tuple ids, neighbour lists).
MIN_BUILD_MEMORY_MB = 64
_ELEMENT_OVERHEAD_BYTES = 256
_NEIGHBOR_BYTES = 16
_HEADROOM = 1.3
_MB = 1 << 20

_KEY_TYPES: dict[KeyType, sa.types.TypeEngine[Any]] = {
    KeyType.UUID: sa.Uuid(),
    KeyType.BIGINT: sa.BigInteger(),
    KeyType.TEXT: sa.Text(),
}
_CATALOG_KEY_TYPES = {"uuid": KeyType.UUID, "bigint": KeyType.BIGINT, "text": KeyType.TEXT}
#: Each key type's binary send function: its value as the bytes it travels as.
_KEY_SEND = {KeyType.UUID: "uuid_send", KeyType.BIGINT: "int8send", KeyType.TEXT: "textsend"}


#: The dry run's scratch table (TEMPORARY: this session only, gone at the end of its transaction).
CALIBRATION_TABLE = "vestige_estimate_calibration"


#: How an offline script that stopped at its guard goes on: revisions before the guarded
#: one were committed (one transaction per migration), so the script is written again from there.
_RUN_AGAIN = (
    "run the script again. Nothing of this revision was changed; revisions before it in the script "
    "were applied: when there were any, write the script again from the database's revision "
    "(`alembic upgrade REV:head --sql`, REV from SELECT version_num FROM alembic_version)."
)


class Calibration(enum.Enum):
    """What the dry run's scratch index is built over."""

    #: Random vectors of the target's size: no model needed, but harder to index than real ones.
    RANDOM = "random vectors"
    #: Vectors the caller sends (`:vectors`): the store's rows embedded with the target model.
    GIVEN = "of the store's rows, embedded with the target model"
    #: The store's own vectors: what its current index holds.
    STORED = "of the store's current vectors"


class PassThrough(sa.types.UserDefinedType[Any]):
    """A bind type that hands the value to psycopg untouched (our binary dumpers do the work)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return ""

    def bind_processor(self, dialect: sa.Dialect) -> None:
        return None


def vector_type(storage: Storage, dimension: int | None = None) -> sa.types.TypeEngine[Any]:
    """`vector(N)` / `halfvec(N)`, or the type without a typmod (`dimension` None)."""
    return VECTOR(dimension) if storage is Storage.VECTOR else HALFVEC(dimension)


def key_type_of(catalog_type: str) -> KeyType | None:
    """The key type a catalog type name (`format_type`) stands for, None if unsupported."""
    return _CATALOG_KEY_TYPES.get(catalog_type)


#: How often a running statement checks that its client is still connected: the index
#: build of a killed run stops within this and releases the table, instead of running on.
CLIENT_CHECK_SETTING = "client_connection_check_interval"
CLIENT_CHECK_INTERVAL = "1s"


def set_setting(name: str, value: str | sa.ColumnElement[Any], *, local: bool = True) -> sa.Select[Any]:
    """`SELECT set_config(name, value, local)`: transaction-local unless `local` is False."""
    return sa.select(sa.func.set_config(name, value, local))


def current_setting(name: str) -> sa.Select[Any]:
    return sa.select(sa.func.current_setting(name))


def compiled(statement: sa.ClauseElement) -> str:
    """A statement as PostgreSQL receives it, values inlined (offline script, logs)."""
    return str(statement.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True})).strip()


# The database.

PGVECTOR_EXTENSION = "vector"


def create_pgvector() -> CreateExtension:
    return CreateExtension(PGVECTOR_EXTENSION)


def database_exists(name: str) -> sa.Select[Any]:
    databases = sa.table("pg_database", sa.column("datname"))
    return sa.select(sa.exists().where(databases.c.datname == name))


def create_database(name: str) -> CreateDatabase:
    return CreateDatabase(name)


# The registry: one row per target.

_registry_metadata = sa.MetaData()


def _staged_model_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("staged_model_name", sa.Text, nullable=True),
        sa.Column("staged_dimension", sa.Integer, nullable=True),
        sa.Column("staged_model_hash", sa.Text, nullable=True),
    ]


STAGED_MODEL_COLUMNS = tuple(c.name for c in _staged_model_columns())
registry = sa.Table(
    REGISTRY,
    _registry_metadata,
    sa.Column("target_table", sa.Text, nullable=False),
    sa.Column("target_column", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("dimension", sa.Integer, nullable=False),
    sa.Column("model_hash", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default=ModelState.READY.value),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # The model a change is being staged for (set by `stage`, cleared when a change ends):
    # writers that follow the write contract stage their rows for it too.
    *_staged_model_columns(),
    sa.PrimaryKeyConstraint("target_table", "target_column", name=REGISTRY_KEY),
    sa.CheckConstraint(
        sa.column("state").in_([s.value for s in ModelState]),
        name=f"{REGISTRY}_state",
    ),
    sa.CheckConstraint(sa.column("dimension") > 0, name=f"{REGISTRY}_dimension_positive"),
)


def create_registry() -> list[sa.schema.ExecutableDDLElement]:
    """Create the registry, or bring 0.1's single-row registry to one row per target.

    Every statement is idempotent, so the same list serves a new database, an old one
    (its row becomes the default target's) and an offline script.
    """
    table_key, column_key = DEFAULT_TARGET.registry_key
    return [
        CreateTable(registry, if_not_exists=True),
        AddColumn(
            registry, sa.Column("target_table", sa.Text, nullable=False, server_default=table_key), if_not_exists=True
        ),
        AddColumn(
            registry, sa.Column("target_column", sa.Text, nullable=False, server_default=column_key), if_not_exists=True
        ),
        *(AddColumn(registry, column, if_not_exists=True) for column in _staged_model_columns()),
        DropColumn(registry, LEGACY_REGISTRY_ID, if_exists=True),
        DropDefault(registry, "target_table"),
        DropDefault(registry, "target_column"),
        CreateUniqueIndexIfNotExists(registry, REGISTRY_KEY, ["target_table", "target_column"]),
    ]


def drop_registry() -> sa.schema.ExecutableDDLElement:
    return DropTable(registry, if_exists=True)


_pg_attribute = sa.table(
    "pg_attribute",
    sa.column("attrelid"),
    sa.column("attname"),
    sa.column("atttypid"),
    sa.column("atttypmod"),
    sa.column("attisdropped"),
)
_pg_index = sa.table("pg_index", sa.column("indexrelid"), sa.column("indisvalid"))
_pg_class = sa.table(
    "pg_class", sa.column("oid"), sa.column("relowner"), sa.column("relkind"), sa.column("relhassubclass")
)
_pg_trigger = sa.table(
    "pg_trigger", sa.column("tgrelid"), sa.column("tgisinternal"), sa.column("tgenabled"), sa.column("tgtype")
)
_pg_locks = sa.table(
    "pg_locks", sa.column("locktype"), sa.column("relation"), sa.column("mode"), sa.column("classid"),
    sa.column("objid"), sa.column("objsubid"), sa.column("pid"), sa.column("granted"),
)  # fmt: skip


def column_info(relation: str, column: str) -> sa.Select[Any]:
    """`(type name, typmod)` of a column; no row when the table or column is absent."""
    a = _pg_attribute.c
    return sa.select(sa.func.format_type(a.atttypid, None), a.atttypmod).where(
        a.attrelid == sa.func.to_regclass(relation), a.attname == column, sa.not_(a.attisdropped)
    )


def relation_exists(relation: str) -> sa.Select[Any]:
    return sa.select(sa.func.to_regclass(relation).is_not(None))


def pgvector_type_oids() -> sa.Select[Any]:
    """The oids of pgvector's types and their arrays, labelled by type name (NULL if absent)."""
    names = [name for storage in Storage for name in (storage.value, f"{storage.value}[]")]
    columns = [sa.cast(sa.func.to_regtype(name), sa.Integer).label(name) for name in names]
    return cast(sa.Select[Any], sa.select(*columns))


def registry_relation() -> str:
    return DIALECT.identifier_preparer.format_table(registry)


class Statements:
    """Every statement for one target."""

    def __init__(self, target: Target) -> None:
        self.target = target
        key_type = _KEY_TYPES.get(target.key_type) if target.key_type else None
        key_sa = key_type if key_type is not None else sa.types.NullType()
        metadata = sa.MetaData()
        columns: list[sa.Column[Any]] = [
            sa.Column(target.key, key_sa, primary_key=True),
            sa.Column(target.embedding, vector_type(target.storage)),
            sa.Column(target.next_embedding, vector_type(target.storage)),
            sa.Column(ROW_ADDRESS, PassThrough(), system=True),
        ]
        if target.content_is_column and target.content not in (target.key, target.embedding):
            columns.append(sa.Column(target.content, sa.Text))
        self.table = sa.Table(target.table_name, metadata, *columns, schema=target.schema)
        self.staging = sa.Table(
            target.staging_table,
            metadata,
            sa.Column("row_key", key_sa, primary_key=True),
            sa.Column("staged_vector", vector_type(target.storage), nullable=False),
            sa.Column("content_sha256", sa.LargeBinary, nullable=False),
            # The model a vector was made with, as `ModelSignature.key`: the signature itself
            # is the registry's (staged_model_*), once, not repeated on every row.
            sa.Column(STAGED_MODEL_KEY, sa.BigInteger, nullable=False),
            sa.Index(target.staging_content_index, "content_sha256"),
            schema=target.schema,
            # A cache of recomputable vectors: no WAL, so staging adds no fsyncs to the
            # application's commits; a server crash empties it and a rerun stages again.
            prefixes=["UNLOGGED"],
        )

    # Names and expressions.

    def relation(self, name: str | None = None) -> str:
        """A relation of the target's schema (default: the table), quoted, as `to_regclass` takes it."""
        preparer = DIALECT.identifier_preparer
        quoted = preparer.quote(name or self.target.table_name)
        return f"{preparer.quote_schema(self.target.schema)}.{quoted}" if self.target.schema else quoted

    @property
    def key(self) -> sa.Column[Any]:
        return self.table.c[self.target.key]

    @property
    def address(self) -> sa.Column[Any]:
        """The row version's position (`ctid`): a row's handle while nothing can move it (`rows_stay_put`)."""
        return self.table.c[ROW_ADDRESS]

    def column(self, name: str) -> sa.Column[Any]:
        return self.table.c[name]

    @property
    def content(self) -> sa.ColumnElement[str]:
        """The text to embed for a row; NULL (say, an expression over a NULL column) embeds as ''."""
        raw: sa.ColumnElement[Any] = (
            self.table.c[self.target.content]
            if self.target.content_is_column
            else sa.literal_column(f"({self.target.content})", type_=sa.Text)
        )
        return sa.func.coalesce(raw, "", type_=sa.Text)

    @property
    def content_hash(self) -> sa.ColumnElement[bytes]:
        """The one definition of a content's hash (server side): staging freshness hangs on it."""
        return sa.func.sha256(sa.func.convert_to(self.content, "UTF8"), type_=sa.LargeBinary)

    # Locks and settings.

    def lock(self) -> LockTable:
        return LockTable(self.table, TABLE_LOCK_MODE)

    def _run_lock_key(self) -> sa.ColumnElement[int]:
        table_key, column_key = self.target.registry_key
        return sa.func.hashtext(f"{table_key}.{column_key}", type_=sa.Integer)

    def try_run_lock(self, *, transaction: bool = False) -> sa.Select[Any]:
        """One run per target: true when this session (or transaction) now holds the target's lock."""
        function = sa.func.pg_try_advisory_xact_lock if transaction else sa.func.pg_try_advisory_lock
        return sa.select(function(RUN_LOCK_NAMESPACE, self._run_lock_key()))

    def release_run_lock(self) -> sa.Select[Any]:
        return sa.select(sa.func.pg_advisory_unlock(RUN_LOCK_NAMESPACE, self._run_lock_key()))

    def run_lock_holder(self) -> sa.Select[Any]:
        """`(pid, application_name, backend_start)` of the session holding the target's run lock."""
        locks = _pg_locks
        activity = sa.table(
            "pg_stat_activity", sa.column("pid"), sa.column("application_name"), sa.column("backend_start")
        )
        return (
            sa.select(activity.c.pid, activity.c.application_name, activity.c.backend_start)
            .select_from(locks.join(activity, locks.c.pid == activity.c.pid))
            .where(
                locks.c.locktype == "advisory",
                locks.c.granted,
                locks.c.objsubid == 2,
                locks.c.classid == sa.cast(sa.literal(RUN_LOCK_NAMESPACE), OID),
                locks.c.objid == sa.cast(self._run_lock_key(), OID),
            )
        )

    def rows_stay_put(self) -> sa.Select[Any]:
        """True when no row can move to another address before this transaction ends but by
        its own UPDATEs: it holds a lock that keeps other sessions from writing or vacuuming
        the table; the table is a plain one without children (an address is unique in it);
        and no trigger of its own fires on UPDATE (one could update other rows, which then
        are not at the address that was read; a rule cannot, the rewriter refuses the
        recursion). A write that finds fewer rows fails the pass. NULL: no such table."""
        c, t, lock = _pg_class.c, _pg_trigger.c, _pg_locks.c
        update_trigger = sa.exists().where(
            t.tgrelid == c.oid,
            sa.not_(t.tgisinternal),  # foreign keys' own triggers: they act only when a key changes
            t.tgenabled != "D",
            t.tgtype.op("&")(_TRIGGER_ON_UPDATE) != 0,
        )
        held = sa.exists().where(
            lock.locktype == "relation",
            lock.relation == c.oid,
            lock.pid == sa.func.pg_backend_pid(),
            lock.granted,
            lock.mode.in_(WRITER_EXCLUDING_LOCKS),
        )
        stay = sa.and_(
            held,
            c.relkind == "r",
            sa.not_(c.relhassubclass),
            sa.not_(update_trigger),
        )
        return sa.select(stay).where(c.oid == sa.func.to_regclass(self.relation()))

    def alter_rights(self) -> sa.Select[Any]:
        """`(current role, owner, may alter)`: ALTER TABLE and its indexes need the owner's
        rights (the owner, a member of its role, or a superuser)."""
        c = _pg_class.c
        owner = sa.func.pg_get_userbyid(c.relowner)
        may = sa.func.pg_has_role(sa.func.current_user(), c.relowner, "USAGE")
        return sa.select(sa.func.current_user(), owner, may).where(c.oid == sa.func.to_regclass(self.relation()))

    def writer_lock(self) -> LockTable:
        return LockTable(self.table, WRITER_LOCK_MODE)

    def model_for_write(self) -> sa.Select[Any]:
        """The registry row, locked FOR SHARE until the writer's transaction ends."""
        return self.read_registry().with_for_update(read=True)

    # The column type (the typmod is the dimension).

    def column_info(self, column: str | None = None) -> sa.Select[Any]:
        return column_info(self.relation(), column or self.target.embedding)

    def typmod_differs(self, dimension: int) -> sa.Select[Any]:
        """True when the column's declared dimension is not `dimension` (the offline script's test)."""
        a = _pg_attribute.c
        declared = (
            sa.select(a.atttypmod)
            .where(a.attrelid == sa.func.to_regclass(self.relation()), a.attname == self.target.embedding)
            .scalar_subquery()
        )
        return sa.select(declared.is_distinct_from(dimension))

    def relax(self, column: str | None = None) -> AlterColumnType:
        """Approach B's first step: drop the typmod (catalog-only)."""
        return AlterColumnType(self.table, column or self.target.embedding, vector_type(self.target.storage))

    def tighten(self, dimension: int, column: str | None = None) -> AlterColumnType:
        """The integrity gate: rewrites the table, fails if any row has another size."""
        column = column or self.target.embedding
        return AlterColumnType(self.table, column, vector_type(self.target.storage, dimension))

    def add_next_column(self, dimension: int) -> AddColumn:
        column = sa.Column(self.target.next_embedding, vector_type(self.target.storage, dimension))
        return AddColumn(self.table, column)

    def drop_column(self, name: str) -> DropColumn:
        return DropColumn(self.table, name, if_exists=True)

    def swap_next_column(self) -> list[sa.schema.ExecutableDDLElement]:
        """Drop the old column (and its index) and give the new one its name: catalog-only."""
        return [
            DropColumn(self.table, self.target.embedding),
            RenameColumn(self.table, self.target.next_embedding, self.target.embedding),
        ]

    def rename_next_index(self) -> RenameIndex:
        return self.rename_index(self.target.next_index)

    def rename_index(self, old: str) -> RenameIndex:
        """Give the index `old` the target's index name."""
        return RenameIndex(self.target.schema, old, self.target.index)

    # The HNSW index.

    def hnsw_index(self, column: str | None = None, *, name: str | None = None, concurrently: bool = False) -> sa.Index:
        column = column or self.target.embedding
        table = sa.Table(
            self.target.table_name,
            sa.MetaData(),
            sa.Column(column, vector_type(self.target.storage)),
            schema=self.target.schema,
        )
        return sa.Index(
            name or self.target.index,
            table.c[column],
            postgresql_using=INDEX_METHOD,
            postgresql_ops={column: self.target.distance.opclass(self.target.storage)},
            postgresql_with={"m": self.target.hnsw.m, "ef_construction": self.target.hnsw.ef_construction},
            postgresql_concurrently=concurrently,
        )

    def create_index(
        self,
        column: str | None = None,
        *,
        name: str | None = None,
        concurrently: bool = False,
        if_not_exists: bool = False,
    ) -> CreateIndex:
        return CreateIndex(self.hnsw_index(column, name=name, concurrently=concurrently), if_not_exists=if_not_exists)

    # The dry run's measurements: a sample of the store, an index build on a scratch table.

    def sample_contents(self) -> sa.Select[Any]:
        """About `:percent` % of the rows' contents (page-independent), at most `:size`."""
        sampled = self.table.tablesample(sa.func.bernoulli(sa.bindparam("percent", type_=sa.Float)))
        column = self.target.content
        content = sa.func.coalesce(sampled.c[column], "") if self.target.content_is_column else self.content
        return sa.select(content).select_from(sampled).limit(sa.bindparam("size", type_=sa.Integer))

    # Adoption: a column of vectors made elsewhere, checked and registered as they are.

    def sample_stored(self) -> sa.Select[Any]:
        """`(content, stored vector as text)` of about `:percent` % of the rows that have a vector,
        at most `:size`."""
        sampled = self.table.tablesample(sa.func.bernoulli(sa.bindparam("percent", type_=sa.Float)))
        column = self.target.content
        content = sa.func.coalesce(sampled.c[column], "") if self.target.content_is_column else self.content
        stored = sampled.c[self.target.embedding]
        query = sa.select(content, sa.cast(stored, sa.Text)).select_from(sampled).where(stored.is_not(None))
        return query.limit(sa.bindparam("size", type_=sa.Integer))

    def hnsw_indexes(self) -> sa.TextClause:
        """`(name, operator class)` of every HNSW index on the embedding column alone."""
        return sa.text(
            "SELECT c.relname, o.opcname FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am m ON m.oid = c.relam"
            " JOIN pg_opclass o ON o.oid = i.indclass[0]"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = to_regclass(:relation) AND m.amname = :method AND i.indnatts = 1"
            " AND a.attname = :column ORDER BY c.relname"
        ).bindparams(relation=self.relation(), column=self.target.embedding, method=INDEX_METHOD)

    def count_rows_and_contents(self) -> sa.Select[Any]:
        """`(rows, distinct contents)` in one scan: a run embeds each distinct content once."""
        counts = self.count_rows().with_only_columns(sa.func.count(), sa.func.count(sa.distinct(self.content_hash)))
        return cast(sa.Select[Any], counts)

    def calibration_build(self, dimension: int, source: Calibration) -> list[sa.Executable]:
        """A scratch table of `:rows` vectors and the target's HNSW index over it: how fast
        this server builds one. UNLOGGED in the target's schema, not TEMPORARY: parallel
        workers cannot read a temporary table, and the real build has them. The caller
        creates it in a savepoint it rolls back, so it is never committed."""
        table = sa.Table(
            CALIBRATION_TABLE,
            sa.MetaData(),
            sa.Column("v", vector_type(self.target.storage, dimension)),
            schema=self.target.schema,
            prefixes=["UNLOGGED"],
        )
        if source is Calibration.RANDOM:
            rows = sa.func.generate_series(1, sa.bindparam("rows", type_=sa.Integer)).table_valued("g").render_derived()
            values = sa.func.generate_series(1, dimension).table_valued("d").render_derived()
            random = (
                sa.select(sa.func.array_agg(sa.func.random() - 0.5))
                .select_from(values)
                .where(rows.c.g > 0)  # correlated: a new vector per row
                .scalar_subquery()
            )
            vectors = sa.select(sa.cast(random, vector_type(self.target.storage))).select_from(rows)
        elif source is Calibration.GIVEN:
            vectors = sa.select(sa.func.unnest(sa.bindparam("vectors", type_=PassThrough())))
        else:  # the store's own vectors, as its current index holds them
            stored = self.column(self.target.embedding)
            vectors = sa.select(stored).where(stored.is_not(None)).limit(sa.bindparam("rows", type_=sa.Integer))
        index = sa.Index(
            f"{CALIBRATION_TABLE}_hnsw",
            table.c.v,
            postgresql_using=INDEX_METHOD,
            postgresql_ops={"v": self.target.distance.opclass(self.target.storage)},
            postgresql_with={"m": self.target.hnsw.m, "ef_construction": self.target.hnsw.ef_construction},
        )
        return [CreateTable(table), table.insert().from_select(["v"], vectors), CreateIndex(index)]

    def drop_index(self, name: str | None = None, *, concurrently: bool = False) -> DropIndex:
        return DropIndex(self.hnsw_index(name=name, concurrently=concurrently), if_exists=True)

    def index_validity(self, name: str | None = None) -> sa.Select[Any]:
        """True valid, False INVALID (an interrupted CONCURRENTLY build); no row when absent."""
        i = _pg_index.c
        return sa.select(i.indisvalid).where(
            i.indexrelid == sa.func.to_regclass(self.relation(name or self.target.index))
        )

    def index_definition(self, name: str | None = None) -> sa.Select[Any]:
        return sa.select(sa.func.pg_get_indexdef(sa.func.to_regclass(self.relation(name or self.target.index))))

    def build_memory_mb(self, rows: int | sa.ColumnElement[Any], dimension: int, cap_mb: int) -> sa.ColumnElement[int]:
        """The one build-memory formula: `maintenance_work_mem` (MB) that holds the whole
        graph, within [64MB, cap_mb]. `rows` is a number online, a count offline."""
        per_row = self.target.storage.bytes_per_dimension * dimension
        per_row += 2 * self.target.hnsw.m * _NEIGHBOR_BYTES + _ELEMENT_OVERHEAD_BYTES
        rows_sql = rows if isinstance(rows, sa.ColumnElement) else sa.literal(rows, sa.BigInteger)
        wanted = sa.cast(sa.func.floor(rows_sql * per_row * _HEADROOM / _MB), sa.BigInteger) + 1
        return sa.func.greatest(MIN_BUILD_MEMORY_MB, sa.func.least(wanted, cap_mb), type_=sa.BigInteger)

    def build_settings(
        self,
        rows: int | None,
        dimension: int,
        *,
        explicit_mb: int | None,
        cap_mb: int,
        workers: int,
        local: bool = True,
    ) -> list[sa.Select[Any]]:
        """The settings of an index build; `rows` None counts the table (offline)."""
        if explicit_mb is not None:
            memory: sa.ColumnElement[Any] = sa.literal(f"{explicit_mb}MB")
        else:
            counted = self.count_rows().scalar_subquery() if rows is None else rows
            memory = sa.cast(self.build_memory_mb(counted, dimension, cap_mb), sa.Text) + "MB"
        return [
            set_setting("maintenance_work_mem", memory, local=local),
            set_setting("max_parallel_maintenance_workers", str(workers), local=local),
        ]

    # Rows.

    def analyze(self) -> Analyze:
        return Analyze(self.table)

    def count_rows(self, where: sa.ColumnElement[bool] | None = None) -> sa.Select[Any]:
        query = sa.select(sa.func.count()).select_from(self.table)
        return query if where is None else query.where(where)

    def count_rows_and_matching(
        self, where: sa.ColumnElement[bool], among: sa.ColumnElement[bool] | None = None
    ) -> sa.Select[Any]:
        """`(rows, rows matching where)` in one scan, of the rows matching `among` (default: all)."""
        counts = self.count_rows(among).with_only_columns(sa.func.count(), sa.func.count().filter(where))
        return cast(sa.Select[Any], counts)

    def count_rows_without_vector(self) -> sa.Select[Any]:
        return self.count_rows(self.table.c[self.target.embedding].is_(None))

    def rows_page(self, where: sa.ColumnElement[bool] | None = None, *, first: bool, with_hash: bool) -> sa.Select[Any]:
        """One page of `rows`, keyset-paged: `key > :after ... LIMIT :size` (no `after` on the first)."""
        condition = self.key > sa.bindparam("after") if not first else None
        both = [c for c in (where, condition) if c is not None]
        query = self.rows(sa.and_(*both) if both else None, with_hash=with_hash)
        return query.limit(sa.bindparam("size", type_=sa.Integer))

    def rows(
        self,
        where: sa.ColumnElement[bool] | None = None,
        *,
        with_hash: bool = False,
        by_content: bool = False,
        wire_keys: bool = False,
        by_address: bool = False,
    ) -> sa.Select[Any]:
        """`(key, content[, content_sha256])` in key order: what a data pass embeds (staging
        keeps the hash of what it embedded). `by_content` orders by content instead, byte by
        byte (`COLLATE "C"`: no locale rules, and cheaper than hashing every row first):
        repeated contents arrive together, so each is embedded once. `wire_keys`: each key as
        the bytes it travels as (`bytea`, from its type's send function), to be sent back as
        it came: no Python value (a `uuid.UUID`) is made of it and taken apart again.
        `by_address`: each row's address (`ctid`) in place of its key."""
        row: sa.Column[Any] = self.address if by_address else self.key
        key: sa.ColumnElement[Any] = row
        if wire_keys and not by_address:
            send = getattr(sa.func.pg_catalog, _KEY_SEND[self.target.resolved_key_type])
            key = send(self.key, type_=sa.LargeBinary).label(self.target.key)
        # Ordered by the selected column itself: an ORDER BY expression of its own is a second
        # copy of every content in the sort (20,000 rows: 3.8 MB and 19.9 ms, against 3.1 MB and 13.8 ms).
        content = (sa.collate(self.content, "C") if by_content else self.content).label("content")
        columns: list[sa.ColumnElement[Any]] = [key, content]
        if with_hash:
            columns.append(self.content_hash.label("content_sha256"))
        order = (content,) if by_content else ()
        query = sa.select(*columns).order_by(*order, row)
        return query if where is None else query.where(where)

    def declare_rows(self, where: sa.ColumnElement[bool] | None = None, *, by_address: bool = False) -> DeclareCursor:
        """The rows of a locked data pass, by content, keys as sent (or addresses), behind a
        server-side cursor."""
        return DeclareCursor(ROWS_CURSOR, self.rows(where, by_content=True, wire_keys=True, by_address=by_address))

    def fetch_rows(self, count: int) -> FetchCursor:
        return FetchCursor(ROWS_CURSOR, count)

    def close_rows(self) -> CloseCursor:
        return CloseCursor(ROWS_CURSOR)

    def write_vectors(self, column: str | None = None, *, by_address: bool = False) -> sa.Update:
        """`UPDATE t SET column = v.vector FROM unnest(:keys, :vectors) v WHERE t.key = v.key`.
        `by_address`: `:keys` are the rows' addresses, `WHERE t.ctid = v.address`: each row
        read where it is, without a search of the key's index (only while `rows_stay_put`)."""
        handle, match = ("address", self.address) if by_address else ("key", self.key)
        pairs = (
            sa.func.unnest(sa.bindparam("keys", type_=PassThrough()), sa.bindparam("vectors", type_=PassThrough()))
            .table_valued(handle, "vector")
            .render_derived(name="v")
        )
        column = column or self.target.embedding
        return self.table.update().values({column: pairs.c.vector}).where(match == pairs.c[handle])

    # Staging.

    def staging_exists(self) -> sa.Select[Any]:
        """True when the staging table exists in this version's shape (0.2's counts as absent)."""
        return sa.select(column_info(self.relation(self.target.staging_table), STAGED_MODEL_KEY).exists())

    def create_staging(self) -> list[sa.Executable]:
        """The staging table and its content-hash index (added to tables staged before it). A
        table of vestige-embed 0.2's shape is dropped first: staged vectors are a cache."""
        (index,) = self.staging.indexes
        legacy = sa.select(column_info(self.relation(self.target.staging_table), LEGACY_STAGING_COLUMN).exists())
        return [
            WhenTrue(legacy, DropTable(self.staging)),
            CreateTable(self.staging, if_not_exists=True),
            CreateIndex(index, if_not_exists=True),
        ]

    def drop_staging(self) -> DropTable:
        return DropTable(self.staging, if_exists=True)

    def staged_for(self, signature: ModelSignature) -> sa.ColumnElement[bool]:
        return self.staging.c[STAGED_MODEL_KEY] == sa.literal(signature.key, sa.BigInteger)

    def _fresh(self, signature: ModelSignature, *, after: bool = False) -> sa.ColumnElement[bool]:
        s = self.staging.c
        fresh = sa.and_(s.row_key == self.key, self.staged_for(signature), s.content_sha256 == self.content_hash)
        return sa.and_(fresh, s.row_key > sa.bindparam("after")) if after else fresh

    def fresh_staged(self, signature: ModelSignature, *, after: bool = False) -> sa.ColumnElement[bool]:
        """True for a row whose staged vector is for `signature` and its current content.
        `after`: for key pages past `:after`, bounding the staging side too, so the join
        starts at the page instead of reading staging from its first key (each page would
        cost the whole table so far)."""
        return sa.select(sa.literal(1)).where(self._fresh(signature, after=after)).exists()

    def holds_fresh_staged(self, signature: ModelSignature, column: str) -> sa.ColumnElement[bool]:
        """True for a row whose `column` holds its fresh staged vector: applied, not skipped
        by a trigger that returned NULL (such a row still holds the old model's vector)."""
        return sa.select(sa.literal(1)).where(self._fresh(signature), self._holds_staged(column)).exists()

    def _holds_staged(self, column: str) -> sa.ColumnElement[bool]:
        return self.column(column).is_not_distinct_from(self.staging.c.staged_vector)

    def apply_staged(self, signature: ModelSignature, column: str | None = None) -> sa.Update:
        """Copy every fresh staged vector into `column` (online and in the offline script)."""
        column = column or self.target.embedding
        return self.table.update().values({column: self.staging.c.staged_vector}).where(self._fresh(signature))

    def copy_staged_changed(self, signature: ModelSignature, column: str) -> sa.Update:
        """`apply_staged`, skipping rows that already hold the staged vector (a rerun's copy)."""
        return self.apply_staged(signature, column).where(sa.not_(self._holds_staged(column)))

    def key_sample(self) -> sa.Select[Any]:
        """About `:percent` % of the keys (pages sampled: cheap on any size), in key order."""
        sampled = self.table.tablesample(sa.func.system(sa.bindparam("percent", type_=sa.Float)))
        key = sampled.c[self.target.key]
        return sa.select(key).select_from(sampled).order_by(key)

    def staged_any(self, signature: ModelSignature) -> sa.ColumnElement[bool]:
        """True for a row with a vector staged for `signature`, fresh or not."""
        s = self.staging.c
        return sa.select(sa.literal(1)).where(s.row_key == self.key, self.staged_for(signature)).exists()

    def write_counters(self, relation: str) -> sa.Select[Any]:
        """`(rows inserted, rows updated)` since the server's statistics began, for `relation`
        (cheap on any size; the server publishes a backend's counts within about a second)."""
        stats = sa.table("pg_stat_user_tables", sa.column("relid"), sa.column("n_tup_ins"), sa.column("n_tup_upd"))
        return sa.select(stats.c.n_tup_ins, stats.c.n_tup_upd).where(
            stats.c.relid == sa.cast(sa.func.to_regclass(relation), OID)
        )

    def key_in_range(self, low: Any, high: Any) -> sa.ColumnElement[bool]:
        """`low <= key < high` (None: no bound), in the server's own key order."""
        bounds: list[sa.ColumnElement[bool]] = []
        if low is not None:
            bounds.append(self.key >= low)
        if high is not None:
            bounds.append(self.key < high)
        return sa.and_(sa.true(), *bounds)

    def key_page_end(self, *, first: bool) -> sa.Select[Any]:
        """The last key of the `:size` rows after `:after` (none when fewer are left)."""
        query = sa.select(self.key).order_by(self.key)
        if not first:
            query = query.where(self.key > sa.bindparam("after"))
        return query.offset(sa.bindparam("skip", type_=sa.Integer)).limit(1)

    def copy_staged_page(self, signature: ModelSignature, column: str, *, first: bool, last: bool) -> sa.Update:
        """`copy_staged_changed` for the keys in (`:after`, `:upto`]: short transactions, so
        writers never wait long for the rows it locks."""
        update = self.copy_staged_changed(signature, column)
        row_key = self.staging.c.row_key  # bounded on both sides: the join starts at the page
        if not first:
            update = update.where(self.key > sa.bindparam("after"), row_key > sa.bindparam("after"))
        if not last:
            update = update.where(self.key <= sa.bindparam("upto"), row_key <= sa.bindparam("upto"))
        return update

    def staged_by_content(self, signature: ModelSignature) -> sa.Select[Any]:
        """`(hash, vector or NULL)` for each content hash in `:hashes`: one vector staged for
        `signature` (as `real[]`, whatever the storage), which rows repeating it reuse."""
        s = self.staging.c
        hashes = (
            sa.func.unnest(sa.bindparam("hashes", type_=PassThrough())).table_valued("digest").render_derived(name="h")
        )
        vector = (
            sa.select(sa.cast(s.staged_vector, postgresql.ARRAY(sa.REAL)))
            .where(self.staged_for(signature), s.content_sha256 == hashes.c.digest)
            .limit(1)
            .scalar_subquery()
        )
        return sa.select(hashes.c.digest, vector)

    def stage_vectors(self, signature: ModelSignature) -> sa.Insert:
        """Upsert `(:keys, :vectors, :hashes)` as vectors of `signature`, skipping rows whose
        content changed since it was read: a staged vector is never older than the row's
        content, and never replaces a fresher one an application staged meanwhile."""
        rows = (
            sa.func.unnest(
                sa.bindparam("keys", type_=PassThrough()),
                sa.bindparam("vectors", type_=PassThrough()),
                sa.bindparam("hashes", type_=PassThrough()),
            )
            .table_valued("key", "vector", "content_sha256")
            .render_derived(name="v")
        )
        source = sa.select(
            rows.c.key, rows.c.vector, rows.c.content_sha256, sa.literal(signature.key, sa.BigInteger)
        ).where(self.key == rows.c.key, rows.c.content_sha256 == self.content_hash)
        return self._upsert_staged(source)

    def _upsert_staged(self, source: sa.Select[Any]) -> sa.Insert:
        names = ["row_key", "staged_vector", "content_sha256", STAGED_MODEL_KEY]
        stmt = postgresql.insert(self.staging).from_select(names, source)
        upsert = stmt.on_conflict_do_update(
            index_elements=[self.staging.c.row_key], set_={n: stmt.excluded[n] for n in names[1:]}
        )
        return upsert.execution_options(preserve_rowcount=True)  # how many were staged

    def count_staged(self, where: sa.ColumnElement[bool] | None = None) -> sa.Select[Any]:
        query = sa.select(sa.func.count()).select_from(self.staging)
        return query if where is None else query.where(where)

    def drop_staged_other_models(self, signature: ModelSignature) -> sa.Delete:
        """Staging keeps one model per row: staging for a new model replaces the old one's."""
        return self.staging.delete().where(sa.not_(self.staged_for(signature)))

    def release_staged(self, signature: ModelSignature) -> sa.Delete:
        """After a change to `signature` its staged vectors are spent (the one clean-up policy:
        other models' vectors stay; an empty table stays until `stage --drop`)."""
        return self.staging.delete().where(self.staged_for(signature))

    def offline_guard(self, signature: ModelSignature, stage_command: str) -> GuardBlock:
        """Stops the offline script, before any change, unless no other run holds the target
        and every row has a fresh staged vector."""
        busy = sa.select(sa.func.count()).where(sa.not_(self.try_run_lock(transaction=True).scalar_subquery()))
        missing_table = sa.select(sa.func.count()).where(sa.not_(self.staging_exists().scalar_subquery()))
        stale = self.count_rows(
            sa.not_(
                sa.select(sa.literal(1))
                .where(self._fresh(signature), sa.func.vector_dims(self.staging.c.staged_vector) == signature.dimension)
                .exists()
            )
        )
        space = f"{signature.name} ({signature.dimension}-d)"
        return GuardBlock(
            [
                (
                    busy,
                    sa.literal(
                        f"vestige: {self.target.describe()} is being changed by another vestige-embed run "
                        "(see pg_stat_activity). Run this script when it has finished. Nothing was changed."
                    ),
                ),
                (
                    missing_table,
                    sa.literal(
                        f"vestige: table {self.target.staging_table} does not exist: nothing is staged for {space} "
                        "(an older vestige-embed's staging table counts as none). "
                        f"Run `{stage_command}`, then {_RUN_AGAIN}"
                    ),
                ),
                (
                    stale,
                    sa.literal("vestige: ")
                    + sa.literal_column("missing::text", sa.Text)
                    + sa.literal(
                        f" rows have no fresh staged vector for {space}: added or edited since staging. "
                        f"Run `{stage_command}` again, then {_RUN_AGAIN}"
                    ),
                ),
            ]
        )

    def rows_guard(self, how_to_go_on: str) -> GuardBlock:
        """Stops a downgrade that would drop the table while it holds rows (online and in the
        `--sql` script alike): the team's memories are not the schema's to drop unasked."""
        return GuardBlock(
            [
                (
                    self.count_rows(),
                    sa.literal(f"vestige: {self.target.table} holds ")
                    + sa.literal_column("missing::text", sa.Text)
                    + sa.literal(
                        " rows, and this downgrade drops the table with them. Nothing was changed. "
                        f"To drop them, run the downgrade again with {how_to_go_on}."
                    ),
                )
            ]
        )

    # The registry row of this target.

    def _registry_row(self) -> sa.ColumnElement[bool]:
        table_key, column_key = self.target.registry_key
        return sa.and_(registry.c.target_table == table_key, registry.c.target_column == column_key)

    def read_registry(self) -> sa.Select[Any]:
        r = registry.c
        return sa.select(r.model_name, r.dimension, r.model_hash, r.state, r.updated_at).where(self._registry_row())

    def delete_registry(self) -> sa.Delete:
        return registry.delete().where(self._registry_row())

    def insert_registry(self, signature: ModelSignature) -> sa.Insert:
        table_key, column_key = self.target.registry_key
        return registry.insert().values(
            target_table=table_key,
            target_column=column_key,
            model_name=signature.name,
            dimension=signature.dimension,
            model_hash=signature.hash,
            state=ModelState.READY.value,
        )

    def set_state(self, state: ModelState) -> sa.Update:
        return (
            registry.update()
            .where(self._registry_row())
            .values(state=state.value, updated_at=sa.func.clock_timestamp())
        )

    def register_model(self, signature: ModelSignature) -> sa.Update:
        """Step 7: the registry names the new model, search may be served again, and no
        change is being staged any more."""
        return (
            registry.update()
            .where(self._registry_row())
            .values(
                model_name=signature.name,
                dimension=signature.dimension,
                model_hash=signature.hash,
                state=ModelState.READY.value,
                updated_at=sa.func.clock_timestamp(),
                **dict.fromkeys(STAGED_MODEL_COLUMNS, None),
            )
        )

    def set_staged_model(self, signature: ModelSignature) -> sa.Update:
        return (
            registry.update()
            .where(self._registry_row())
            .values(
                staged_model_name=signature.name,
                staged_dimension=signature.dimension,
                staged_model_hash=signature.hash,
            )
        )

    def read_staged_model(self) -> sa.Select[Any]:
        """The model being staged; no row while there is no staging table to write to (after
        `stage --drop`, or an older vestige-embed's), so writers never fail on it."""
        r = registry.c
        staged = sa.select(r.staged_model_name, r.staged_dimension, r.staged_model_hash)
        return staged.where(self._registry_row(), self.staging_exists().scalar_subquery())

    def stage_written_rows(self, signature: ModelSignature) -> sa.Insert:
        """Upsert `(:keys, :vectors)`, rows this transaction wrote, as staged for `signature`,
        with the hash of the content the row holds now (the one server-side definition)."""
        pairs = (
            sa.func.unnest(sa.bindparam("keys", type_=PassThrough()), sa.bindparam("vectors", type_=PassThrough()))
            .table_valued("key", "vector")
            .render_derived(name="v")
        )
        source = sa.select(self.key, pairs.c.vector, self.content_hash, sa.literal(signature.key, sa.BigInteger)).where(
            self.key == pairs.c.key
        )
        return self._upsert_staged(source)

    # Search.

    def search(self, signature: ModelSignature, k: int) -> sa.Select[Any]:
        """Nearest first, by the target's distance; no rows unless the registry says `ready`
        for exactly `signature` (checked in the same statement as the search)."""
        probe = sa.bindparam("probe", type_=vector_type(self.target.storage))
        distance = self.table.c[self.target.embedding].op(self.target.distance.operator, return_type=sa.Float)(probe)
        r = registry.c
        servable = (
            sa.select(sa.literal(1))
            .where(
                self._registry_row(),
                r.state == ModelState.READY.value,
                r.model_name == signature.name,
                r.dimension == signature.dimension,
                r.model_hash == signature.hash,
            )
            .exists()
        )
        return (
            sa.select(self.key, self.content.label("content"), distance.label("distance"))
            .where(servable)
            .order_by(distance)
            .limit(k)
        )
