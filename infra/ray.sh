#!/usr/bin/env bash
# Usage: infra/ray.sh start|stop|status
#
# A Ray head node from the venv (`ray start --head`), for `adprior infer|nightly --ray-address`.
#   start   start it unless already running (idempotent); prints the --ray-address and the
#           environment a driver needs
#   stop    stop the Ray processes this script started (its process group and the processes of its
#           temp folder), never other Ray instances of the same user (`ray stop` would kill those)
#   status  exit 0 when running, 3 when not
#
# Security: token authentication is on by default (RAY_AUTH_MODE=token). The token comes from
# $RAY_AUTH_TOKEN, or the file $RAY_AUTH_TOKEN_PATH, or else a random token is generated once into
# <state>/ray/auth_token (mode 0600). Drivers and joining nodes need the same token (export
# RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=...): the script prints the lines, never the token.
# ADPRIOR_RAY_AUTH=disabled turns it off (only sensible on a private loopback-only machine).
#
# Environment:
#   ADPRIOR_BIND            node address, GCS, dashboard and client server (default 127.0.0.1)
#   ADPRIOR_RAY_PORT        GCS port (default 6380, so it does not collide with Redis on 6379)
#   ADPRIOR_RAY_DASHBOARD_PORT  dashboard port (default 8265)
#   ADPRIOR_RAY_CLIENT_PORT start the Ray client server on this port, for ray://host:port drivers
#                           (needs `pip install "ray[client]"`; default: no client server, drivers
#                           run on a cluster node and use host:port)
#   ADPRIOR_RAY_NUM_CPUS    CPUs to offer (default: all)
#   ADPRIOR_RAY_NUM_GPUS    GPUs to offer (default: detected)
#   ADPRIOR_RAY_TEMP_DIR    Ray's session folder (default /tmp/adprior-ray-<port>; Unix socket
#                           paths must stay short, so not under a deep state folder)
#   ADPRIOR_INFRA_STATE     state folder (default runs/infra): pid, log and token under ray/
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${ADPRIOR_RAY_PORT:-6380}"
DASH_PORT="${ADPRIOR_RAY_DASHBOARD_PORT:-8265}"
CLIENT_PORT="${ADPRIOR_RAY_CLIENT_PORT:-}"
DIR="$(state_dir ray)"
PIDFILE="${DIR}/ray.pid"
LOGFILE="${DIR}/ray.log"
TEMP_DIR="${ADPRIOR_RAY_TEMP_DIR:-/tmp/adprior-ray-${PORT}}"
AUTH="${ADPRIOR_RAY_AUTH:-token}"
RAY="${VENV}/bin/ray"

address() { echo "$(client_host):${PORT}"; }

# Sets RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH for the head (and prints nothing secret).
auth_env() {
  case "${AUTH}" in
    disabled)
      export RAY_AUTH_MODE=disabled
      ;;
    token)
      export RAY_AUTH_MODE=token
      if [[ -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
        local f="${DIR}/auth_token"
        if [[ ! -s "${f}" ]]; then
          (umask 077 && "${VENV}/bin/python" -c 'import secrets; print(secrets.token_hex(32), end="")' >"${f}")
        fi
        chmod 600 "${f}"
        export RAY_AUTH_TOKEN_PATH="${f}"
      fi
      ;;
    *) die "ADPRIOR_RAY_AUTH must be token or disabled, not ${AUTH}" ;;
  esac
}

print_info() {
  echo "ray: head running (pid $(cat "${PIDFILE}")) at $(address); log ${LOGFILE}"
  echo "dashboard: http://$(client_host):${DASH_PORT}"
  if [[ "${AUTH}" == token ]]; then
    echo "export RAY_AUTH_MODE=token"
    if [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
      echo "export RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH}"
    elif [[ -z "${RAY_AUTH_TOKEN:-}" ]]; then
      echo "export RAY_AUTH_TOKEN_PATH=${DIR}/auth_token"
    else
      echo "# drivers need the same RAY_AUTH_TOKEN in their environment"
    fi
  fi
  echo "--ray-address $(address)"
}

start() {
  [[ -x "${RAY}" ]] || die "${RAY} not found (ADPRIOR_VENV)"
  auth_env
  if pid_alive "${PIDFILE}" "ray"; then
    print_info
    return 0
  fi
  port_free "$(client_host)" "${PORT}" || die "port ${PORT} is already in use on $(client_host)"
  mkdir -p "${TEMP_DIR}"
  chmod 700 "${TEMP_DIR}"
  local args=(start --head --block
    --node-ip-address "${BIND}"
    --port "${PORT}"
    --dashboard-host "${BIND}"
    --dashboard-port "${DASH_PORT}"
    --temp-dir "${TEMP_DIR}"
    --disable-usage-stats)
  if [[ -n "${CLIENT_PORT}" ]]; then
    args+=(--ray-client-server-port "${CLIENT_PORT}")
  fi
  if [[ -n "${ADPRIOR_RAY_NUM_CPUS:-}" ]]; then
    args+=(--num-cpus "${ADPRIOR_RAY_NUM_CPUS}")
  fi
  if [[ -n "${ADPRIOR_RAY_NUM_GPUS:-}" ]]; then
    args+=(--num-gpus "${ADPRIOR_RAY_NUM_GPUS}")
  fi
  # --block keeps `ray start` in the foreground of its own session: stop signals that group.
  RAY_USAGE_STATS_ENABLED=0 launch "${PIDFILE}" "${LOGFILE}" "${RAY}" "${args[@]}"
  local i
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    if grep -q "Ray runtime started" "${LOGFILE}" 2>/dev/null && port_open "$(client_host)" "${PORT}"; then
      print_info
      return 0
    fi
    pid_alive "${PIDFILE}" || break
    sleep 0.25
  done
  tail -n 30 "${LOGFILE}" >&2 || true
  stop
  die "Ray head did not start within ${START_TIMEOUT}s (log: ${LOGFILE})"
}

# The pids of processes whose command line mentions our temp folder (raylet, GCS, workers...).
temp_dir_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ -r "${p}/cmdline" ]] || continue
    if tr '\0' ' ' <"${p}/cmdline" 2>/dev/null | grep -qF -- "${TEMP_DIR}"; then
      echo "${p#/proc/}"
    fi
  done
}

stop() {
  local i
  # First the `ray start --block` leader alone: it drains the node through the GCS and stops its
  # children. Signalling the whole group at once kills the GCS under it and the drain times out.
  if pid_alive "${PIDFILE}"; then
    local leader
    leader="$(cat "${PIDFILE}")"
    kill -TERM "${leader}" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do
      kill -0 "${leader}" 2>/dev/null || break
      sleep 0.25
    done
    # the group of the leader (it may be gone already); then stop_pid's usual path
    kill -TERM -- "-${leader}" 2>/dev/null || true
    if ! kill -0 "${leader}" 2>/dev/null; then
      rm -f "${PIDFILE}"
      log "ray: stopped (pid ${leader})"
    fi
  fi
  stop_pid "${PIDFILE}" ray 20 2>/dev/null
  # anything of this head that left the process group (e.g. started in a new session)
  local pids
  for i in 1 2 3; do
    pids="$(temp_dir_pids | grep -vx "$$" || true)"
    [[ -n "${pids}" ]] || break
    # shellcheck disable=SC2086
    kill -TERM ${pids} 2>/dev/null || true
    sleep 2
  done
  pids="$(temp_dir_pids | grep -vx "$$" || true)"
  if [[ -n "${pids}" ]]; then
    # shellcheck disable=SC2086
    kill -KILL ${pids} 2>/dev/null || true
  fi
}

status() {
  service_status ray "${PIDFILE}" ray
}

run_verb "$@"
