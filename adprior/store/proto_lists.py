"""Serialized Feast list values (``ValueProto`` with ``string_list_val`` / ``int64_list_val``), built a whole
Arrow column at a time: no Python object per list element.

The protobuf wire format of these two messages is small and fixed:

- ``Value{string_list_val: StringList{val: [s...]}}`` = tag of ``string_list_val`` + varint(n) + for each
  string: ``0x0A`` (field 1, length-delimited) + varint(len) + its UTF-8 bytes (n = length of that tail);
- ``Value{int64_list_val: Int64List{val: [v...]}}`` = tag of ``int64_list_val`` + varint(n) + (for a
  non-empty list) ``0x0A`` + varint(m) + the packed varints of the values as uint64 (m bytes);
  an empty list is the tag and a zero length, a null list the empty message (``b""``, Feast's null).

The headers are built with numpy (varints of the lengths), the concatenations with Arrow's
``binary_join_element_wise`` / ``binary_join``; the tags are read from Feast's own protobuf classes.
adprior.store.online_values uses this for list columns without null elements; the equality with Feast's
conversion is tested in tests/adprior/test_store_engine.py.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.protos.feast.types.Value_pb2 import Int64List, StringList, Value


def _tag(field: str, cls: type) -> bytes:
    """The key bytes of a ``Value`` field: the serialized empty message minus its zero length byte."""
    empty = Value(**{field: cls()}).SerializeToString()
    if not empty.endswith(b"\x00") or len(empty) != 2:
        raise RuntimeError(f"unexpected encoding of an empty {field}: {empty!r}")
    return empty[:-1]


STRING_LIST_TAG = _tag("string_list_val", StringList)
INT64_LIST_TAG = _tag("int64_list_val", Int64List)
_ELEMENT = b"\x0a"  # field 1 (val), wire type 2 (length-delimited)
_NOTHING = pa.scalar(b"", pa.large_binary())  # the separator of the joins


def varint_sizes(x: np.ndarray) -> np.ndarray:
    """Bytes of the base-128 varint of each unsigned value (1..10)."""
    u = x.astype(np.uint64, copy=False)
    sizes = np.ones(len(u), np.int64)
    for k in range(1, 10):
        more = u >= (np.uint64(1) << np.uint64(7 * k))
        if not more.any():
            break
        sizes += more
    return sizes


def prefixed_varints(prefix: bytes, x: np.ndarray) -> pa.Array:
    """A ``large_binary`` array: ``prefix`` followed by the varint of each value of ``x`` (as uint64)."""
    u = x.astype(np.uint64, copy=False)
    sizes = varint_sizes(u)
    offsets = np.zeros(len(u) + 1, np.int64)
    np.cumsum(sizes + len(prefix), out=offsets[1:])
    buf = np.zeros(int(offsets[-1]), np.uint8)
    start = offsets[:-1]
    for i, byte in enumerate(prefix):
        buf[start + i] = byte
    start = start + len(prefix)
    for k in range(10):
        m = sizes > k
        if not m.any():
            break
        b = ((u[m] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        b |= np.where(sizes[m] > k + 1, 0x80, 0).astype(np.uint8)
        buf[start[m] + k] = b
    return pa.Array.from_buffers(pa.large_binary(), len(u), [None, pa.py_buffer(offsets), pa.py_buffer(buf)])


def _rows(arr: pa.ListArray, elements: pa.Array) -> pa.Array:
    """Per list of ``arr``: its ``elements`` (one binary per child value) concatenated; null lists null."""
    lo = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    lists = pa.LargeListArray.from_arrays(pa.array(lo - lo[0], pa.int64()), elements, mask=arr.is_null())
    return pc.binary_join(lists, _NOTHING)


def _message(tag: bytes, body: pa.Array) -> list[bytes]:
    """``tag`` + varint(len) + body per row; ``b""`` where body is null."""
    lengths = pc.binary_length(body).fill_null(0).to_numpy(zero_copy_only=False)
    out = pc.binary_join_element_wise(prefixed_varints(tag, lengths), body, _NOTHING)
    return [b"" if v is None else v for v in out.to_pylist()]


def _children(arr: pa.ListArray) -> pa.Array:
    """The child values of ``arr``'s lists (its slice only)."""
    lo = arr.offsets
    first = lo[0].as_py() if len(lo) else 0
    return arr.values.slice(first, (lo[-1].as_py() if len(lo) else 0) - first)


def string_lists(arr: pa.ListArray) -> list[bytes]:
    """Serialized ``Value(string_list_val=...)`` of every list of ``arr`` (no null strings inside)."""
    strings = _children(arr).cast(pa.large_binary())
    lengths = pc.binary_length(strings).to_numpy(zero_copy_only=False)
    elements = pc.binary_join_element_wise(prefixed_varints(_ELEMENT, lengths), strings, _NOTHING)
    return _message(STRING_LIST_TAG, _rows(arr, elements))


def int64_lists(arr: pa.ListArray) -> list[bytes]:
    """Serialized ``Value(int64_list_val=...)`` of every list of ``arr`` (no null values inside)."""
    values = _children(arr).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    packed = _rows(arr, prefixed_varints(b"", values.view(np.uint64)))
    plen = pc.binary_length(packed).fill_null(0).to_numpy(zero_copy_only=False)
    body = pc.binary_join_element_wise(prefixed_varints(_ELEMENT, plen), packed, _NOTHING)
    empty = (plen == 0) & arr.is_valid().to_numpy(zero_copy_only=False)
    body = pc.if_else(pa.array(empty), _NOTHING, body)
    return _message(INT64_LIST_TAG, body)
