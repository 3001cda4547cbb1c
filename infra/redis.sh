#!/usr/bin/env bash
# Usage: infra/redis.sh start|stop|status
#
# A redis-server (Debian package `redis-server`) for the Feast online store, without Docker.
#   start   start it unless already running (idempotent) and print the ADPRIOR_REDIS to export
#   stop    stop the server this script started (pid file), nothing else
#   status  exit 0 when running, 3 when not
#
# Environment:
#   ADPRIOR_REDIS_PASSWORD  the password (requirepass). Passed to redis-server on stdin: never on a
#                           command line, in a file or in the printed output. Without it the server
#                           runs without a password, which start only accepts on a loopback address.
#   ADPRIOR_REDIS_PORT      port (default 6379)
#   ADPRIOR_BIND            listen address (default 127.0.0.1; anything else needs a password)
#   ADPRIOR_INFRA_STATE     state folder (default runs/infra): pid, log and data under redis/
#   ADPRIOR_REDIS_APPENDONLY  yes|no: append-only file persistence (default yes, so a restart keeps
#                           the materialized features)
#   ADPRIOR_REDIS_MAXMEMORY optional maxmemory, e.g. 4gb
#   TLS (optional): ADPRIOR_REDIS_TLS_CERT and ADPRIOR_REDIS_TLS_KEY (PEM files) switch the port to
#   TLS only (plain port disabled); ADPRIOR_REDIS_TLS_CA (CA bundle) is added to the printed
#   connection string as ssl_ca_certs so redis-py verifies the server. Clients then use
#   `...,ssl=true[,ssl_ca_certs=/path/ca.crt]`. Client certificates are not required
#   (tls-auth-clients no); the password still applies.
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${ADPRIOR_REDIS_PORT:-6379}"
DIR="$(state_dir redis)"
PIDFILE="${DIR}/redis.pid"
LOGFILE="${DIR}/redis.log"
DATA="${DIR}/data"

# The value of $ADPRIOR_REDIS, with the password shown as *** (or as a variable reference).
connection_string() {
  local pw_shown="$1" s
  s="$(client_host):${PORT}"
  if [[ -n "${ADPRIOR_REDIS_PASSWORD:-}" ]]; then
    s+=",password=${pw_shown}"
  fi
  if [[ -n "${ADPRIOR_REDIS_TLS_CERT:-}" ]]; then
    s+=",ssl=true"
    if [[ -n "${ADPRIOR_REDIS_TLS_CA:-}" ]]; then
      s+=",ssl_ca_certs=${ADPRIOR_REDIS_TLS_CA}"
    fi
  fi
  echo "${s}"
}

print_info() {
  echo "redis: running (pid $(cat "${PIDFILE}")) on ${BIND}:${PORT}; log ${LOGFILE}"
  echo "ADPRIOR_REDIS=$(connection_string '***')"
  if [[ -n "${ADPRIOR_REDIS_PASSWORD:-}" ]]; then
    # single quotes: the line holds the variable reference, not the password
    # shellcheck disable=SC2016
    echo "export ADPRIOR_REDIS=\"$(connection_string '${ADPRIOR_REDIS_PASSWORD}')\""
  else
    echo "export ADPRIOR_REDIS=\"$(connection_string '')\""
  fi
}

# redis config quoting: "..." with backslash and double quote escaped
quote_conf() {
  local v="$1"
  v="${v//\\/\\\\}"
  v="${v//\"/\\\"}"
  printf '"%s"' "${v}"
}

ping_server() {
  local tls_args=()
  if [[ -n "${ADPRIOR_REDIS_TLS_CERT:-}" ]]; then
    tls_args=(--tls --cert "${ADPRIOR_REDIS_TLS_CERT}" --key "${ADPRIOR_REDIS_TLS_KEY}")
    if [[ -n "${ADPRIOR_REDIS_TLS_CA:-}" ]]; then
      tls_args+=(--cacert "${ADPRIOR_REDIS_TLS_CA}")
    else
      tls_args+=(--insecure)
    fi
  fi
  # REDISCLI_AUTH keeps the password off redis-cli's command line
  REDISCLI_AUTH="${ADPRIOR_REDIS_PASSWORD:-}" redis-cli --no-auth-warning -h "$(client_host)" -p "${PORT}" \
    "${tls_args[@]}" ping 2>/dev/null | grep -q PONG
}

start() {
  command -v redis-server >/dev/null || die "redis-server not found: apt-get install -y redis-server"
  if pid_alive "${PIDFILE}" redis-server; then
    print_info
    return 0
  fi
  if [[ -z "${ADPRIOR_REDIS_PASSWORD:-}" ]] && ! is_loopback "${BIND}"; then
    die "refusing to listen on ${BIND} without a password: set ADPRIOR_REDIS_PASSWORD"
  fi
  port_free "$(client_host)" "${PORT}" || die "port ${PORT} is already in use on $(client_host)"
  mkdir -p "${DATA}"
  chmod 700 "${DATA}"
  local args=(
    --bind "${BIND}"
    --protected-mode yes
    --daemonize yes
    --pidfile "${PIDFILE}"
    --logfile "${LOGFILE}"
    --dir "${DATA}"
    --appendonly "${ADPRIOR_REDIS_APPENDONLY:-yes}"
  )
  if [[ -n "${ADPRIOR_REDIS_TLS_CERT:-}" ]]; then
    [[ -n "${ADPRIOR_REDIS_TLS_KEY:-}" ]] || die "ADPRIOR_REDIS_TLS_CERT needs ADPRIOR_REDIS_TLS_KEY"
    args+=(--port 0 --tls-port "${PORT}" --tls-cert-file "${ADPRIOR_REDIS_TLS_CERT}"
      --tls-key-file "${ADPRIOR_REDIS_TLS_KEY}" --tls-auth-clients no)
    if [[ -n "${ADPRIOR_REDIS_TLS_CA:-}" ]]; then
      args+=(--tls-ca-cert-file "${ADPRIOR_REDIS_TLS_CA}")
    fi
  else
    args+=(--port "${PORT}")
  fi
  if [[ -n "${ADPRIOR_REDIS_MAXMEMORY:-}" ]]; then
    args+=(--maxmemory "${ADPRIOR_REDIS_MAXMEMORY}")
  fi
  rm -f "${PIDFILE}"
  # The password goes in through stdin ('-'): not visible in ps, not written to disk.
  if [[ -n "${ADPRIOR_REDIS_PASSWORD:-}" ]]; then
    printf 'requirepass %s\n' "$(quote_conf "${ADPRIOR_REDIS_PASSWORD}")" | redis-server "${args[@]}" -
  else
    redis-server "${args[@]}" - </dev/null
  fi
  local i
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    if [[ -s "${PIDFILE}" ]] && ping_server; then
      print_info
      return 0
    fi
    sleep 0.25
  done
  tail -n 20 "${LOGFILE}" >&2 || true
  die "redis-server did not answer PING within ${START_TIMEOUT}s (log: ${LOGFILE})"
}

stop() {
  stop_pid "${PIDFILE}" redis 30
}

status() {
  service_status redis "${PIDFILE}" redis-server
}

run_verb "$@"
