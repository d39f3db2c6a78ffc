"""What a re-embed works on: one embedding column of one table, and how it is indexed.

A `Target` is a value: it names things and derives the names of what vestige-embed
creates for it (HNSW index, staging table, the new column of approach C), so every
statement for it comes from one place. It imports nothing of ours but errors.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

from vestige_embed.errors import ConfigError

#: PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
MAX_IDENTIFIER = 63
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
DEFAULT_SCHEMA = "public"


class KeyType(enum.StrEnum):
    """Primary-key types a target may have."""

    UUID = "uuid"
    BIGINT = "bigint"
    TEXT = "text"


class Storage(enum.StrEnum):
    """pgvector column types. HNSW indexes `vector` up to 2,000 dimensions, `halfvec` up to 4,000."""

    VECTOR = "vector"
    HALFVEC = "halfvec"

    @property
    def hnsw_max_dimension(self) -> int:
        return 2000 if self is Storage.VECTOR else 4000

    @property
    def bytes_per_dimension(self) -> int:
        return 4 if self is Storage.VECTOR else 2


class Distance(enum.StrEnum):
    """The distance search orders by; the HNSW operator class follows from it."""

    COSINE = "cosine"
    L2 = "l2"
    INNER_PRODUCT = "inner_product"

    @property
    def operator(self) -> str:
        return {"cosine": "<=>", "l2": "<->", "inner_product": "<#>"}[self.value]

    def opclass(self, storage: Storage) -> str:
        suffix = {"cosine": "cosine", "l2": "l2", "inner_product": "ip"}[self.value]
        return f"{storage.value}_{suffix}_ops"


@dataclass(frozen=True)
class HnswParams:
    """HNSW build parameters (pgvector's defaults are m=16, ef_construction=64)."""

    m: int = 16
    ef_construction: int = 64

    def __post_init__(self) -> None:
        if not 2 <= self.m <= 100:
            raise ConfigError(f"HNSW m must be between 2 and 100, got {self.m}")
        if self.ef_construction < 2 * self.m:
            raise ConfigError(f"HNSW ef_construction must be at least 2 * m ({2 * self.m}), got {self.ef_construction}")


@dataclass(frozen=True)
class Target:
    """One embedding column: `table.embedding`, keyed by `key`, embedding the text `content`.

    - `table`: `name` or `schema.name`;
    - `content`: a column name, or a SQL expression over the row (`title || ' ' || body`);
    - `key_type`: None until read from the catalog (`store.catalog.resolve_target`);
    - `index`: the HNSW index name (default `idx_<table>_<embedding>_hnsw`).
    """

    table: str = "knowledge_nodes"
    key: str = "id"
    content: str = "content"
    embedding: str = "embedding"
    storage: Storage = Storage.VECTOR
    distance: Distance = Distance.COSINE
    index: str = ""
    hnsw: HnswParams = field(default_factory=HnswParams)
    key_type: KeyType | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "storage", _enum(Storage, self.storage, "storage"))
        object.__setattr__(self, "distance", _enum(Distance, self.distance, "distance"))
        if self.key_type is not None:
            object.__setattr__(self, "key_type", _enum(KeyType, self.key_type, "key_type"))
        parts = self.table.split(".")
        if len(parts) > 2 or not all(parts):
            raise ConfigError(f"table '{_cut(self.table)}' must be `name` or `schema.name`")
        for label, name in (("table", parts[-1]), ("key", self.key), ("embedding", self.embedding)):
            _check_identifier(label, name)
        if not self.content.strip():
            raise ConfigError("content must name a column or give a SQL expression over the row")
        if not self.index:
            object.__setattr__(self, "index", bounded_name("idx", self.table_name, self.embedding, "hnsw"))
        _check_identifier("index", self.index)

    @property
    def schema(self) -> str | None:
        """The schema the table was named with (None: found through `search_path`)."""
        return self.table.split(".")[0] if "." in self.table else None

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]

    @property
    def registry_key(self) -> tuple[str, str]:
        """How the registry names this target: (`schema.table`, embedding column)."""
        return f"{self.schema or DEFAULT_SCHEMA}.{self.table_name}", self.embedding

    @property
    def content_is_column(self) -> bool:
        return _PLAIN_NAME.fullmatch(self.content) is not None

    @property
    def next_embedding(self) -> str:
        """The column approach C and the staged swap fill, then rename to `embedding`."""
        return bounded_name(self.embedding, "next")

    @property
    def next_index(self) -> str:
        """The index the staged swap builds on `next_embedding` while `index` still serves."""
        return bounded_name("idx", self.table_name, self.next_embedding, "hnsw")

    @property
    def staging_table(self) -> str:
        """Vectors precomputed for this target by `vestige migrate stage`."""
        return bounded_name(self.table_name, self.embedding, "staging")

    @property
    def staging_content_index(self) -> str:
        """Staged vectors by content hash: a repeated content is embedded once."""
        return bounded_name(self.staging_table, "content", "idx")

    def describe(self) -> str:
        return f"{self.table}.{self.embedding}"

    def with_key_type(self, key_type: KeyType) -> Target:
        return replace(self, key_type=key_type)

    @property
    def resolved_key_type(self) -> KeyType:
        """The key type, for what cannot be built without it (binary keys, their wire form)."""
        if self.key_type is None:
            raise ValueError("the target's key type is unknown: resolve the target against the catalog first")
        return self.key_type

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": self.key,
            "content": self.content,
            "embedding": self.embedding,
            "storage": self.storage.value,
            "distance": self.distance.value,
            "index": self.index,
            "hnsw": {"m": self.hnsw.m, "ef_construction": self.hnsw.ef_construction},
        }


def bounded_name(*parts: str) -> str:
    """`parts` joined by `_`; past PostgreSQL's 63 bytes, cut and suffixed with a short hash."""
    name = "_".join(parts)
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name.encode()[: MAX_IDENTIFIER - 9].decode(errors="ignore") + "_" + digest


def _check_identifier(label: str, name: str) -> None:
    if not name or "\x00" in name or len(name.encode()) > MAX_IDENTIFIER:
        raise ConfigError(f"{label} name '{_cut(name)}' is not a PostgreSQL identifier (1 to 63 bytes)")


def _enum(kind: type[enum.StrEnum], value: object, label: str) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise ConfigError(f"{label} '{_cut(str(value))}' is not one of: {choices}") from None


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


#: Vestige's own store: `knowledge_nodes(id uuid, content, embedding vector)`, cosine.
DEFAULT_TARGET = Target()
