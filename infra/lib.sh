# shellcheck shell=bash
# Shared helpers of infra/{redis,spark,ray,feature-server}.sh (sourced, not run).
#
# Environment (all optional):
#   ADPRIOR_INFRA_STATE  state folder for pid files and logs (default: <repo>/runs/infra)
#   ADPRIOR_BIND         address the services listen on (default: 127.0.0.1, loopback only)
#   ADPRIOR_VENV         the virtual environment with ray / feast / pyspark (default: <repo>/.venv)
#   ADPRIOR_START_TIMEOUT seconds to wait for a service to answer (default: 90)

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${INFRA_DIR}/.." && pwd)"
STATE_ROOT="${ADPRIOR_INFRA_STATE:-${REPO_ROOT}/runs/infra}"
BIND="${ADPRIOR_BIND:-127.0.0.1}"
VENV="${ADPRIOR_VENV:-${REPO_ROOT}/.venv}"
START_TIMEOUT="${ADPRIOR_START_TIMEOUT:-90}"

die() { echo "error: $*" >&2; exit 1; }
log() { echo "$*" >&2; }

# The host clients should use: the bind address, or loopback when bound to every interface.
client_host() {
  case "${BIND}" in
    0.0.0.0 | '*' | '::') echo "${ADPRIOR_ADVERTISE_HOST:-127.0.0.1}" ;;
    *) echo "${ADPRIOR_ADVERTISE_HOST:-${BIND}}" ;;
  esac
}

is_loopback() {
  case "$1" in
    127.* | localhost | ::1) return 0 ;;
    *) return 1 ;;
  esac
}

# A private folder (0700) for one service's pid files, logs and data.
state_dir() {
  local d="${STATE_ROOT}/$1"
  mkdir -p "${d}"
  chmod 700 "${STATE_ROOT}" "${d}" 2>/dev/null || true
  echo "${d}"
}

# pid_alive PIDFILE [CMDLINE-SUBSTRING]: the recorded process exists (and, when given, its command
# line contains the substring, so a recycled pid is not mistaken for ours).
pid_alive() {
  local pidfile="$1" needle="${2:-}" pid
  [[ -s "${pidfile}" ]] || return 1
  pid="$(cat "${pidfile}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  kill -0 "${pid}" 2>/dev/null || return 1
  if [[ -n "${needle}" && -r "/proc/${pid}/cmdline" ]]; then
    tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -qF -- "${needle}" || return 1
  fi
  return 0
}

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# port_free HOST PORT: nothing listens there (refuses to start on a taken port).
port_free() {
  ! port_open "$1" "$2"
}

# wait_port HOST PORT SECONDS [PIDFILE]: poll until the port accepts connections; fail early when the
# process behind PIDFILE died.
wait_port() {
  local host="$1" port="$2" secs="$3" pidfile="${4:-}" i
  for ((i = 0; i < secs * 4; i++)); do
    port_open "${host}" "${port}" && return 0
    if [[ -n "${pidfile}" ]] && ! pid_alive "${pidfile}"; then
      return 1
    fi
    sleep 0.25
  done
  return 1
}

# stop_pid PIDFILE NAME [SECONDS]: SIGTERM the recorded process (its process group when it leads
# one), wait, then SIGKILL. Only the recorded process (group) is touched.
stop_pid() {
  local pidfile="$1" name="$2" secs="${3:-20}" pid i target
  if ! pid_alive "${pidfile}"; then
    rm -f "${pidfile}"
    log "${name}: not running"
    return 0
  fi
  pid="$(cat "${pidfile}")"
  target="${pid}"
  # started with setsid: the pid leads its own group, so signal the group (its children too)
  if [[ "$(ps -o pgid= -p "${pid}" 2>/dev/null | tr -d ' ')" == "${pid}" ]]; then
    target="-${pid}"
  fi
  kill -TERM -- "${target}" 2>/dev/null || true
  for ((i = 0; i < secs * 4; i++)); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "${pid}" 2>/dev/null; then
    log "${name}: still running after ${secs}s, sending SIGKILL"
    kill -KILL -- "${target}" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "${pidfile}"
  log "${name}: stopped (pid ${pid})"
}

# launch PIDFILE LOGFILE CMD...: run CMD in the background in a session of its own (so `stop` can
# signal the whole group), stdin closed, output to LOGFILE; records the pid.
launch() {
  local pidfile="$1" logfile="$2"
  shift 2
  # one log per run (the previous one kept as .1), so readiness checks never read an old run's lines
  if [[ -e "${logfile}" ]]; then
    mv -f "${logfile}" "${logfile}.1"
  fi
  setsid "$@" </dev/null >>"${logfile}" 2>&1 &
  echo "$!" >"${pidfile}"
}

usage_exit() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$1" >&2
  exit 2
}

# service_status NAME PIDFILE CMDLINE-SUBSTRING: the `status` verb of a one-process service: the
# script's print_info when the recorded process runs, else "NAME: not running" and status 3.
service_status() {
  if pid_alive "$2" "$3"; then
    print_info
  else
    echo "$1: not running"
    return 3
  fi
}

# run_verb ARG: run the calling script's own start, stop or status function; anything else prints
# the script's usage and exits 2.
run_verb() {
  case "${1:-}" in
    start | stop | status) "$1" ;;
    *) usage_exit "$0" ;;
  esac
}
