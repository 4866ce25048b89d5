#!/bin/sh
# Managed by vault-rotation: runs after Vault Agent renders the jobs fullchain.
set -u
umask 077
APP='jobs'
RENDERED='/srv/jobs/vault/render/jobs.fullchain.pem'
FULLCHAIN='/srv/jobs/tls/jobs.fullchain.pem'
RELOAD_TLS_LABEL='tls=true'
PROXY_RELOAD='podman:edge'
RELOAD_SIGNAL='SIGHUP'
STATUS_FILE='/srv/jobs/vault/hooks/reload-tls.status'
log() { printf 'reload-tls: %s: %s\n' "$APP" "$*"; }
failed=0
reloaded=' '
failed_names=''
reload() { # container name
  if podman kill --signal "$RELOAD_SIGNAL" "$1" >/dev/null; then
    log "reloaded $1 ($RELOAD_SIGNAL)"
    reloaded="$reloaded$1 "
  else
    log "FAILED to reload $1"
    failed=1
    failed_names="$failed_names$1,"
  fi
}
# One line, replaced atomically: result, what was reloaded, what failed.
report() { # result
  tmp=$(mktemp "$STATUS_FILE.XXXXXX") || { log "cannot write $STATUS_FILE"; return; }
  list=$(printf '%s' "$reloaded" | sed 's/^ *//; s/ *$//; s/  */,/g')
  printf 'result=%s reloaded=%s failed=%s\n' "$1" "$list" "${failed_names%,}" >"$tmp" && mv -f -T -- "$tmp" "$STATUS_FILE"
}
install_fullchain() {
  if [ -d "$FULLCHAIN" ] && [ ! -L "$FULLCHAIN" ]; then log "$FULLCHAIN is a directory"; return 1; fi
  tmp=$(mktemp "${FULLCHAIN%/*}/.vault-rotation.XXXXXX") || return 1
  if cat -- "$RENDERED" >"$tmp" && [ -s "$tmp" ] && chmod 0600 -- "$tmp" && mv -f -T -- "$tmp" "$FULLCHAIN"; then return 0; fi
  rm -f -- "$tmp"
  return 1
}
if ! install_fullchain; then
  log "FAILED to install $FULLCHAIN"
  failed_names="install,"
  report failed
  exit 1
fi
log "installed $FULLCHAIN"
if ! names=$(podman ps --filter "label=$RELOAD_TLS_LABEL" --format '{{.Names}}'); then
  log "FAILED to list containers labelled $RELOAD_TLS_LABEL"
  failed_names="podman ps,"
  report failed
  exit 1
fi
if [ -z "$names" ]; then
  log "no running container labelled $RELOAD_TLS_LABEL"
fi
for name in $names; do
  reload "$name"
done
case "$PROXY_RELOAD" in
  podman:*)
    proxy=${PROXY_RELOAD#podman:}
    case "$reloaded" in
      *" $proxy "*) log "edge proxy $proxy already reloaded" ;;
      *) reload "$proxy" ;;
    esac
    ;;
  '') ;;
  *) log "unsupported PROXY_RELOAD=$PROXY_RELOAD"; failed=1; failed_names="$failed_names$PROXY_RELOAD," ;;
esac
if [ "$failed" -eq 0 ]; then report ok; else report failed; fi
exit "$failed"
