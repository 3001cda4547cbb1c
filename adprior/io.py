"""Shared I/O: the Spark session (local by default, a cluster by configuration), the Spark reader of
raw tables (held to the raw contract), and the one atomic file writer every stage commits through."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from world.schema import SCHEMAS, ContractError, RawLayout

if TYPE_CHECKING:  # pyspark is imported where Spark is used: writers and configs stay light
    from pyspark.sql import DataFrame, SparkSession

LOG4J2 = Path(__file__).with_name("log4j2.properties")  # Spark's driver logging: errors only


@dataclass
class SparkConfig:
    """How to reach Spark. The same job code runs on a laptop and on a cluster."""

    master: str = "local[2]"  # 'local[N]', 'spark://host:7077', 'yarn', 'k8s://...'
    app_name: str = "adprior"  # shown in the Spark UI
    driver_memory: str = "4g"  # only honoured when the driver JVM starts here
    shuffle_partitions: int = 8  # spark.sql.shuffle.partitions; raise it on a cluster
    ui: bool = False  # start the Spark web UI
    extra: dict[str, str] = field(default_factory=dict)  # any other spark.* settings


def get_spark(cfg: SparkConfig | None = None) -> SparkSession:
    """Return a (possibly existing) SparkSession configured by ``cfg``, always in UTC."""
    from pyspark.sql import SparkSession

    cfg = cfg or SparkConfig()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.ui.enabled", str(cfg.ui).lower())
        .config("spark.ui.showConsoleProgress", "false")
        # Raw tables have one folder per day: list them on the driver, not with a Spark job.
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    extra = dict(cfg.extra)
    java = "-Duser.timezone=UTC"
    if "log4j.configurationFile" not in extra.get("spark.driver.extraJavaOptions", ""):
        java += f" -Dlog4j.configurationFile={LOG4J2}"  # errors only: no banner, no WARN lines per start
    extra["spark.driver.extraJavaOptions"] = (
        f"{java} {extra.get('spark.driver.extraJavaOptions', '')}".strip()
    )
    for k, v in extra.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_running() -> bool:
    """Whether this process already holds a SparkSession (someone else's, e.g. a caller's or a test's)."""
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession() is not None


def stop_spark() -> None:
    """Stop the active SparkSession and the local driver JVM it runs in.

    ``SparkSession.stop`` leaves the py4j gateway's JVM alive (and ticking, ~20 % of a core), so the JVM
    process is ended too; a later :func:`get_spark` starts a fresh one.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)  # set by pyspark's launch_gateway when it started the JVM here
    with contextlib.suppress(Exception):  # the JVM may already be gone; it is stopped below either way
        gateway.shutdown()
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a JVM that ignores SIGTERM is killed
            proc.kill()
    SparkContext._gateway = None
    SparkContext._jvm = None


_SPARK_TYPES = {
    "int64": "bigint",
    "int32": "int",
    "string": "string",
    "date32[day]": "date",
    "double": "double",
    "bool": "boolean",
    "timestamp[us, tz=UTC]": "timestamp",
    "list<item: string>": "array<string>",
}


def read_raw(spark: SparkSession, layout: RawLayout, name: str) -> DataFrame:
    """Read a raw table with Spark and hold it to the contract: every column present, castable to its type."""
    from pyspark.sql import functions as F

    path = layout.table(name)
    if not path.exists():
        raise FileNotFoundError(f"raw table {name!r} not found at {path}")
    df = spark.read.option("basePath", str(path)).parquet(str(path))
    have = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    for col in SCHEMAS[name]:
        want = _SPARK_TYPES[str(col.type)]
        if col.name not in have:
            raise ContractError(f"table {name!r} at {path}: column {col.name!r} ({want}) is missing")
        if have[col.name] != want:
            numeric = {"bigint", "int", "smallint", "tinyint", "double", "float"}
            if not (have[col.name] in numeric and want in numeric):
                raise ContractError(
                    f"table {name!r} at {path}: column {col.name!r} is {have[col.name]}, expected {want}"
                )
            df = df.withColumn(col.name, F.col(col.name).cast(want))
    return df


def atomic_write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that it is either complete or absent: a temporary file in the
    same folder, fsync'ed, then ``os.replace``. An OSError (e.g. a full disk) names the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())  # a full disk may only show here
        os.replace(tmp, path)
    except OSError as exc:  # name the file (pyarrow's message does not)
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)  # nothing partial left behind


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
