"""adprior.io's Spark session lifecycle: stop_spark ends the driver JVM too, and a later get_spark restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.support.paths import ROOT

SCRIPT = textwrap.dedent(
    """
    import json, os, subprocess
    from adprior.io import SparkConfig, get_spark, spark_running, stop_spark

    def jvms():
        out = subprocess.run(["pgrep", "-P", str(os.getpid()), "java"], capture_output=True, text=True).stdout
        return len(out.split())

    seen = {"before": [spark_running(), jvms()]}
    cfg = SparkConfig(master="local[1]", shuffle_partitions=1, driver_memory="1g")
    seen["count"] = get_spark(cfg).range(7).count()
    seen["running"] = [spark_running(), jvms()]
    stop_spark()
    seen["stopped"] = [spark_running(), jvms()]
    seen["again"] = get_spark(cfg).range(3).count()
    stop_spark()
    stop_spark()  # a second stop is a no-op
    seen["end"] = [spark_running(), jvms()]
    print("RESULT " + json.dumps(seen))
    """
)


def test_stop_spark_ends_the_jvm_and_get_spark_restarts():
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, done.stdout[-2000:] + done.stderr[-3000:]
    seen = json.loads(line[len("RESULT ") :])
    assert seen["before"] == [False, 0]
    assert seen["count"] == 7 and seen["running"] == [True, 1]
    assert seen["stopped"] == [False, 0]  # SparkSession.stop alone would leave the JVM running
    assert seen["again"] == 3 and seen["end"] == [False, 0]
