#!/usr/bin/env bash
# Runs before `npm test` and `npm run rehearse`: says clearly what is missing.
set -u
missing=0
check() { # command, why, how to install
  if ! command -v "$1" >/dev/null 2>&1; then
    printf 'missing: %s (%s). Install: %s\n' "$1" "$2" "$3" >&2
    missing=1
  fi
}
check openssl "test certificates and CSRs" "apt-get install openssl"
check shellcheck "the host scripts are linted by the tests" "apt-get install shellcheck"
check setsid "the systemctl shim runs each service in a process group of its own" "apt-get install util-linux"
check pkill "tests stop what an app user left running" "apt-get install procps"
if [ "$(id -u)" = 0 ]; then
  # As root every app runs as a real user of its own: host steps switch with runuser.
  check runuser "host steps switch from root to the app user" "apt-get install util-linux"
  check useradd "tests create a real unprivileged user per app" "apt-get install passwd"
fi
cache="${VAULT_ROTATION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-rotation}"
cached=$(find "$cache" -maxdepth 2 -name vault -type f -perm -u+x 2>/dev/null | head -n 1)
if ! command -v vault >/dev/null 2>&1 && [ -z "${VAULT_BIN:-}" ] && [ -z "$cached" ]; then
  check go "Vault is built from its Go module when no vault binary is on PATH" "https://go.dev/doc/install, or put vault on PATH / set VAULT_BIN"
fi
exit "$missing"
