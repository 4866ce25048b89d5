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
check ssh "ssh hosts' steps are performed with the OpenSSH client" "apt-get install openssh-client"
check ssh-keygen "the sshd fixture makes throwaway keys" "apt-get install openssh-client"
# sshd lives in /usr/sbin, often not on a user's PATH: check the file the fixture runs.
if [ ! -x /usr/sbin/sshd ]; then
  printf 'missing: /usr/sbin/sshd (ssh hosts are tested and rehearsed against a real sshd). Install: apt-get install openssh-server\n' >&2
  missing=1
fi
cache="${VAULT_ROTATION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-rotation}"
cached=$(find "$cache" -maxdepth 2 -name vault -type f -perm -u+x 2>/dev/null | head -n 1)
if ! command -v vault >/dev/null 2>&1 && [ -z "${VAULT_BIN:-}" ] && [ -z "$cached" ]; then
  check go "Vault is built from its Go module when no vault binary is on PATH" "https://go.dev/doc/install, or put vault on PATH / set VAULT_BIN"
fi
exit "$missing"
