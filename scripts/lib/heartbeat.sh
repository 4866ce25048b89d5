# shellcheck shell=bash
# Sourced by the build scripts (get-vault.sh, get-pulumi-engine.sh), which define
# log(). Ten silent minutes look like a hang: with_heartbeat runs a command in the
# background (its output to stderr) and says every minute how long it has run.

with_heartbeat() { # what, command...
  local what=$1 started=$SECONDS pid rc
  shift
  "$@" >&2 &
  pid=$!
  while ! wait_for "$pid" 60; do
    log "$what: still running, $(((SECONDS - started) / 60)) min elapsed"
  done
  wait "$pid" && rc=0 || rc=$?
  log "$what: done in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
  return "$rc"
}

wait_for() { # pid seconds: true once the process has ended, false after the timeout
  local i
  for ((i = 0; i < $2; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 1
  done
  return 1
}
