"""The Arrow materialization engine (adprior.store.engine) writes exactly Feast's online values.

Unit level: every direct encoder of adprior.store.online_values against Feast 0.67's own conversion on
adversarial columns, entity keys and timestamps likewise. Store level: the small store world
(tests/support/store.py: strings, ints, doubles, bools, int / string lists, a null timestamp, two rows of
one user) materialized by Feast's ``local`` engine and by the yaml's Arrow engine into SQLite and into a
real Redis: the stored cells (SQLite rows; Redis hashes and their expiry) and ``get_online_features``
are identical, also after rewriting an older window (Redis keeps the newer rows, SQLite overwrites).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType as VT

from adprior import store as st
from adprior.store.engine import ENGINE_TYPE, latest_rows, sorted_by_key
from adprior.store.online_values import direct_encodable, encode_column, entity_keys, naive_utc
from tests.support.online_cells import clear_sqlite, flush_redis, redis_cells, run_engine, sqlite_cells
from tests.support.store import END, populated_repo

pytestmark = [pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature")]

BIG = 2**63 - 1
COLUMNS = [  # (feature type, column, encoded directly: False = through Feast's own conversion)
    (VT.INT64, pa.array([0, 1, -1, BIG, -BIG - 1], pa.int64()), True),
    (VT.INT64, pa.array([1, None, 3, 2**53], pa.int64()), True),
    (VT.INT64, pa.array([1, None, 2**60], pa.int64()), False),  # Feast rounds it through float64
    (VT.INT64, pa.array([None, None], pa.int64()), True),
    (VT.DOUBLE, pa.array([0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, None, 1e308, 5e-324, 0.1]), True),
    (VT.DOUBLE, pa.array([None, None], pa.float64()), True),
    (VT.STRING, pa.array(["", "a", "ünïcødé ✓", None, "x" * 1000, "a"]), True),
    (VT.STRING, pa.array([None, None], pa.string()), True),
    (VT.BOOL, pa.array([True, False, None]), True),
    (VT.BOOL, pa.array([False, True]), True),
    (VT.INT64_LIST, pa.array([[1, 2], [], None, [BIG, -BIG - 1]], pa.list_(pa.int64())), True),
    (VT.INT64_LIST, pa.array([[1, None]], pa.list_(pa.int64())), False),
    (VT.INT64_LIST, pa.array([[], None], pa.list_(pa.int64())), True),
    (VT.INT64_LIST, pa.array([[9], [127, 128, 16383, 16384, -1, 2**35], [], [0] * 300]).slice(1), True),
    (VT.STRING_LIST, pa.array([["a", ""], [], None, ["ü"]]), True),
    (VT.STRING_LIST, pa.array([["a" * 200, "", "ü" * 10000], [], None, ["y" * 20000], ["z"]]).slice(1), True),
    (VT.STRING_LIST, pa.array([["a", "b"], None], pa.list_(pa.large_string())), True),
    (VT.STRING_LIST, pa.array([], pa.list_(pa.string())), True),
    (VT.STRING_LIST, pa.array([["a", None]]), False),
    (VT.STRING_LIST, pa.array([None, None], pa.list_(pa.string())), True),
    (VT.DOUBLE_LIST, pa.array([[1.0, math.nan, -0.0], [], None]), True),
    (VT.FLOAT, pa.array([0.1, None], pa.float32()), False),
    (VT.UNIX_TIMESTAMP, pa.array([0, None, 1_700_000_000_000_000], pa.timestamp("us", tz="UTC")), False),
]


@pytest.mark.parametrize(
    "value_type,arr,direct", COLUMNS, ids=[f"{c[0].name}-{i}" for i, c in enumerate(COLUMNS)]
)
def test_encode_column_is_feasts_conversion(value_type, arr, direct):
    assert direct_encodable(arr, value_type) is direct
    try:
        protos = python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), value_type)
    except TypeError as feast_error:  # an int list with a null element: Feast refuses it, so do we
        with pytest.raises(type(feast_error)):
            encode_column(arr, value_type)
        return
    values, texts = encode_column(arr, value_type, with_text=True)
    assert values == [p.SerializeToString() for p in protos]
    assert texts == [extract_text_and_num(p, False)[0] for p in protos]
    assert encode_column(pa.chunked_array([arr[:1], arr[1:]]), value_type)[0] == values


def _feast_key(names: list[str], protos: list) -> bytes:
    return serialize_entity_key(EntityKey(join_keys=names, entity_values=protos), 3)


def test_entity_keys_are_feasts():
    ids = pa.array([0, 7, -3, BIG, -BIG - 1], pa.int64())
    batch = pa.record_batch({"user_id": ids})
    want = [_feast_key(["user_id"], [p]) for p in python_values_to_proto_values(ids.to_numpy(), VT.INT64)]
    assert entity_keys(batch, {"user_id": VT.INT64}, 3) == want
    two = pa.record_batch({"b": pa.array(["x", "ü"]), "a": pa.array([1, 2])})
    pb = python_values_to_proto_values(two["b"].to_numpy(zero_copy_only=False), VT.STRING)
    pa_ = python_values_to_proto_values(two["a"].to_numpy(), VT.INT64)
    want2 = [_feast_key(["b", "a"], [pb[i], pa_[i]]) for i in range(2)]
    assert entity_keys(two, {"b": VT.STRING, "a": VT.INT64}, 3) == want2


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", ["UTC", "America/New_York", None])
def test_naive_utc_times_are_feasts(unit, tz):
    from feast.utils import _coerce_datetime

    base = datetime(2026, 6, 15, 12, 30, 1, 123456, tzinfo=UTC)
    vals = [base, None, base - timedelta(days=25000), base]  # 1958: before the epoch
    arr = pa.array(vals, pa.timestamp("us", tz="UTC")).cast(pa.timestamp(unit, tz=tz), safe=False)
    want = [_coerce_datetime(v) for v in pd.to_datetime(arr.to_numpy(zero_copy_only=False))]
    assert naive_utc(arr) == [None if pd.isna(w) else w for w in want]


def test_latest_rows_keeps_the_newest_row_per_entity(tmp_path):
    t = [datetime(2026, 6, d, tzinfo=UTC) for d in (10, 11, 12, 13)]
    table = pa.table(
        {
            "user_id": [1, 1, 1, 2, 2, 3, 4],
            "event_timestamp": [t[0], t[1], t[1], t[0], t[3], t[0], t[2]],
            "created_timestamp": [t[3], t[0], t[1], t[0], t[0], t[0], t[0]],
            "x": ["old", "tie-early", "tie-late", "in", "after-end", "start", "end"],
            "unused": ["a"] * 7,
        }
    )
    (tmp_path / "v").mkdir()
    pq.write_table(table.slice(0, 4), tmp_path / "v" / "a.parquet")
    pq.write_table(table.slice(4), tmp_path / "v" / "b.parquet")
    got = latest_rows(
        str(tmp_path / "v"), ["user_id"], ["x"], "event_timestamp", "created_timestamp", t[0], t[2]
    )
    assert got.column_names == ["user_id", "x", "event_timestamp", "created_timestamp"]
    assert sorted(zip(got["user_id"].to_pylist(), got["x"].to_pylist(), strict=True)) == [
        (1, "tie-late"),  # newest event time; the later created time breaks the tie
        (2, "in"),  # its 06-13 row is after the window
        (3, "start"),  # both bounds are inclusive
        (4, "end"),
    ]
    none = latest_rows(str(tmp_path / "v"), ["user_id"], ["x"], "event_timestamp", None, t[3], t[3])
    assert none.num_rows == 1


# ---------------------------------------------------------------------------------- store level


DB = Path("data") / "online_store.db"


def _run_both(cfg: st.StoreConfig, snapshot: Callable[[], object], reset: Callable[[], None]) -> dict:
    """Feast's local engine, then the yaml's (Arrow): each into an emptied online store (run_engine)."""
    out = {}
    for engine in ("local", None):
        reset()
        out[engine or "arrow"] = run_engine(replace(cfg, batch_engine=engine), snapshot)
    return out


def test_yamls_name_the_engines():
    import yaml

    from tests.support.store import REPO

    for name in ("feature_store.yaml", "feature_store.redis.yaml"):
        assert yaml.safe_load((REPO / name).read_text())["batch_engine"] == {"type": ENGINE_TYPE}
    for name in ("feature_store.spark.yaml", "feature_store.spark-redis.yaml"):
        engine = yaml.safe_load((REPO / name).read_text())["batch_engine"]
        assert (
            engine["type"] == "spark.engine" and engine["spark_conf"]["spark.sql.session.timeZone"] == "UTC"
        )


def test_sqlite_cells_equal_feasts_local_engine(tmp_path, caplog):
    repo = populated_repo(tmp_path / "feature_repo")
    cfg = st.StoreConfig(repo=repo)
    st.apply(cfg)

    db = repo / "data" / "online_store.db"
    with caplog.at_level("INFO", logger="adprior.store.engine"):
        got = _run_both(cfg, lambda: sqlite_cells(db), lambda: clear_sqlite(db))
    assert "Arrow engine" in caplog.text and "Feast's local engine (" not in caplog.text
    assert got["arrow"] == got["local"]
    first, after, reads = got["arrow"]
    assert sum(map(len, first.values())) > 30 and after != first  # SQLite overwrites with the older row
    assert reads[0][0]["model_version"] == "m@2026-06-10" and reads[2]["spend"] == [1.0, 2.0, 3.0, None]


def test_redis_cells_equal_feasts_local_engine(tmp_path, redis_srv, monkeypatch):
    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    repo = populated_repo(tmp_path / "feature_repo")
    cfg = st.StoreConfig(repo=repo, online="redis")
    st.apply(cfg)
    port = redis_srv.port
    got = _run_both(cfg, lambda: redis_cells(port), lambda: flush_redis(port))
    assert got["arrow"] == got["local"]
    first, after, reads = got["arrow"]
    assert len(first) == 3 + 3 and all(ok for _, ok in first.values())  # users 1-3, advertisers; 60 days
    assert after == first  # Feast's Redis rule: an older row never replaces a newer one
    assert reads[0][0]["model_version"] == "m@2026-06-14" and reads[0][3]["advertiser_ids"] is None


def test_other_online_stores_get_feasts_conversion_and_write(tmp_path, monkeypatch):
    """Without a bulk writer (another online store) the engine hands its rows to Feast's online_write_batch."""
    repo = populated_repo(tmp_path / "feature_repo")
    ref = tmp_path / "ref"
    shutil.copytree(repo, ref)
    for r in (repo, ref):
        st.apply(st.StoreConfig(repo=r))
    st.materialize(st.StoreConfig(repo=ref, batch_engine="local"), end=END)
    monkeypatch.setattr("adprior.store.engine.writer_for", lambda *_: None)
    st.materialize(st.StoreConfig(repo=repo), end=END)
    assert sqlite_cells(repo / DB) == sqlite_cells(ref / DB)


def test_unsupported_views_go_to_feasts_local_engine(tmp_path, caplog):
    from feast.infra.common.materialization_job import MaterializationTask

    from adprior.store.engine import Unsupported, check_view

    repo = populated_repo(tmp_path / "feature_repo")
    st.apply(st.StoreConfig(repo=repo))
    fv = st.get_store(st.StoreConfig(repo=repo)).get_feature_view("user_profile")
    task = MaterializationTask(project="adprior", feature_view=fv, start_time=END, end_time=END)
    check_view(task)
    task.only_latest = False
    with pytest.raises(Unsupported, match="not the latest value"):
        check_view(task)
    fv.batch_source.field_mapping = {"age": "years"}
    task.only_latest = True
    with pytest.raises(Unsupported, match="a field mapping"):
        check_view(task)


@pytest.mark.slow
def test_feast_cli_materialize_uses_the_arrow_engine(tmp_path):
    """`feast materialize` loads the engine from the yaml (adprior importable by Feast's CLI) and writes
    the same cells as the SDK path."""
    from tests.support.paths import ROOT

    repo = populated_repo(tmp_path / "feature_repo")
    ref = tmp_path / "ref"
    shutil.copytree(repo, ref)
    for r in (repo, ref):
        st.apply(st.StoreConfig(repo=r))
    st.materialize(st.StoreConfig(repo=ref, batch_engine="local"), end=END, start=END - timedelta(days=400))
    feast = ROOT / ".venv" / "bin" / "feast"
    window = [(END - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%S"), END.strftime("%Y-%m-%dT%H:%M:%S")]
    views = [
        "user_profile",
        "user_behavior",
        "advertiser_stats",
        "llm_advertiser_predictions",
        "llm_user_interests",
    ]
    out = subprocess.run(
        [str(feast), "-c", str(repo), "materialize", *window, *[a for v in views for a in ("-v", v)]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert sqlite_cells(repo / DB) == sqlite_cells(ref / DB)


def test_sorted_by_key_sorts_by_the_serialized_key():
    """Little-endian int64 keys: 256 (00 01 ...) sorts before 1 (01 00 ...), unlike the numbers."""
    table = pa.table({"user_id": pa.array([1, 256, 3, 2], pa.int64()), "x": ["a", "b", "c", "d"]})
    got = sorted_by_key(table, entity_keys(table, {"user_id": VT.INT64}, 3))[0]
    keys = entity_keys(got, {"user_id": VT.INT64}, 3)
    assert keys == sorted(keys) and got["user_id"].to_pylist() == [256, 1, 2, 3]
    assert got["x"].to_pylist() == ["b", "a", "d", "c"]  # rows move whole


def test_sqlite_rows_are_written_in_index_order(tmp_path):
    """With batches of 2 users, the SQLite store still receives the users in key order (rowids follow the
    index), so each batch's transaction touches one key range of the index (sorted_by_key)."""
    import sqlite3

    from tests.support.store import pred_rows

    repo = populated_repo(tmp_path / "feature_repo")
    yaml_path = repo / "feature_store.yaml"
    yaml_path.write_text(
        yaml_path.read_text().replace("online_write_batch_size: 10000", "online_write_batch_size: 2")
    )
    cfg = st.StoreConfig(repo=repo)
    users = [3, 256, 1, 515, 2, 770]  # file order; key order: 256, 770, 1, 515, 2, 3
    st.write_partition(
        cfg,
        "llm_predictions",
        pred_rows("2026-06-16", [(u, [101], ["Nike"], [], "ok") for u in users]),
        "dt=2026-06-16",
    )
    st.apply(cfg)
    st.materialize(cfg, end=END)
    with sqlite3.connect(repo / "data" / "online_store.db") as con:
        table = next(
            n
            for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if n.endswith("llm_advertiser_predictions")
        )
        keys = [k for (k,) in con.execute(f'SELECT entity_key FROM "{table}" ORDER BY rowid')]
    firsts = list(dict.fromkeys(keys))  # one row per (user, feature): each user's first rowid
    assert len(firsts) == len(users) and firsts == sorted(firsts)
