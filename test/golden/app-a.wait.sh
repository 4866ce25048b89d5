set -eu
umask 077
APP='app-a'
STEP='wait-fullchain'
APP_USER='app-a'
fail() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*" >&2; exit 1; }
log() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*"; }

FULLCHAIN='/home/app-a/tls/app-a.fullchain.pem'
PREVIOUS='/home/app-a/tls/app-a.fullchain.pem.prev'
STATUS='/home/app-a/vault/hooks/reload-tls.status'
SERVICE='vault-agent-app-a'
WAIT_SECONDS=120
rendered() { [ -s "$FULLCHAIN" ] && grep -q -- '-----BEGIN CERTIFICATE-----' "$FULLCHAIN"; }
reported() { [ -f "$STATUS" ] && [ -f "$FULLCHAIN" ] && [ -z "$(find "$FULLCHAIN" -prune -newer "$STATUS")" ]; }
waited=0
while [ "$waited" -lt "$WAIT_SECONDS" ]; do
  if rendered && reported; then
    log "new fullchain rendered and post-hook reported after ${waited}s"
    exit 0
  fi
  sleep 1
  waited=$((waited + 1))
done
if rendered; then
  fail "the new fullchain is in place but the post-hook did not report within ${WAIT_SECONDS}s; look at: journalctl --user -u $SERVICE (as $APP_USER)"
fi
if [ -f "$PREVIOUS" ] && [ ! -s "$FULLCHAIN" ]; then
  mv -f -- "$PREVIOUS" "$FULLCHAIN" && log "restored the previous fullchain to $FULLCHAIN"
fi
fail "no new fullchain at $FULLCHAIN after ${WAIT_SECONDS}s; look at: journalctl --user -u $SERVICE (as $APP_USER), then re-run pulumi up"
