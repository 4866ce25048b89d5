set -eu
umask 077
APP='app-a'
STEP='restart-agent'
APP_USER='app-a'
fail() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*" >&2; exit 1; }
log() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*"; }
as_app_user() {
  uid=$(id -u "$APP_USER") || fail "no such user $APP_USER"
  set -- env XDG_RUNTIME_DIR="/run/user/$uid" DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" "$@"
  if [ "$(id -un)" = "$APP_USER" ]; then
    "$@"
  elif [ "$(id -u)" = 0 ]; then
    runuser -u "$APP_USER" -- "$@"
  else
    sudo -n -u "$APP_USER" -- "$@"
  fi
}
SERVICE='vault-agent-app-a'
as_app_user systemctl --user restart "$SERVICE" || fail "systemctl --user restart $SERVICE failed; look at: journalctl --user -u $SERVICE (as $APP_USER)"
log "restarted $SERVICE"
