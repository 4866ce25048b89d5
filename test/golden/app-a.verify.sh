# vault-rotation: verify for app-a. Runs the step below as app-a from an empty environment.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
APP='app-a'
STEP='verify'
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
STEP='\''verify'\''
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
STATUS='\''/home/app-a/vault/hooks/reload-tls.status'\''
SERVICE='\''vault-agent-app-a'\''
VAULT_ADDRESS='\''https://vault.prod.internal:8200'\''
CA_PEM='\''/home/app-a/vault/ca/ca.pem'\''
AGENT_CERT='\''/home/app-a/vault/mtls/agent.crt'\''
AGENT_KEY='\''/home/app-a/vault/mtls/agent.key'\''
CERT_AUTH_PATH='\''cert'\''
MAPPING='\''agent-app-a'\''
EXPECTED_POLICIES='\''app-a-issue,app-a-marker,default'\''
LEAF_MIN_SECONDS=86400
AGENT_MIN_SECONDS=108000
TEXTFILE='\''/home/app-a/metrics/vault-rotation-app-a.prom'\''
METRICS_LOCK='\''/home/app-a/vault/.metrics.lock'\''
M_FULLCHAIN='\''/home/app-a/tls/app-a.fullchain.pem'\''
M_RENDERED='\''/home/app-a/vault/render/app-a.fullchain.pem'\''
M_AGENT_CERT='\''/home/app-a/vault/mtls/agent.crt'\''
M_RELOAD_STATUS='\''/home/app-a/vault/hooks/reload-tls.status'\''
M_RELOAD_OK='\''/home/app-a/vault/hooks/reload-tls.ok'\''
VERIFY_STATUS='\''/home/app-a/vault/verify.status'\''
for d in '\''/home/app-a/vault'\'' '\''/home/app-a/tls'\'' '\''/home/app-a/vault/hooks'\''; do is_own_dir "$d"; done
for f in "$FULLCHAIN" "$STATUS" "$VERIFY_STATUS" "$AGENT_CERT"; do regular_or_absent "$f"; done
command -v openssl >/dev/null 2>&1 || fail "no openssl on PATH: the verification reads the certificates on this host"
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
cert_not_after() { # file: its first certificate'\''s notAfter in Unix seconds; nothing when absent or unreadable
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  end=$(openssl x509 -in "$1" -noout -enddate 2>/dev/null) || return 0
  date -u -d "${end#notAfter=}" +%s 2>/dev/null || true
}
mtime_of() { # file: its mtime in Unix seconds; nothing when absent
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  stat -c %Y -- "$1" 2>/dev/null || true
}
status_field() { # file key: the value of key=<word> on the file'\''s first line
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  head -c 512 -- "$1" | head -n 1 | tr '\'' '\'' '\''\n'\'' | sed -n "s/^$2=\\([A-Za-z0-9]*\\)$/\\1/p" | head -n 1
}
metric() { # name labels value: one sample, only for a value that is a number
  case "$3" in '\'''\'' | *[!0-9]*) return 0 ;; esac
  printf '\''%s{%s} %s\n'\'' "$1" "$2" "$3"
}
help_type() { # name help
  printf '\''# HELP %s %s\n# TYPE %s gauge\n'\'' "$1" "$2" "$1"
}
metrics_text() {
  a="app=\"$APP\""
  reload_ok='\'''\''
  case "$(status_field "$M_RELOAD_STATUS" result)" in ok) reload_ok=1 ;; failed) reload_ok=0 ;; esac
  verify_ok='\'''\''
  case "$(status_field "$VERIFY_STATUS" result)" in ok) verify_ok=1 ;; failed | pending) verify_ok=0 ;; esac
  help_type vault_rotation_cert_not_after_timestamp_seconds "When a certificate on the host expires (Unix seconds): kind=leaf the served fullchain'\''s leaf, kind=agent the Vault Agent'\''s login certificate."
  metric vault_rotation_cert_not_after_timestamp_seconds "$a,kind=\"leaf\"" "$(cert_not_after "$M_FULLCHAIN")"
  metric vault_rotation_cert_not_after_timestamp_seconds "$a,kind=\"agent\"" "$(cert_not_after "$M_AGENT_CERT")"
  help_type vault_rotation_last_render_timestamp_seconds "When Vault Agent last rendered the fullchain."
  metric vault_rotation_last_render_timestamp_seconds "$a" "$(mtime_of "$M_RENDERED")"
  help_type vault_rotation_last_reload_success_timestamp_seconds "When the post-hook last installed the fullchain and reloaded every container with success."
  metric vault_rotation_last_reload_success_timestamp_seconds "$a" "$(mtime_of "$M_RELOAD_OK")"
  help_type vault_rotation_last_reload_ok "1 when the post-hook'\''s last run installed and reloaded everything, 0 when it failed."
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

# Any way out but the end (a failed item, a refused file) records a failed verification.
completed=0
record_failed() {
  [ "$completed" = 0 ] || return 0
  ok_at=$(status_field "$VERIFY_STATUS" ok_at)
  printf '\''result=failed at=%s ok_at=%s\n'\'' "$(date +%s)" "${ok_at:-0}" | write_atomic "$VERIFY_STATUS" 0644 || true
  write_metrics || say "could not write the metrics textfile $TEXTFILE"
}
trap record_failed EXIT
problems='\'''\''
problem() { problems="$problems$APP: $1
"; }
end_of() { printf '\''%s\n'\'' "$1" | openssl x509 -noout -enddate 2>/dev/null | sed '\''s/^notAfter=//'\''; }

fullchain=$(certs_only "$FULLCHAIN")
if [ -z "$fullchain" ]; then
  problem "fullchain present: expected a fullchain at $FULLCHAIN, found none"
elif ! printf '\''%s\n'\'' "$fullchain" | openssl x509 -noout -checkend "$LEAF_MIN_SECONDS" >/dev/null 2>&1; then
  problem "leaf remaining validity: expected at least ${LEAF_MIN_SECONDS}s, found notAfter $(end_of "$fullchain") (the agent renews the leaf; look at: journalctl --user -u $SERVICE)"
fi
agent_cert=$(certs_only "$AGENT_CERT")
if [ -z "$agent_cert" ]; then
  problem "agent cert present: expected the agent'\''s certificate at $AGENT_CERT, found none"
elif ! printf '\''%s\n'\'' "$agent_cert" | openssl x509 -noout -checkend "$AGENT_MIN_SECONDS" >/dev/null 2>&1; then
  problem "agent cert remaining validity: expected at least ${AGENT_MIN_SECONDS}s (until after the next run), found notAfter $(end_of "$agent_cert") (a run with refresh renews it: pulumi up --refresh)"
fi
report='\'''\''
if [ -f "$STATUS" ]; then report=$(head -c 512 -- "$STATUS" | head -n 1); fi
if ! printf '\''%s\n'\'' "$report" | grep -Eqx '\''result=(ok|failed) reloaded=[A-Za-z0-9_.,-]* failed=[A-Za-z0-9_.,: -]*'\''; then
  problem "post-hook reload: expected a report from the post-hook in $STATUS, found $(if [ -z "$report" ]; then echo none; else echo '\''something else'\''; fi)"
  report='\'''\''
else
  case "$report" in '\''result=ok '\''*) ;; *) problem "post-hook reload: expected result=ok from its last run, found $report" ;; esac
fi
state=$(service_state)
[ "$state" = active ] || problem "agent service: expected active, found $state (look at: journalctl --user -u $SERVICE)"
login=$(login_check)
case "$login" in
  "policies=$EXPECTED_POLICIES") ;;
  policies=*) problem "token policies: expected [$EXPECTED_POLICIES], found [${login#policies=}]" ;;
  *) problem "cert login: expected a token from auth/$CERT_AUTH_PATH/login with name $MAPPING (as $USER, with the agent files on this host), found ${login#error=}" ;;
esac
if [ -n "$problems" ]; then
  printf '\''%s'\'' "$problems" >&2
  fail "the verification failed (nothing was restarted or reloaded); fix the cause above, then re-run pulumi up: the host is read again"
fi

# -- public facts for the runner'\''s checks (stdout, kept in state)
echo '\''### fullchain'\''
printf '\''%s\n'\'' "$fullchain"
echo '\''### reload'\''
echo "$report"
echo '\''### service'\''
echo "$state"
echo '\''### login'\''
echo "$login"
echo '\''### agent-version'\''
agent_version
echo '\''### agent-cert'\''
printf '\''%s\n'\'' "$agent_cert"
# When the host was read: each reading is a new verification on the runner, even of unchanged facts.
echo '\''### read-at'\''
date +%s
echo '\''### end'\''
completed=1
# Pending until the record step says every item passed: a check that fails on the runner leaves it so.
ok_at=$(status_field "$VERIFY_STATUS" ok_at)
printf '\''result=pending at=%s ok_at=%s\n'\'' "$(date +%s)" "${ok_at:-0}" | write_atomic "$VERIFY_STATUS" 0644
write_metrics || fail "cannot write the metrics textfile $TEXTFILE (its directory must be a directory of $USER'\''s, not a link)"
say "every host item passed (nothing restarted or reloaded)"
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
fail "$why"
