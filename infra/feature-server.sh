#!/usr/bin/env bash
# Usage: infra/feature-server.sh start|stop|status
#
# The Feast HTTP feature server (`feast serve`) over feature_repo/, in the background, from the venv.
#   start   start it unless already running (idempotent); waits until the port answers
#   stop    stop the server this script started (pid file), nothing else
#   status  exit 0 when running, 3 when not
#
# Run `adprior materialize` (or `feast apply`) first: the server reads the registry of the chosen yaml.
#
# Environment:
#   ADPRIOR_BIND            listen address (default 127.0.0.1). The server has no authentication of
#                           its own (auth: no_auth in the yaml): keep it on loopback or put it behind
#                           an authenticating proxy / network policy.
#   ADPRIOR_FEAST_PORT      port (default 6566)
#   ADPRIOR_FEAST_YAML      feature_store yaml inside the repo (default feature_store.yaml, SQLite;
#                           feature_store.redis.yaml for Redis, which reads $ADPRIOR_REDIS)
#   ADPRIOR_FEAST_REPO      the Feast repo folder (default <repo>/feature_repo)
#   ADPRIOR_FEAST_WORKERS   server worker processes (default 1)
#   ADPRIOR_INFRA_STATE     state folder (default runs/infra): pid and log under feature-server/
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${ADPRIOR_FEAST_PORT:-6566}"
FEAST_REPO="${ADPRIOR_FEAST_REPO:-${REPO_ROOT}/feature_repo}"
FEAST_YAML="${ADPRIOR_FEAST_YAML:-feature_store.yaml}"
DIR="$(state_dir feature-server)"
PIDFILE="${DIR}/feast.pid"
LOGFILE="${DIR}/feast.log"
FEAST="${VENV}/bin/feast"

print_info() {
  echo "feature server: running (pid $(cat "${PIDFILE}")) at http://$(client_host):${PORT} (${FEAST_YAML}); log ${LOGFILE}"
  echo "try: curl -s -X POST http://$(client_host):${PORT}/get-online-features -H 'Content-Type: application/json' \\"
  echo "       -d '{\"feature_service\": \"llm_predictions_online\", \"entities\": {\"user_id\": [17]}}'"
}

start() {
  [[ -x "${FEAST}" ]] || die "${FEAST} not found (ADPRIOR_VENV)"
  [[ -f "${FEAST_REPO}/${FEAST_YAML}" ]] || die "${FEAST_REPO}/${FEAST_YAML} not found"
  if [[ "${FEAST_YAML}" == *redis* && -z "${ADPRIOR_REDIS:-}" ]]; then
    die "${FEAST_YAML} needs ADPRIOR_REDIS (host:port[,password=...])"
  fi
  if pid_alive "${PIDFILE}" feast; then
    print_info
    return 0
  fi
  port_free "$(client_host)" "${PORT}" || die "port ${PORT} is already in use on $(client_host)"
  launch "${PIDFILE}" "${LOGFILE}" "${FEAST}" -c "${FEAST_REPO}" -f "${FEAST_REPO}/${FEAST_YAML}" \
    serve -h "${BIND}" -p "${PORT}" --no-access-log --workers "${ADPRIOR_FEAST_WORKERS:-1}"
  if ! wait_port "$(client_host)" "${PORT}" "${START_TIMEOUT}" "${PIDFILE}"; then
    tail -n 30 "${LOGFILE}" >&2 || true
    stop_pid "${PIDFILE}" feature-server 10
    die "feast serve did not open $(client_host):${PORT} within ${START_TIMEOUT}s (log: ${LOGFILE})"
  fi
  print_info
}

stop() {
  stop_pid "${PIDFILE}" feature-server 30
}

status() {
  service_status "feature server" "${PIDFILE}" feast
}

run_verb "$@"
