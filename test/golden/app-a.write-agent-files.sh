set -eu
umask 077
APP='app-a'
STEP='write-agent-files'
APP_USER='app-a'
fail() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*" >&2; exit 1; }
log() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*"; }
# Files belong to the app user. As root we chown; as the app user there is nothing to do.
set_owner() {
  if [ "$(id -u)" = 0 ]; then chown "$APP_USER:" "$1" || fail "cannot chown $1 to $APP_USER"
  elif [ "$(id -un)" != "$APP_USER" ]; then fail "running as $(id -un), need root or $APP_USER to own $1"
  fi
}
ensure_dir() { # path mode
  mkdir -p -- "$1" || fail "cannot create directory $1"
  chmod "$2" "$1" && set_owner "$1"
}
# Writes standard input to $1 with mode $2: temp file in the same directory, then
# rename, so readers see the old file or the new one and never a truncated one.
write_atomic() { # dest mode
  dir=$(dirname -- "$1")
  tmp=$(mktemp "$dir/.vault-rotation.XXXXXX") || fail "cannot create a temp file in $dir"
  if ! cat >"$tmp"; then rm -f -- "$tmp"; fail "cannot write $1"; fi
  if [ ! -s "$tmp" ]; then rm -f -- "$tmp"; fail "refusing to install an empty $1"; fi
  if ! { chmod "$2" "$tmp" && set_owner "$tmp" && mv -f -- "$tmp" "$1"; }; then rm -f -- "$tmp"; fail "cannot install $1"; fi
  log "wrote $1 ($2)"
}

AGENT_KEY='/home/app-a/vault/mtls/agent.key'
AGENT_CERT='/home/app-a/vault/mtls/agent.crt'
CA_PEM='/home/app-a/vault/ca/ca.pem'
AGENT_CERT_PEM='-----BEGIN CERTIFICATE-----
AGENT
-----END CERTIFICATE-----'
LISTENER_CA_PEM='-----BEGIN CERTIFICATE-----
LISTENER
-----END CERTIFICATE-----'
ensure_dir '/home/app-a/vault/mtls' 0700
ensure_dir '/home/app-a/vault/ca' 0755
# The key comes first and from standard input only.
write_atomic "$AGENT_KEY" 0600
printf '%s\n' "$AGENT_CERT_PEM" | write_atomic "$AGENT_CERT" 0644
printf '%s\n' "$LISTENER_CA_PEM" | write_atomic "$CA_PEM" 0644
