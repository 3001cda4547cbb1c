"""``ArrowComputeEngine``: Feast's local compute engine with an Arrow reader and bulk online writers.

Configured per yaml like any Feast batch engine (feature_repo/feature_store.yaml, feature_store.redis.yaml)::

    batch_engine:
      type: adprior.store.engine.ArrowComputeEngine

so ``feast materialize`` and ``adprior.store.materialize`` both use it. Where the time of Feast 0.67's
local engine goes (bench/results/store.md; cProfile of 5k users x 2 views, ~8 s): ~75 % in the file
offline store's dask pipeline (three ``persist`` calls per view, each tokenizing the whole frame by
pickling its object columns, and every column of the table read, ``raw_output`` included), ~10 % in
``_convert_arrow_to_proto`` (numpy -> Python -> one ValueProto per value) and ~15 % in the online store's
row-by-row writes. This engine keeps Feast's semantics and replaces those three steps:

1. read: the view's parquet folder with pyarrow, only the join keys, features and timestamps, rows with
   ``start <= event_timestamp <= end`` (Feast's file store is inclusive at both ends);
2. latest row per entity: by event time, then created time, both descending (Feast's dedup node; a tie
   of both keeps the first row in file order, where Feast's unstable sort keeps either);
3. write in batches of ``materialization.online_write_batch_size`` (10,000 without one; SQLite: rows in
   the order of its index, :func:`sorted_by_key`): the serialized values of
   :mod:`adprior.store.online_values` through the bulk writers of :mod:`adprior.store.online_writers`
   (SQLite, standalone Redis); any other online store gets Feast's own ``_convert_arrow_to_proto`` and
   ``online_write_batch``.

Views it does not handle go to Feast's local engine unchanged (``LocalComputeEngine._materialize_one``):
non-parquet or remote sources, field mappings, transformations, aggregations, validation, filters,
offline writes, null join keys or created timestamps, non-timestamp event columns, and non-"latest"
tasks. The online values are Feast's byte for byte: tests/adprior/test_store_engine.py compares the
stored cells and ``get_online_features`` of both engines on SQLite and Redis.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel

from adprior.store.online_values import encode_column, entity_keys, naive_utc
from adprior.store.online_writers import OnlineRows, writer_for

log = logging.getLogger(__name__)

ENGINE_TYPE = "adprior.store.engine.ArrowComputeEngine"
DEFAULT_BATCH = 10_000
_ROW = "__adprior_row"


class Unsupported(Exception):
    """A view (or its data) this engine leaves to Feast's local engine; the message says why."""


class ArrowComputeEngineConfig(FeastConfigBaseModel):
    """``batch_engine`` settings of :class:`ArrowComputeEngine` (Feast loads ``<engine class>Config``)."""

    type: Literal["adprior.store.engine.ArrowComputeEngine"] = ENGINE_TYPE
    backend: str | None = None  # DataFrame backend of Feast's local engine, for the views left to it


def check_view(task: MaterializationTask) -> None:
    """Raise :class:`Unsupported` unless the task is a plain "latest value per entity" of a parquet view."""
    from urllib.parse import urlparse

    from feast.data_format import ParquetFormat
    from feast.infra.offline_stores.file_source import FileSource

    fv = task.feature_view
    checks = {
        "not the latest value per entity": not task.only_latest or task.disable_event_timestamp,
        "a transformation, aggregation, validation or filter": bool(
            getattr(fv, "feature_transformation", None)
            or getattr(fv, "aggregations", None)
            or getattr(fv, "enable_validation", False)
            or getattr(fv, "filter", None)
        ),
        "a stream source": getattr(fv, "stream_source", None) is not None,
        "not online-only": not getattr(fv, "online", False) or bool(getattr(fv, "offline", False)),
        "no entity": not getattr(fv, "entity_columns", None),
    }
    src = getattr(fv, "batch_source", None)
    checks["not a FileSource"] = not isinstance(src, FileSource)
    if isinstance(src, FileSource):
        checks["not parquet"] = not isinstance(src.file_format, ParquetFormat | type(None))
        checks["a field mapping"] = bool(src.field_mapping)
        checks["a remote path"] = urlparse(src.path).scheme not in ("", "file")
    reasons = [why for why, failed in checks.items() if failed]
    if reasons:
        raise Unsupported(", ".join(reasons))


def latest_rows(
    path: str,
    join_keys: list[str],
    features: list[str],
    ts_col: str,
    created_col: str | None,
    start: Any,
    end: Any,
) -> pa.Table:
    """The latest row per entity among rows of the parquet folder ``path`` with start <= ts <= end.

    Raises:
        Unsupported: the event column is not a timestamp, or a join key / created time is null.
    """
    from feast.utils import make_tzaware, to_naive_utc

    ds = pads.dataset(path, format="parquet", partitioning="hive")
    if ts_col not in ds.schema.names or not pa.types.is_timestamp(ds.schema.field(ts_col).type):
        raise Unsupported(f"event column {ts_col!r} is not a timestamp column of {path}")
    ts_type = ds.schema.field(ts_col).type
    bound = (lambda t: make_tzaware(t).astimezone(UTC)) if ts_type.tz else to_naive_utc
    ts = pc.field(ts_col)
    cols = list(dict.fromkeys([*join_keys, *features, ts_col, *([created_col] if created_col else [])]))
    table = ds.to_table(
        columns=cols, filter=(ts >= pa.scalar(bound(start), ts_type)) & (ts <= pa.scalar(bound(end), ts_type))
    )
    for c in [*join_keys, *([created_col] if created_col else [])]:
        if table[c].null_count:
            raise Unsupported(f"column {c!r} has nulls")
    if table.num_rows == 0:
        return table
    distinct = table.group_by(join_keys, use_threads=False).aggregate([]).num_rows
    if distinct == table.num_rows:
        return table
    order = [(ts_col, "descending"), *([(created_col, "descending")] if created_col else [])]
    table = table.sort_by(order)  # stable: ties keep file order
    table = table.append_column(_ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    first = table.group_by(join_keys, use_threads=False).aggregate([(_ROW, "min")])
    idx = pc.sort_indices(first[f"{_ROW}_min"])
    return table.take(pc.take(first[f"{_ROW}_min"], idx)).drop_columns([_ROW])


def sorted_by_key(table: pa.Table, keys: list[bytes]) -> tuple[pa.Table, list[bytes]]:
    """``table`` and its rows' serialized entity ``keys``, both in key order.

    Written in that order, each write batch covers one key range, so a batch's SQLite transaction touches
    (and journals) few index pages instead of pages all over the index: 1M users materialize at 47.7k
    rows/s instead of 14.9k (bench/results/store_1m.md)."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return table.take(pa.array(order, type=pa.int64())), [keys[i] for i in order]


def online_rows(
    batch: pa.RecordBatch,
    fv: Any,
    ts_col: str,
    created_col: str | None,
    version: int,
    with_text: bool,
    keys: list[bytes] | None = None,
) -> OnlineRows:
    """The serialized online rows of one batch of latest rows (one row per entity); ``keys``: the rows'
    serialized entity keys when already computed."""
    values: dict[str, list[bytes]] = {}
    texts: dict[str, list[str | None]] = {}
    for f in fv.features:
        values[f.name], t = encode_column(batch.column(f.name), f.dtype.to_value_type(), with_text)
        if t is not None:
            texts[f.name] = t
    if keys is None:
        keys = entity_keys(batch, {e.name: e.dtype.to_value_type() for e in fv.entity_columns}, version)
    return OnlineRows(
        keys=keys,
        values=values,
        texts=texts if with_text else None,
        event_ts=naive_utc(batch.column(ts_col)),  # type: ignore[arg-type]
        created_ts=naive_utc(batch.column(created_col)) if created_col else [None] * batch.num_rows,
    )


class ArrowComputeEngine(LocalComputeEngine):
    """Feast's local engine, materializing parquet views with Arrow and bulk writes (module docstring)."""

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs: Any
    ) -> LocalMaterializationJob:
        fv = task.feature_view
        job_id = f"{fv.name}-{task.start_time}-{task.end_time}"
        try:
            check_view(task)
            rows, seconds = self._materialize_arrow(registry, task)
        except Unsupported as why:
            log.info("materialize %s: Feast's local engine (%s)", fv.name, why)
            return super()._materialize_one(registry, task, **kwargs)
        except Exception as e:  # Feast's engines report errors through the job (the provider raises them)
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.ERROR, error=e)
        log.info(
            "materialize %s: %d rows in %.2f s (%.0f rows/s, Arrow engine)",
            fv.name,
            rows,
            seconds,
            rows / max(seconds, 1e-9),
        )
        return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)

    def _materialize_arrow(self, registry: BaseRegistry, task: MaterializationTask) -> tuple[int, float]:
        """Read, deduplicate and write one view; (rows written, seconds)."""
        from feast.infra.offline_stores.file_source import FileSource
        from feast.utils import _convert_arrow_to_proto, _get_column_names

        t0 = time.perf_counter()
        fv, config = task.feature_view, self.repo_config
        entities = [registry.get_entity(name, task.project) for name in fv.entities]
        join_keys, features, ts_col, created_col = _get_column_names(fv, entities)
        path = FileSource.get_uri_for_file_path(config.repo_path, fv.batch_source.path)
        table = latest_rows(path, join_keys, features, ts_col, created_col, task.start_time, task.end_time)
        chosen = writer_for(self.online_store, config.online_store)
        size = config.materialization_config.online_write_batch_size or DEFAULT_BATCH
        join = {e.name: e.dtype.to_value_type() for e in fv.entity_columns}
        version = config.entity_key_serialization_version
        keys = None
        if chosen is not None and chosen.key_order:
            table, keys = sorted_by_key(table, entity_keys(table, join, version))
        start = 0
        for batch in table.combine_chunks().to_batches(max_chunksize=size):
            if chosen is None:  # another online store: Feast's own conversion and write
                self.online_store.online_write_batch(
                    config=config,
                    table=fv,
                    data=_convert_arrow_to_proto(batch, fv, join),
                    progress=lambda _n: None,
                )
                continue
            part = None if keys is None else keys[start : start + batch.num_rows]
            start += batch.num_rows
            chosen.write(
                config, fv, online_rows(batch, fv, ts_col, created_col, version, chosen.with_text, part)
            )
        return table.num_rows, time.perf_counter() - t0
