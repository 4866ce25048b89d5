# vault-rotation: rotate for app-a. Runs the step below as app-a from an empty environment.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
APP='app-a'
STEP='rotate'
APP_USER='app-a'
APP_HOME='/home/app-a'
HOST_PATH='/usr/local/bin:/usr/bin:/bin'
fail() { printf 'vault-rotation: %s: %s: %s\n' "$APP" "$STEP" "$*" >&2; exit 1; }
command -v setsid >/dev/null 2>&1 || fail "setsid (util-linux) is missing on $(uname -n): the step must run without a terminal"
uid=$(id -u -- "$APP_USER" 2>/dev/null) || fail "no user $APP_USER on $(uname -n)"
[ "$uid" != 0 ] || fail "refusing to run as $APP_USER: it has uid 0"
me=$(id -u)
if [ "$me" = "$uid" ]; then
  switch=''
elif [ "$me" = 0 ]; then
  switch=setpriv
else
  fail "running as $(id -un): a host step runs as root (local host) or as $APP_USER itself (ssh host)"
fi
# Every directory of the body's PATH, and each ancestor, must be owned by root
# (or by the app user itself, who can only hurt itself) and writable by no one
# else: else another app's user could put a program of its own on this PATH.
# An ancestor may be sticky and world-writable (/tmp): no one else can then
# rename or remove the root-owned directory below it.
safe_path_dir() { # physical dir
  d=$1 below=''
  while :; do
    info=$(stat -c '%u %a' -- "$d" 2>/dev/null) || fail "refusing host PATH entry $entry: cannot inspect $d"
    owner=${info% *} mode=${info#* }
    [ "$owner" = 0 ] || [ "$owner" = "$uid" ] || fail "refusing host PATH entry $entry: $d is owned by uid $owner, not root"
    if [ $((0$mode & 022)) != 0 ]; then
      { [ -n "$below" ] && [ $((0$mode & 01000)) != 0 ]; } || fail "refusing host PATH entry $entry: $d is writable by group or others (mode $mode)"
    fi
    [ "$d" = / ] && return 0
    below=$d
    d=$(dirname -- "$d")
  done
}
rest=$HOST_PATH:
while [ -n "$rest" ]; do
  entry=${rest%%:*} rest=${rest#*:}
  case "$entry" in /*) ;; *) fail "refusing host PATH entry '$entry': not an absolute path" ;; esac
  # An entry that does not exist (yet) is judged by its nearest existing ancestor: who could create it.
  probe=$entry
  while [ ! -e "$probe" ]; do
    # A dangling link: whoever may create its target decides what runs; refuse it.
    [ ! -L "$probe" ] || fail "refusing host PATH entry $entry: $probe is a symbolic link to nothing"
    probe=$(dirname -- "$probe")
  done
  real=$(cd -P -- "$probe" 2>/dev/null && pwd -P) || fail "refusing host PATH entry $entry: cannot resolve it"
  safe_path_dir "$real"
done
# The body is data for `sh -c` below, so nothing in it expands here.
# shellcheck disable=SC2016
BODY='set -eu
umask 077
APP='\''app-a'\''
STEP='\''rotate'\''
say() { printf '\''vault-rotation: %s: %s: %s\n'\'' "$APP" "$STEP" "$*" >&2; }
fail() { say "$*"; exit 1; }
# The launcher started this in a session of its own: a terminal here would be the operator'\''s.
if (: </dev/tty) 2>/dev/null; then fail "refusing to run with a controlling terminal"; fi
{ [ -d "$HOME" ] && [ -O "$HOME" ]; } || fail "home $HOME must be an existing directory owned by $USER"
cd -- "$HOME"
own_dir() { # path mode: create when missing; refuse a link, a non-directory, another owner
  if [ -L "$1" ]; then fail "refusing $1: it is a symbolic link"; fi
  if [ ! -e "$1" ]; then mkdir -m "$2" -- "$1" || fail "cannot create directory $1"; fi
  [ -d "$1" ] || fail "refusing $1: it is not a directory"
  [ -O "$1" ] || fail "refusing $1: it is not owned by $USER"
  chmod "$2" -- "$1" || fail "cannot set mode $2 on $1"
}
is_own_dir() { # path: an existing directory of ours that is not a link
  { [ ! -L "$1" ] && [ -d "$1" ] && [ -O "$1" ]; } || fail "refusing $1: it must be a directory owned by $USER, not a link"
}
regular_or_absent() { # path
  if [ -L "$1" ]; then fail "refusing $1: it is a symbolic link"; fi
  if [ -e "$1" ] && [ ! -f "$1" ]; then fail "refusing $1: it is not a regular file"; fi
}
# Writes standard input to a new temp file beside $1, with mode $2, and prints
# its name: what a rename then installs as $1.
stage_file() { # dest mode
  if [ -d "$1" ] && [ ! -L "$1" ]; then fail "refusing $1: it is a directory"; fi
  tmp=$(mktemp "$(dirname -- "$1")/.vault-rotation.XXXXXX") || fail "cannot create a temp file beside $1"
  if ! cat >"$tmp"; then rm -f -- "$tmp"; fail "cannot write $1"; fi
  if [ ! -s "$tmp" ]; then rm -f -- "$tmp"; fail "refusing to install an empty $1"; fi
  if ! chmod "$2" -- "$tmp"; then rm -f -- "$tmp"; fail "cannot install $1"; fi
  printf '\''%s\n'\'' "$tmp"
}
# Writes standard input to $1 with mode $2: temp file in the same directory,
# then rename, so readers see the old file or the new one, never a partial one.
write_atomic() { # dest mode
  staged=$(stage_file "$1" "$2") || exit 1
  if ! mv -f -T -- "$staged" "$1"; then rm -f -- "$staged"; fail "cannot install $1"; fi
}

FULLCHAIN='\''/home/app-a/tls/app-a.fullchain.pem'\''
PREVIOUS='\''/home/app-a/tls/app-a.fullchain.pem.prev'\''
RENDERED='\''/home/app-a/vault/render/app-a.fullchain.pem'\''
RENDERED_PREV='\''/home/app-a/vault/render/app-a.fullchain.pem.prev'\''
MARK='\''/home/app-a/vault/render/.rotation-started'\''
ARMED='\''/home/app-a/vault/render/.rotation-armed'\''
STATUS='\''/home/app-a/vault/hooks/reload-tls.status'\''
HOOK='\''/home/app-a/vault/hooks/reload-tls.sh'\''
SERVICE='\''vault-agent-app-a'\''
WAIT_SECONDS=120
VAULT_ADDRESS='\''https://vault.prod.internal:8200'\''
CA_PEM='\''/home/app-a/vault/ca/ca.pem'\''
AGENT_CERT='\''/home/app-a/vault/mtls/agent.crt'\''
AGENT_KEY='\''/home/app-a/vault/mtls/agent.key'\''
CERT_AUTH_PATH='\''cert'\''
MAPPING='\''agent-app-a'\''
for d in '\''/home/app-a/vault'\'' '\''/home/app-a/tls'\'' '\''/home/app-a/vault/render'\'' '\''/home/app-a/vault/hooks'\''; do is_own_dir "$d"; done
for f in "$FULLCHAIN" "$PREVIOUS" "$RENDERED" "$RENDERED_PREV" "$MARK" "$ARMED" "$STATUS"; do regular_or_absent "$f"; done
looked_at="look at: journalctl --user -u $SERVICE (as $USER)"

# -- the unit: put everything back on any failure or signal until it completed
armed=0
# Stop first: a hook still running from this attempt must not install after the files are back.
# When the hook had already installed and reloaded in this attempt, the containers and the
# edge serve the new leaf from memory: the hook runs once more, on the file put back.
restore() {
  [ "$armed" = 1 ] || return 0
  armed=0
  # Nothing cuts a restore short: a second signal waits for the time limit'\''s SIGKILL.
  trap '\'''\'' HUP INT TERM
  systemctl --user stop "$SERVICE" >/dev/null 2>&1 || true
  # The hook may have installed and reloaded (even without reporting, when it hung on a later reload).
  reloaded=0
  if { [ -f "$STATUS" ] && [ -n "$(find "$STATUS" -prune -newer "$MARK")" ]; } ||
    { [ -f "$FULLCHAIN" ] && [ -n "$(find "$FULLCHAIN" -prune -newer "$MARK")" ]; }; then reloaded=1; fi
  put_back=0
  if [ -f "$PREVIOUS" ] && mv -f -T -- "$PREVIOUS" "$FULLCHAIN"; then say "restored the previous fullchain to $FULLCHAIN"; put_back=1; fi
  if [ -f "$RENDERED_PREV" ]; then mv -f -T -- "$RENDERED_PREV" "$RENDERED" || { say "could not put back $RENDERED"; put_back=0; }; else put_back=0; fi
  if [ "$reloaded" = 1 ] && [ "$put_back" = 1 ]; then
    if "$HOOK" >/dev/null 2>&1; then say "reloaded again on the previous certificate (the post-hook had reloaded the new one)"; else say "could not reload on the previous certificate: run $HOOK as $USER"; fi
  fi
  if systemctl --user start "$SERVICE" >/dev/null 2>&1; then say "restarted $SERVICE on the previous certificate"; else say "could not start $SERVICE on the previous certificate; $looked_at"; fi
  rm -f -- "$ARMED"
}
trap restore EXIT
# A signal ends the unit through its EXIT trap (restore() ignores them while it runs).
exit_on_signals() { trap '\''exit 129'\'' HUP; trap '\''exit 130'\'' INT; trap '\''exit 143'\'' TERM; }
exit_on_signals

# A unit that died before it could put things back (killed by the time limit, or its launcher
# gone) left ARMED: put back first. In restore mode that is all; else the rotation follows.
if [ -f "$ARMED" ]; then
  armed=1
  restore
  exit_on_signals
fi
if [ "${1:-}" = restore ]; then exit 1; fi

rm -f -- "$PREVIOUS" "$RENDERED_PREV"
: >"$MARK"
if [ -f "$FULLCHAIN" ]; then write_atomic "$PREVIOUS" 0600 <"$FULLCHAIN"; fi
: >"$ARMED"
armed=1
if [ -f "$RENDERED" ]; then mv -f -T -- "$RENDERED" "$RENDERED_PREV" || fail "cannot move $RENDERED aside"; fi
systemctl --user restart "$SERVICE" || fail "systemctl --user restart $SERVICE failed; $looked_at"

newer_than_mark() { [ -f "$1" ] && [ -n "$(find "$1" -prune -newer "$MARK")" ]; }
# The hook writes its report after installing: a report older than the served file is an earlier run'\''s.
reported() { [ -f "$STATUS" ] && [ -z "$(find "$FULLCHAIN" -prune -newer "$STATUS")" ]; }
started=$(date +%s)
deadline=$((started + WAIT_SECONDS))
until newer_than_mark "$RENDERED" && newer_than_mark "$FULLCHAIN" && reported; do
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.2
done
newer_than_mark "$RENDERED" || fail "no new fullchain rendered at $RENDERED within ${WAIT_SECONDS}s; $looked_at, then re-run pulumi up"
{ newer_than_mark "$FULLCHAIN" && reported; } || fail "the agent rendered a new fullchain but the post-hook did not install it at $FULLCHAIN and report within ${WAIT_SECONDS}s; $looked_at"

# The hook'\''s one-line report, passed on only in its expected form.
status_line() {
  regular_or_absent "$STATUS"
  line=$(head -c 512 -- "$STATUS" | head -n 1)
  printf '\''%s\n'\'' "$line" | grep -Eqx '\''result=(ok|failed) reloaded=[A-Za-z0-9_.,-]* failed=[A-Za-z0-9_.,: -]*'\'' ||
    fail "$STATUS does not hold a post-hook report; refusing to pass it on"
  printf '\''%s\n'\'' "$line"
}
report=$(status_line)
case "$report" in
  '\''result=ok '\''*) ;;
  *) fail "the post-hook reported a failed reload ($report); $looked_at" ;;
esac
armed=0
rm -f -- "$ARMED"
took=$(($(date +%s) - started))

# -- public facts for the rotation check (stdout, kept in state)
certs_only() { # file: its CERTIFICATE blocks and nothing else (the fullchain also holds the key)
  regular_or_absent "$1"
  [ -f "$1" ] || return 0
  blocks=$(awk '\''
    /^-----BEGIN CERTIFICATE-----$/ { if (p) exit 3; p = 1; print; next }
    /^-----END CERTIFICATE-----$/ { if (!p) exit 3; p = 0; print; next }
    p { if (length($0) > 76 || $0 !~ /^[A-Za-z0-9+\/=]+$/) exit 3; print }
    END { if (p) exit 3 }
  '\'' "$1") || fail "$1 holds a malformed certificate block; refusing to pass it on"
  [ -n "$blocks" ] || return 0
  # Each block must parse as a certificate: base64 of anything else (the key'\''s DER
  # under a CERTIFICATE header) would otherwise reach state.
  certdir=$(mktemp -d) || fail "cannot create a temp directory"
  printf '\''%s\n'\'' "$blocks" | awk -v d="$certdir" '\''/^-----BEGIN CERTIFICATE-----$/ { n++ } { print > (d "/" sprintf("%05d", n) ".pem") }'\''
  # What goes out is openssl'\''s own encoding of each certificate it parsed: bytes after a
  # certificate'\''s DER inside its block (which openssl x509 ignores) are left behind.
  out='\'''\''
  for block in "$certdir"/*.pem; do
    if ! cert=$(openssl x509 -in "$block" 2>/dev/null); then
      rm -rf -- "$certdir"
      fail "$1 holds a CERTIFICATE block that is not a certificate; refusing to pass it on"
    fi
    out="$out$cert
"
  done
  rm -rf -- "$certdir"
  printf '\''%s'\'' "$out"
}
# A cert login with the files just written, the way the agent logs in. The
# CLI keeps the token in .vault-token of a private temp HOME: never on a
# command line, in an environment or on stdout; it is revoked right after.
login_check() {
  command -v vault >/dev/null 2>&1 || { echo "error=no vault binary on PATH"; return 0; }
  # Each call bounded, so the facts phase cannot outlast the step'\''s time limit.
  VAULT_CLIENT_TIMEOUT=20s
  export VAULT_CLIENT_TIMEOUT
  vhome=$(mktemp -d) || { echo "error=cannot create a temp directory"; return 0; }
  if out=$(HOME=$vhome VAULT_ADDR=$VAULT_ADDRESS VAULT_CACERT=$CA_PEM vault login -method=cert -path="$CERT_AUTH_PATH" \
      -client-cert="$AGENT_CERT" -client-key="$AGENT_KEY" name="$MAPPING" 2>&1 >/dev/null); then
    policies=$(HOME=$vhome VAULT_ADDR=$VAULT_ADDRESS VAULT_CACERT=$CA_PEM vault read -field=policies auth/token/lookup-self 2>/dev/null |
      tr -d '\''[]'\'' | tr '\'' '\'' '\''\n'\'' | grep -v '\''^$'\'' | sort | paste -sd, -) || policies='\'''\''
    HOME=$vhome VAULT_ADDR=$VAULT_ADDRESS VAULT_CACERT=$CA_PEM vault token revoke -self >/dev/null 2>&1 || true
    case "$policies" in
      '\'''\'' | *[!A-Za-z0-9_.,-]*) echo "error=cannot read the policies of the login token" ;;
      *) echo "policies=$policies" ;;
    esac
  else
    echo "error=$(printf '\''%s'\'' "$out" | tr -c '\''[:print:]'\'' '\'' '\'' | tr -s '\'' '\'' | cut -c1-300)"
  fi
  rm -rf -- "$vhome"
}
service_state() {
  state=$(systemctl --user is-active "$SERVICE" 2>/dev/null) || true
  case "$state" in '\'''\'' | *[!a-z-]*) state=unknown ;; esac
  echo "$state"
}
agent_version() {
  version=$(vault version 2>/dev/null | head -n 1 | cut -c1-200) || version='\'''\''
  if printf '\''%s\n'\'' "$version" | grep -Eqx '\''Vault v[0-9][0-9A-Za-z.+-]*([ ,][ -~]*)?'\''; then echo "$version"; fi
}
echo '\''### fullchain'\''
certs_only "$FULLCHAIN"
echo '\''### previous'\''
certs_only "$PREVIOUS"
echo '\''### reload'\''
echo "$report"
echo '\''### service'\''
service_state
echo '\''### login'\''
login_check
echo '\''### agent-version'\''
agent_version
echo '\''### end'\''
say "restarted $SERVICE; new fullchain rendered, installed and reloaded in ${took}s"
'
set -- env -i PATH="$HOST_PATH" HOME="$APP_HOME" USER="$APP_USER" LOGNAME="$APP_USER" LANG=C \
  XDG_RUNTIME_DIR="/run/user/$uid" DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" \
  /bin/sh -c "$BODY" "vault-rotation:$APP:$STEP"
# setpriv replaces itself with the body as the app user: no process of root's stays between the
# time limit and the body (runuser would, and would SIGKILL the body 2s after passing on a SIGTERM,
# cutting the rotate unit's restore short).
gid=$(id -g -- "$APP_USER") || fail "no group for $APP_USER on $(uname -n)"
if [ -n "$switch" ]; then set -- setpriv --reuid="$uid" --regid="$gid" --init-groups -- "$@"; fi
# setsid -w: a new session (no controlling terminal), and the body's exit status is the step's.
# timeout: the step's time limit, in the launcher's hands (root's on local hosts: the app
# user cannot stop or signal it): SIGTERM, which the rotate unit answers by putting
# everything back, then SIGKILL 10s later for a body that is stopped or ignores it.
rc=0
started=$(date +%s)
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid -w timeout -s TERM -k 10 300 "$@" </dev/null || rc=$?
# 124: timed out (SIGTERM); 137 after the limit: timed out and killed; another 128+N: killed by signal N.
if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ $(($(date +%s) - started)) -ge 300 ]; }; then
  why="the step did not finish within 300s (rotation.stepTimeoutSeconds); it was stopped"
elif [ "$rc" -gt 128 ]; then
  why="the step's body was killed by signal $((rc - 128))"
else
  exit "$rc"
fi
# If the body died before it could put things back (a stopped body gets SIGKILL), the same
# body does it now, bounded in turn ("restore" mode: only what a live unit would have undone).
set -- "$@" restore
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid -w timeout -s TERM -k 10 60 "$@" </dev/null || true
why="$why (what was put back is said above)"
fail "$why"
