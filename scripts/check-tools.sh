#!/usr/bin/env bash
# What the test suite (`check-tools.sh test`) or the rehearsal (`check-tools.sh
# rehearse`) needs on this machine. As root (CI, a fresh machine) it installs
# the missing Debian packages; otherwise it names them in one apt-get line.
# The rehearsal needs no linter: shellcheck is for the test suite only.
set -u
for_what=${1:-test}
packages=()
# Debian puts daemons and admin tools (nginx, sshd, useradd) in
# /usr/sbin, which an ordinary user's login PATH lacks: look there too.
have() { # command
  command -v "$1" >/dev/null 2>&1 && return
  case "$1" in */*) return 1 ;; esac
  [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}
need() { # command, package
  have "$1" && return
  case " ${packages[*]-} " in *" $2 "*) ;; *) packages+=("$2") ;; esac
}
need openssl openssl      # certificates and CSRs; the rehearsal's served-certificate probes
need nginx nginx          # each app's TLS listener and the edge proxy
need setsid util-linux    # the systemctl shim runs each service in a process group of its own
need pkill procps         # stopping what an app user left running
need ssh openssh-client   # ssh hosts' steps are performed with the OpenSSH client
need ssh-keygen openssh-client # the sshd fixture makes throwaway keys
# The sshd fixture runs /usr/sbin/sshd itself: check that very file.
[ -x /usr/sbin/sshd ] || need /usr/sbin/sshd openssh-server
if [ "$(id -u)" = 0 ]; then
  need setpriv util-linux # host steps switch from root to the app user
  need timeout coreutils  # and run under a time limit
  need useradd passwd     # a real unprivileged user per app
fi
[ "$for_what" = test ] && need shellcheck shellcheck # the host scripts are linted by the tests

if [ "${#packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "check-tools: installing ${packages[*]}" >&2
    # policy-rc.d exiting 101 tells the packages' scripts not to start services (openssh-server
    # would listen on port 22; the tests start their own sshd on a free loopback port).
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy"
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >&2
    rc=$?
    [ -z "$policy" ] || rm -f "$policy"
    [ "$rc" = 0 ] || exit 1
  else
    echo "check-tools: missing system packages; install them with:" >&2
    echo "  sudo apt-get install ${packages[*]}" >&2
    exit 1
  fi
fi

cache="${VAULT_ROTATION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-rotation}"
cached=$(find "$cache" -maxdepth 2 -name vault -type f -perm -u+x 2>/dev/null | head -n 1)
if ! command -v vault >/dev/null 2>&1 && [ -z "${VAULT_BIN:-}" ] && [ -z "$cached" ] && ! command -v go >/dev/null 2>&1; then
  echo "check-tools: no vault binary and no Go to build one: put vault on PATH, set VAULT_BIN, or install Go (https://go.dev/doc/install)" >&2
  exit 1
fi
exit 0
