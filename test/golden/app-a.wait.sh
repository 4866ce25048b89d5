set -eu
umask 077
APP='app-a'
STEP='wait-fullchain'
APP_USER='app-a'
fail() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*" >&2; exit 1; }
log() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*"; }

FULLCHAIN='/home/app-a/tls/app-a.fullchain.pem'
PREVIOUS='/home/app-a/tls/app-a.fullchain.pem.prev'
SERVICE='vault-agent-app-a'
WAIT_SECONDS=120
waited=0
while [ "$waited" -lt "$WAIT_SECONDS" ]; do
  if [ -s "$FULLCHAIN" ] && grep -q -- '-----BEGIN CERTIFICATE-----' "$FULLCHAIN"; then
    log "new fullchain rendered after ${waited}s"
    exit 0
  fi
  sleep 1
  waited=$((waited + 1))
done
if [ -f "$PREVIOUS" ] && [ ! -s "$FULLCHAIN" ]; then
  mv -f -- "$PREVIOUS" "$FULLCHAIN" && log "restored the previous fullchain to $FULLCHAIN"
fi
fail "no new fullchain at $FULLCHAIN after ${WAIT_SECONDS}s; look at: journalctl --user -u $SERVICE (as $APP_USER), then re-run pulumi up"
