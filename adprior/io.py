"""One place that builds the Spark session: local mode by default, a cluster by configuration."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from pyspark.sql import SparkSession


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
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    for k, v in cfg.extra.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
