"""Keys and vectors to PostgreSQL in binary, one numpy pass per batch.

Formatting floats as text costs ~0.5 ms per 384-d vector on the client (16x the
database's work), so a batch travels as two arrays (`uuid[]`/`bigint[]`/`text[]`, or the
rows' addresses as `tid[]`, and `vector[]`/`halfvec[]`) built by our own psycopg binary dumpers.
`scripts/bench_engine.py` measures this path against binary COPY and per-row text.
"""

from __future__ import annotations

import struct
import uuid
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy.engine import Connection

from vestige_embed.target import KeyType, Storage
from vestige_embed.target.statements import pgvector_type_oids

_ARRAY_HEADER = struct.Struct(">iiIii")  # ndim, has_nulls, element oid, length, lower bound
_UUID_OID, _UUID_ARRAY_OID = 2950, 2951
_INT8_OID, _INT8_ARRAY_OID = 20, 1016
_TEXT_OID, _TEXT_ARRAY_OID = 25, 1009
_BYTEA_OID, _BYTEA_ARRAY_OID = 17, 1001
_TID_OID, _TID_ARRAY_OID = 27, 1010
#: Bytes of a row address (`tid`) in binary: its block number, then its line pointer.
_TID_WIDTH = 6


class KeyArray:
    """Keys of one batch, as one array parameter of the target's key type. Keys given as
    `bytes` are their binary wire form (as `Statements.declare_rows` fetches them), sent as is."""

    __slots__ = ("key_type", "values")

    def __init__(self, key_type: KeyType, values: Sequence[Any]) -> None:
        self.key_type, self.values = key_type, values


class VectorArray:
    """A float32 matrix, one row per vector, sent as `vector[]` or `halfvec[]`."""

    __slots__ = ("matrix", "storage")

    def __init__(self, matrix: npt.NDArray[np.float32], storage: Storage = Storage.VECTOR) -> None:
        self.matrix, self.storage = matrix, storage


class AddressArray:
    """Row addresses (`ctid`), as a locked pass fetched them in binary, sent back as one `tid[]`."""

    __slots__ = ("values",)

    def __init__(self, values: Sequence[bytes]) -> None:
        self.values = values


class BytesArray:
    """A `bytea[]` parameter (content hashes)."""

    __slots__ = ("values",)

    def __init__(self, values: Sequence[bytes]) -> None:
        self.values = values


def _varlena_array(oid: int, items: Sequence[bytes]) -> bytes:
    body = b"".join(struct.pack(">i", len(item)) + item for item in items)
    return _ARRAY_HEADER.pack(1, 0, oid, len(items), 1) + body


_KEY_ELEMENT_OIDS = {KeyType.UUID: _UUID_OID, KeyType.BIGINT: _INT8_OID, KeyType.TEXT: _TEXT_OID}
#: Bytes per key of the fixed-width key types.
_KEY_WIDTHS = {KeyType.UUID: 16, KeyType.BIGINT: 8}


def _fixed_array(oid: int, width: int, raw: bytes) -> bytes:
    """An array of fixed-width elements given back to back in their binary form."""
    items = np.empty(len(raw) // width, dtype=[("len", ">i4"), ("value", f"V{width}")])
    items["len"] = width
    items["value"] = np.frombuffer(raw, dtype=f"V{width}")
    return _ARRAY_HEADER.pack(1, 0, oid, len(items), 1) + items.tobytes()


class _KeyArrayDumper(Dumper):
    format = Format.BINARY
    oid = _UUID_ARRAY_OID

    def dump(self, obj: KeyArray) -> bytes:
        key_type, values = obj.key_type, obj.values
        oid, width = _KEY_ELEMENT_OIDS[key_type], _KEY_WIDTHS.get(key_type)
        wire = len(values) > 0 and type(values[0]) is bytes  # framed as they came, not converted
        if width is None:
            return _varlena_array(oid, values if wire else [str(v).encode() for v in values])
        if wire:
            raw = b"".join(values)
        elif key_type is KeyType.UUID:
            raw = b"".join(v.bytes if isinstance(v, uuid.UUID) else uuid.UUID(str(v)).bytes for v in values)
        else:
            raw = np.asarray(values, dtype=">i8").tobytes()
        return _fixed_array(oid, width, raw)

    def get_key(self, obj: Any, format: Any) -> Any:
        return (type(obj), obj.key_type)

    def upgrade(self, obj: Any, format: Any) -> Dumper:
        return _KEY_DUMPERS[obj.key_type](type(obj))


class _UuidKeys(_KeyArrayDumper):
    oid = _UUID_ARRAY_OID


class _BigintKeys(_KeyArrayDumper):
    oid = _INT8_ARRAY_OID


class _TextKeys(_KeyArrayDumper):
    oid = _TEXT_ARRAY_OID


_KEY_DUMPERS: dict[KeyType, type[_KeyArrayDumper]] = {
    KeyType.UUID: _UuidKeys,
    KeyType.BIGINT: _BigintKeys,
    KeyType.TEXT: _TextKeys,
}


class _AddressArrayDumper(Dumper):
    format = Format.BINARY
    oid = _TID_ARRAY_OID

    def dump(self, obj: AddressArray) -> bytes:
        return _fixed_array(_TID_OID, _TID_WIDTH, b"".join(obj.values))


class _BytesArrayDumper(Dumper):
    format = Format.BINARY
    oid = _BYTEA_ARRAY_OID

    def dump(self, obj: BytesArray) -> bytes:
        return _varlena_array(_BYTEA_OID, obj.values)


class _VectorArrayDumper(Dumper):
    """pgvector's binary element: int16 dimension, int16 unused, then the values."""

    format = Format.BINARY
    oids: dict[Storage, tuple[int, int]] = {}  # noqa: RUF012  (set per connection)

    def dump(self, obj: VectorArray) -> bytes:
        element_oid, _ = self.oids[obj.storage]
        rows, dim = obj.matrix.shape
        value = ">f4" if obj.storage is Storage.VECTOR else ">f2"
        width = 4 if obj.storage is Storage.VECTOR else 2
        items = np.empty(rows, dtype=[("len", ">i4"), ("dim", ">u2"), ("unused", ">u2"), ("values", value, (dim,))])
        items["len"] = 4 + width * dim
        items["dim"] = dim
        items["unused"] = 0
        items["values"] = obj.matrix
        return _ARRAY_HEADER.pack(1, 0, element_oid, rows, 1) + items.tobytes()

    def get_key(self, obj: Any, format: Any) -> Any:
        return (type(obj), obj.storage)

    def upgrade(self, obj: Any, format: Any) -> Dumper:
        dumper = type(self)(type(obj))
        dumper.oid = self.oids[obj.storage][1]
        return dumper


#: Driver connections whose adapters already know our arrays.
_REGISTERED: weakref.WeakSet[Any] = weakref.WeakSet()


def register_binary_arrays(conn: Connection) -> None:
    """Teach this connection's psycopg adapters to send our arrays in binary (once per
    connection: applications call it in every write transaction through the contract)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    if driver in _REGISTERED:
        return
    found = conn.execute(pgvector_type_oids()).mappings().one()
    vector_oids: dict[Storage, tuple[int, int]] = {}
    for storage in Storage:
        element, array = found.get(storage.value), found.get(f"{storage.value}[]")
        if element and array:
            vector_oids[storage] = (int(element), int(array))
    dumper = type("VectorArrayDumper", (_VectorArrayDumper,), {"oids": vector_oids})
    driver.adapters.register_dumper(VectorArray, dumper)
    driver.adapters.register_dumper(KeyArray, _KeyArrayDumper)
    driver.adapters.register_dumper(AddressArray, _AddressArrayDumper)
    driver.adapters.register_dumper(BytesArray, _BytesArrayDumper)
    _REGISTERED.add(driver)
