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
TEXTFILE='/srv/jobs/metrics/vault-rotation-jobs.prom'
METRICS_LOCK='/srv/jobs/vault/.metrics.lock'
M_FULLCHAIN='/srv/jobs/tls/jobs.fullchain.pem'
M_RENDERED='/srv/jobs/vault/render/jobs.fullchain.pem'
M_AGENT_CERT='/srv/jobs/vault/mtls/agent.crt'
M_RELOAD_STATUS='/srv/jobs/vault/hooks/reload-tls.status'
M_RELOAD_OK='/srv/jobs/vault/hooks/reload-tls.ok'
VERIFY_STATUS='/srv/jobs/vault/verify.status'
log() { printf 'reload-tls: %s: %s\n' "$APP" "$*"; }
cert_not_after() { # file: its first certificate's notAfter in Unix seconds; nothing when absent or unreadable
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  end=$(openssl x509 -in "$1" -noout -enddate 2>/dev/null) || return 0
  date -u -d "${end#notAfter=}" +%s 2>/dev/null || true
}
mtime_of() { # file: its mtime in Unix seconds; nothing when absent
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  stat -c %Y -- "$1" 2>/dev/null || true
}
status_field() { # file key: the value of key=<word> on the file's first line
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  head -c 512 -- "$1" | head -n 1 | tr ' ' '\n' | sed -n "s/^$2=\\([A-Za-z0-9]*\\)$/\\1/p" | head -n 1
}
metric() { # name labels value: one sample, only for a value that is a number
  case "$3" in '' | *[!0-9]*) return 0 ;; esac
  printf '%s{%s} %s\n' "$1" "$2" "$3"
}
help_type() { # name help
  printf '# HELP %s %s\n# TYPE %s gauge\n' "$1" "$2" "$1"
}
metrics_text() {
  a="app=\"$APP\""
  reload_ok=''
  case "$(status_field "$M_RELOAD_STATUS" result)" in ok) reload_ok=1 ;; failed) reload_ok=0 ;; esac
  verify_ok=''
  case "$(status_field "$VERIFY_STATUS" result)" in ok) verify_ok=1 ;; failed | pending) verify_ok=0 ;; esac
  help_type vault_rotation_cert_not_after_timestamp_seconds "When a certificate on the host expires (Unix seconds): kind=leaf the served fullchain's leaf, kind=agent the Vault Agent's login certificate."
  metric vault_rotation_cert_not_after_timestamp_seconds "$a,kind=\"leaf\"" "$(cert_not_after "$M_FULLCHAIN")"
  metric vault_rotation_cert_not_after_timestamp_seconds "$a,kind=\"agent\"" "$(cert_not_after "$M_AGENT_CERT")"
  help_type vault_rotation_last_render_timestamp_seconds "When Vault Agent last rendered the fullchain."
  metric vault_rotation_last_render_timestamp_seconds "$a" "$(mtime_of "$M_RENDERED")"
  help_type vault_rotation_last_reload_success_timestamp_seconds "When the post-hook last installed the fullchain and reloaded every container with success."
  metric vault_rotation_last_reload_success_timestamp_seconds "$a" "$(mtime_of "$M_RELOAD_OK")"
  help_type vault_rotation_last_reload_ok "1 when the post-hook's last run installed and reloaded everything, 0 when it failed."
  metric vault_rotation_last_reload_ok "$a" "$reload_ok"
  help_type vault_rotation_last_verification_timestamp_seconds "When the last verification (pulumi up) of this app ran, passed or failed."
  metric vault_rotation_last_verification_timestamp_seconds "$a" "$(status_field "$VERIFY_STATUS" at)"
  help_type vault_rotation_last_verification_success_timestamp_seconds "When a verification of every item (host, Vault, served certificate) last passed."
  metric vault_rotation_last_verification_success_timestamp_seconds "$a" "$(status_field "$VERIFY_STATUS" ok_at)"
  help_type vault_rotation_last_verification_ok "1 when the last verification passed every item, 0 when it failed (on the host or on the runner)."
  metric vault_rotation_last_verification_ok "$a" "$verify_ok"
  help_type vault_rotation_textfile_written_timestamp_seconds "When this file was last written."
  metric vault_rotation_textfile_written_timestamp_seconds "$a" "$(date +%s)"
}
write_metrics() {
  mdir=${TEXTFILE%/*}
  if [ -L "$mdir" ] || { [ -e "$mdir" ] && [ ! -d "$mdir" ]; }; then return 1; fi
  if [ ! -d "$mdir" ]; then mkdir -m 0755 -- "$mdir" 2>/dev/null || return 1; fi
  [ -O "$mdir" ] || return 1
  chmod 0755 -- "$mdir" 2>/dev/null || return 1
  if [ -L "$TEXTFILE" ] || { [ -e "$TEXTFILE" ] && [ ! -f "$TEXTFILE" ]; }; then return 1; fi
  (
    if command -v flock >/dev/null 2>&1; then flock -w 10 9 || exit 1; fi
    mtmp=$(mktemp "$mdir/.vault-rotation-metrics.XXXXXX") || exit 1
    if metrics_text >"$mtmp" && chmod 0644 -- "$mtmp" && mv -f -T -- "$mtmp" "$TEXTFILE"; then exit 0; fi
    rm -f -- "$mtmp"
    exit 1
  ) 9>>"$METRICS_LOCK"
}
# Every way out rewrites the metrics textfile (expiry, last render and reload as the files say).
finish() { # exit status
  write_metrics || log "could not write the metrics textfile $TEXTFILE"
  exit "$1"
}
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
  finish 1
fi
log "installed $FULLCHAIN"
if ! names=$(podman ps --filter "label=$RELOAD_TLS_LABEL" --format '{{.Names}}'); then
  log "FAILED to list containers labelled $RELOAD_TLS_LABEL"
  failed_names="podman ps,"
  report failed
  finish 1
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
if [ "$failed" -eq 0 ]; then
  report ok
  # Its mtime is the last good reload (the report above says only how the last run went).
  : >"$M_RELOAD_OK" || log "cannot touch $M_RELOAD_OK"
else
  report failed
fi
finish "$failed"
