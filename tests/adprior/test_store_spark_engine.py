"""The distributed path: Feast's Spark compute engine (``batch_engine: spark.engine`` in
feature_store.spark-redis.yaml) materializes into a real Redis exactly what the single-machine Arrow
engine (feature_store.redis.yaml) writes, cell by cell, through local Spark with Python workers.

Feast 0.67's engine starts its session with its whole ``batch_engine`` block as Spark settings (the
nested ``spark_conf`` ignored); adprior.store.materialize starts it first with the yaml's settings and
points the workers at this interpreter (PYSPARK_PYTHON): the session must be local[2] in UTC here.
"""

from __future__ import annotations

import os

# Imported now, outside the per-test warning filters (see test_store_spark.py).
import feast.infra.offline_stores.contrib.spark_offline_store.spark  # noqa: F401
import pytest

from adprior import store as st
from tests.support.online_cells import flush_redis, redis_cells, run_engine
from tests.support.store import populated_repo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature"),
    pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The spark .* is an experimental feature:RuntimeWarning"),
]


@pytest.fixture
def own_spark_session():
    """Stop the session materialize started (when none was active before), after the test."""
    from pyspark.sql import SparkSession

    had = SparkSession.getActiveSession() is not None
    yield
    if not had and SparkSession.getActiveSession() is not None:
        SparkSession.getActiveSession().stop()


def test_spark_engine_writes_the_arrow_engines_redis_cells(
    tmp_path, redis_srv, monkeypatch, own_spark_session
):
    from pyspark.sql import SparkSession

    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    repo = populated_repo(tmp_path / "feature_repo")
    arrow_cfg = st.StoreConfig(repo=repo, online="redis", offline="file")
    spark_cfg = st.StoreConfig(repo=repo, online="redis", offline="spark")
    for cfg in (arrow_cfg, spark_cfg):
        st.apply(cfg)
    assert st.get_store(spark_cfg).config.batch_engine_config["type"] == "spark.engine"

    port = redis_srv.port
    arrow = run_engine(arrow_cfg, lambda: redis_cells(port))
    flush_redis(port)
    spark = run_engine(spark_cfg, lambda: redis_cells(port))

    session = SparkSession.getActiveSession()
    assert session is not None and session.sparkContext.master == "local[2]"
    assert session.conf.get("spark.sql.session.timeZone") == "UTC"
    assert os.environ["PYSPARK_PYTHON"]  # the workers that ran Feast's writes
    assert spark == arrow
    first, after, reads = spark
    assert len(first) == 6 and after == first
    assert reads[0][0]["advertiser_ids"] == [202, 505, 101] and reads[2]["is_active"] == [
        True,
        True,
        True,
        None,
    ]
