"""Feast's online values of Arrow columns, byte for byte, without Feast's per-value detour.

Feast 0.67's materialization converts a batch with ``feast.utils._convert_arrow_to_proto``: every column
goes Arrow -> numpy -> Python objects -> type checks -> one ``ValueProto`` per value, the entity key of
each row is a ``EntityKeyProto`` serialized by ``serialize_entity_key``, and the online store then
serializes every proto. The online store keeps only the bytes, so this module produces those bytes
directly from the Arrow columns:

- :func:`encode_column`: the serialized ``ValueProto`` of every value of a column (and, for SQLite, the
  ``value_text`` Feast derives from it). The value types adprior's views use have a direct encoder
  (INT64, DOUBLE, STRING, BOOL and their lists) that builds the same proto from the same Python value
  as Feast (string and int64 lists: the same bytes column-wise, :mod:`adprior.store.proto_lists`); anything else, and every edge case where Feast's numpy detour changes a value (an INT64
  column with nulls and values beyond 2**53, lists with null elements, another Arrow type than the
  feature type implies) goes through Feast's own ``python_values_to_proto_values``. Nulls (and NaN in
  DOUBLE columns, as in Feast) are the empty ``ValueProto``.
- :func:`entity_keys`: ``serialize_entity_key`` of every row; a single INT64 join key (adprior's
  ``user_id`` / ``advertiser_id``) is Feast's own prefix plus the packed id, anything else Feast's path.
- :func:`naive_utc` / :func:`sqlite_times`: the event / created timestamps as Feast hands them to the
  online stores (naive UTC datetimes), converted once per distinct value.

tests/adprior/test_store_engine.py checks every direct encoder against Feast's conversion on
adversarial columns (nulls, NaN, empty lists, unicode, int64 extremes).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList, Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from adprior.store.proto_lists import int64_lists, string_lists

EPOCH_NAIVE = datetime(1970, 1, 1)
EXACT_FLOAT_INT = 2**53  # an INT64 column with nulls reaches Feast as float64: exact up to here
_Q = struct.Struct("<q")


def _scalar(field: str, cached: bool = True) -> Callable[[Any], bytes]:
    """An encoder of one scalar ``ValueProto`` field, caching the bytes of the first 10,000 distinct
    values (ids, versions and statuses repeat). Doubles are not cached: 0.0 == -0.0 as dict keys."""
    cache: dict[Any, bytes] = {}

    def enc(v: Any) -> bytes:
        b = cache.get(v)
        if b is None:
            b = Value(**{field: v}).SerializeToString()
            if len(cache) < 10_000:
                cache[v] = b
        return b

    return enc if cached else lambda v: Value(**{field: v}).SerializeToString()


def _list(field: str, cls: type) -> Callable[[Any], bytes]:
    return lambda v: Value(**{field: cls(val=v)}).SerializeToString()


# value type -> (Arrow types it is encoded from directly, is a list, encoder of one non-null Python value)
_DIRECT: dict[ValueType, tuple[tuple[pa.DataType, ...], bool, Callable[[], Callable[[Any], bytes]]]] = {
    ValueType.INT64: ((pa.int64(),), False, lambda: _scalar("int64_val")),
    ValueType.DOUBLE: ((pa.float64(),), False, lambda: _scalar("double_val", cached=False)),
    ValueType.STRING: ((pa.string(), pa.large_string()), False, lambda: _scalar("string_val")),
    ValueType.BOOL: ((pa.bool_(),), False, lambda: _scalar("bool_val")),
    ValueType.INT64_LIST: ((pa.list_(pa.int64()),), True, lambda: _list("int64_list_val", Int64List)),
    ValueType.DOUBLE_LIST: ((pa.list_(pa.float64()),), True, lambda: _list("double_list_val", DoubleList)),
    ValueType.STRING_LIST: (
        (pa.list_(pa.string()), pa.list_(pa.large_string())),
        True,
        lambda: _list("string_list_val", StringList),
    ),
}


# Lists without null elements are built column-wise (adprior.store.proto_lists): no Python object per element.
_COLUMNWISE: dict[ValueType, Callable[[pa.Array], list[bytes]]] = {
    ValueType.STRING_LIST: string_lists,
    ValueType.INT64_LIST: int64_lists,
}


def _plain_list_type(t: pa.DataType) -> pa.DataType:
    """``t`` with its list item field renamed to Arrow's default (``element`` vs ``item``)."""
    return pa.list_(t.value_type) if pa.types.is_list(t) else t


def direct_encodable(arr: pa.Array, value_type: ValueType) -> bool:
    """Whether :func:`encode_column` encodes ``arr`` itself (True) or hands it to Feast (False)."""
    spec = _DIRECT.get(value_type)
    if spec is None or _plain_list_type(arr.type) not in spec[0]:
        return False
    if spec[1]:  # lists: Feast replaces null elements by a default (NaN for doubles): leave those to it
        return arr.values.null_count == 0 if len(arr) else True
    if value_type == ValueType.INT64 and arr.null_count:  # Feast sees float64: int(float(v))
        lo_hi = pc.min_max(arr)
        lo, hi = lo_hi["min"].as_py(), lo_hi["max"].as_py()
        return lo is None or (abs(lo) <= EXACT_FLOAT_INT and abs(hi) <= EXACT_FLOAT_INT)
    return True


def _text(value_type: ValueType, v: Any) -> str | None:
    """``value_text`` of a non-null value, as Feast's ``extract_text_and_num`` derives it from the proto."""
    if value_type == ValueType.STRING:
        return v
    if value_type in (ValueType.INT64, ValueType.DOUBLE, ValueType.BOOL):
        return str(float(v)) if value_type == ValueType.DOUBLE else str(v)
    return None


def encode_column(
    arr: pa.Array, value_type: ValueType, with_text: bool = False
) -> tuple[list[bytes], list[str | None] | None]:
    """Serialized ``ValueProto`` of every value of ``arr`` (a feature of ``value_type``), as Feast writes it.

    Args:
        arr: one column of a record batch (the deduplicated rows to write).
        value_type: the feature's Feast value type (``field.dtype.to_value_type()``).
        with_text: also return SQLite's ``value_text`` per value (else None).

    Returns:
        (values, texts): ``values[i]`` are the bytes Feast stores for row i (``b""`` for a null).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not direct_encodable(arr, value_type):
        protos = python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), value_type)
        values = [p.SerializeToString() for p in protos]
        texts = [extract_text_and_num(p, False)[0] for p in protos] if with_text else None
        return values, texts
    columnwise = _COLUMNWISE.get(value_type)
    if columnwise is not None:
        return columnwise(arr), [None] * len(arr) if with_text else None
    enc = _DIRECT[value_type][2]()
    py = arr.to_pylist()
    if value_type == ValueType.DOUBLE:  # Feast: pd.isnull -> NaN is a null, like a missing value
        py = [None if v is None or v != v else v for v in py]
    values = [b"" if v is None else enc(v) for v in py]
    texts = [None if v is None else _text(value_type, v) for v in py] if with_text else None
    return values, texts


def entity_keys(
    batch: pa.RecordBatch | pa.Table, join_keys: dict[str, ValueType], version: int
) -> list[bytes]:
    """``serialize_entity_key`` of every row's entity key (join key columns of ``batch``), as Feast builds it."""
    names = list(join_keys)
    if len(names) == 1 and join_keys[names[0]] == ValueType.INT64:
        col = batch.column(names[0])
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if col.type == pa.int64() and col.null_count == 0:
            probe = serialize_entity_key(
                EntityKey(join_keys=names, entity_values=[Value(int64_val=0)]), version
            )
            if probe.endswith(_Q.pack(0)):
                prefix, pack = probe[: -_Q.size], _Q.pack
                return [prefix + pack(v) for v in col.to_pylist()]
    protos = {
        k: python_values_to_proto_values(batch.column(k).to_numpy(zero_copy_only=False), vt)
        for k, vt in join_keys.items()
    }
    return [
        serialize_entity_key(EntityKey(join_keys=names, entity_values=[protos[k][i] for k in names]), version)
        for i in range(batch.num_rows)
    ]


def naive_utc(arr: pa.Array) -> list[datetime | None]:
    """A timestamp column as naive UTC datetimes (microseconds), as Feast passes them to online stores.

    Feast reads them through ``pd.to_datetime(column.to_numpy())``: a tz-aware column as its UTC wall
    time, a naive one as it is (Feast takes naive times as UTC); nanoseconds are dropped.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_timestamp(arr.type):
        raise TypeError(f"expected a timestamp column, got {arr.type}")
    factor = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}[arr.type.unit]
    values = arr.cast(pa.int64()).to_pylist()  # the UTC instant in the column's unit
    cache: dict[int, datetime] = {}
    out: list[datetime | None] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        d = cache.get(v)
        if d is None:
            us = v // 1000 if factor is None else v * factor
            d = cache[v] = EPOCH_NAIVE + timedelta(microseconds=us)
        out.append(d)
    return out


def sqlite_times(values: list[datetime | None]) -> list[Any]:
    """What SQLite stores for each naive datetime: sqlite3's registered datetime adapter applied once per
    distinct value (Feast registers an epoch-seconds adapter), or the datetimes when none is registered."""
    adapt = sqlite3.adapters.get((datetime, sqlite3.PrepareProtocol))
    if adapt is None:
        return list(values)
    cache: dict[datetime, Any] = {}
    out = []
    for d in values:
        if d is None:
            out.append(None)
            continue
        a = cache.get(d)
        if a is None:
            a = cache[d] = adapt(d)
        out.append(a)
    return out
