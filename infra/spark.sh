#!/usr/bin/env bash
# Usage: infra/spark.sh start|stop|status
#
# A Spark standalone cluster (one master + one worker) from the launch scripts bundled in the venv's
# pyspark package (bin/spark-class), without Docker or a Spark download. Java 17 must be on PATH (or
# JAVA_HOME set).
#   start   start master and worker unless already running (idempotent); prints the --master to use
#   stop    stop the worker and master this script started (pid files), nothing else
#   status  exit 0 when both run, 3 otherwise
#
# Environment:
#   ADPRIOR_BIND                listen address of master, worker and web UIs (default 127.0.0.1)
#   ADPRIOR_SPARK_PORT          master RPC port (default 7077)
#   ADPRIOR_SPARK_UI_PORT       master web UI port (default 8080; worker UI: this + 1)
#   ADPRIOR_SPARK_WORKER_CORES  worker cores (default: all)
#   ADPRIOR_SPARK_WORKER_MEMORY worker memory (default 2g)
#   ADPRIOR_SPARK_SECRET        optional shared secret: turns on spark.authenticate on master and
#                               worker. It is handed over in the environment (_SPARK_AUTH_SECRET),
#                               never on a command line; the driver needs the same
#                               (see infra/spark/spark-defaults.conf and infra/README.md).
#   ADPRIOR_INFRA_STATE         state folder (default runs/infra): pids, logs, worker dirs under spark/
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${ADPRIOR_SPARK_PORT:-7077}"
UI_PORT="${ADPRIOR_SPARK_UI_PORT:-8080}"
WORKER_UI_PORT="$((UI_PORT + 1))"
DIR="$(state_dir spark)"
MASTER_PID="${DIR}/master.pid"
WORKER_PID="${DIR}/worker.pid"
MASTER_CLASS=org.apache.spark.deploy.master.Master
WORKER_CLASS=org.apache.spark.deploy.worker.Worker

spark_home() {
  local home
  home="$("${VENV}/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')" ||
    die "pyspark not importable from ${VENV}/bin/python"
  [[ -x "${home}/bin/spark-class" ]] || die "${home}/bin/spark-class not found"
  echo "${home}"
}

master_url() { echo "spark://$(client_host):${PORT}"; }

print_info() {
  echo "spark: master (pid $(cat "${MASTER_PID}")) and worker (pid $(cat "${WORKER_PID}")) running; logs in ${DIR}"
  echo "web UI: http://$(client_host):${UI_PORT}"
  echo "--master $(master_url)"
}

# The environment of the Spark daemons: loopback (or ADPRIOR_BIND) for every socket and web UI,
# state under the state folder, authentication when a secret is given.
daemon_env() {
  export SPARK_HOME
  SPARK_HOME="$(spark_home)"
  export SPARK_LOCAL_IP="${BIND}" # web UIs and block manager bind here instead of 0.0.0.0
  export SPARK_LOG_DIR="${DIR}/logs" SPARK_PID_DIR="${DIR}" SPARK_WORKER_DIR="${DIR}/work"
  export SPARK_LOCAL_DIRS="${DIR}/local"
  mkdir -p "${SPARK_LOG_DIR}" "${SPARK_WORKER_DIR}" "${SPARK_LOCAL_DIRS}"
  if [[ -n "${ADPRIOR_SPARK_CONF_DIR:-}" ]]; then
    export SPARK_CONF_DIR="${ADPRIOR_SPARK_CONF_DIR}"
  fi
  local opts=""
  if [[ -n "${ADPRIOR_SPARK_SECRET:-}" ]]; then
    export _SPARK_AUTH_SECRET="${ADPRIOR_SPARK_SECRET}"
    opts="-Dspark.authenticate=true"
  fi
  # no REST submission server (port 6066): it takes unauthenticated job submissions
  export SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false ${opts}" SPARK_WORKER_OPTS="${opts}"
  export SPARK_DAEMON_MEMORY="${ADPRIOR_SPARK_DAEMON_MEMORY:-512m}"
}

start() {
  command -v java >/dev/null || [[ -n "${JAVA_HOME:-}" ]] || die "java not found (Java 17 needed)"
  if pid_alive "${MASTER_PID}" "${MASTER_CLASS}" && pid_alive "${WORKER_PID}" "${WORKER_CLASS}"; then
    print_info
    return 0
  fi
  daemon_env
  local host
  host="$(client_host)"
  if ! pid_alive "${MASTER_PID}" "${MASTER_CLASS}"; then
    port_free "${host}" "${PORT}" || die "port ${PORT} is already in use on ${host}"
    launch "${MASTER_PID}" "${DIR}/master.log" "${SPARK_HOME}/bin/spark-class" "${MASTER_CLASS}" \
      --host "${BIND}" --port "${PORT}" --webui-port "${UI_PORT}"
    wait_port "${host}" "${PORT}" "${START_TIMEOUT}" "${MASTER_PID}" || {
      tail -n 30 "${DIR}/master.log" >&2 || true
      stop_pid "${MASTER_PID}" spark-master 10
      die "Spark master did not open ${host}:${PORT} within ${START_TIMEOUT}s (log: ${DIR}/master.log)"
    }
  fi
  if ! pid_alive "${WORKER_PID}" "${WORKER_CLASS}"; then
    local worker_args=(--host "${BIND}" --webui-port "${WORKER_UI_PORT}" --work-dir "${SPARK_WORKER_DIR}"
      --memory "${ADPRIOR_SPARK_WORKER_MEMORY:-2g}")
    if [[ -n "${ADPRIOR_SPARK_WORKER_CORES:-}" ]]; then
      worker_args+=(--cores "${ADPRIOR_SPARK_WORKER_CORES}")
    fi
    launch "${WORKER_PID}" "${DIR}/worker.log" "${SPARK_HOME}/bin/spark-class" "${WORKER_CLASS}" \
      "${worker_args[@]}" "$(master_url)"
    # registered with the master = the worker log says so
    local i
    for ((i = 0; i < START_TIMEOUT * 4; i++)); do
      grep -q "Successfully registered with master" "${DIR}/worker.log" 2>/dev/null && break
      pid_alive "${WORKER_PID}" || break
      sleep 0.25
    done
    grep -q "Successfully registered with master" "${DIR}/worker.log" 2>/dev/null || {
      tail -n 30 "${DIR}/worker.log" >&2 || true
      die "Spark worker did not register within ${START_TIMEOUT}s (log: ${DIR}/worker.log)"
    }
  fi
  print_info
}

stop() {
  stop_pid "${WORKER_PID}" spark-worker 30
  stop_pid "${MASTER_PID}" spark-master 30
}

status() {
  if pid_alive "${MASTER_PID}" "${MASTER_CLASS}" && pid_alive "${WORKER_PID}" "${WORKER_CLASS}"; then
    print_info
  else
    echo "spark: not running (master: $(pid_alive "${MASTER_PID}" "${MASTER_CLASS}" && echo up || echo down)," \
      "worker: $(pid_alive "${WORKER_PID}" "${WORKER_CLASS}" && echo up || echo down))"
    return 3
  fi
}

run_verb "$@"
