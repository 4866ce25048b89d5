# vault-rotation: write-agent-files for app-a. Runs the step below as app-a from an empty environment.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
APP='app-a'
STEP='write-agent-files'
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
STEP='\''write-agent-files'\''
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

AGENT_CERT_PEM='\''-----BEGIN CERTIFICATE-----
AGENT
-----END CERTIFICATE-----'\''
LISTENER_CA_PEM='\''-----BEGIN CERTIFICATE-----
LISTENER
-----END CERTIFICATE-----'\''
KEY='\''/home/app-a/vault/mtls/agent.key'\''
NEXT_KEY='\''/home/app-a/vault/mtls/agent.key.next'\''
CERT='\''/home/app-a/vault/mtls/agent.crt'\''
CA_PEM='\''/home/app-a/vault/ca/ca.pem'\''
ca_staged='\'''\''
command -v openssl >/dev/null 2>&1 || fail "no openssl on PATH: it matches the agent key to its certificate"
own_dir '\''/home/app-a/vault'\'' 0750
own_dir '\''/home/app-a/vault/mtls'\'' 0700
own_dir '\''/home/app-a/vault/ca'\'' 0755
regular_or_absent "$KEY"
regular_or_absent "$NEXT_KEY"
cert_public=$(printf '\''%s\n'\'' "$AGENT_CERT_PEM" | openssl x509 -noout -pubkey 2>/dev/null) || fail "the signed agent certificate does not parse"
key_public() { [ -f "$1" ] && openssl pkey -in "$1" -pubout 2>/dev/null; }
if [ "$(key_public "$NEXT_KEY")" = "$cert_public" ]; then
  new_key=1
  installed="agent.key (new, 0600)"
elif [ "$(key_public "$KEY")" = "$cert_public" ]; then
  new_key=0
  installed="agent.key (kept: it matches the certificate)"
else
  fail "neither $NEXT_KEY nor $KEY holds the key this certificate was signed for (was the home restored or the key removed?); nothing was changed; set a new rotation epoch to generate a new key"
fi
# The serial of the certificate this replaces (on the first run, the one the
# runbook issued), printed for the revocation after the checks. The file is the
# app user'\''s: the program revokes the serial only if Vault issued it for this
# agent'\''s name (RotationCheck), so a planted file can name nothing else.
replaced='\'''\''
if [ -f "$CERT" ]; then replaced=$(openssl x509 -in "$CERT" -noout -serial 2>/dev/null | sed -n '\''s/^serial=\([0-9A-Fa-f]*\)$/\1/p'\'') || replaced='\'''\''; fi
# Cert and CA are written first, so the renames that install key, cert and CA
# follow each other with nothing in between that could fail on a full disk.
cert_staged=$(printf '\''%s\n'\'' "$AGENT_CERT_PEM" | stage_file "$CERT" 0644) || exit 1
trap '\''rm -f -- "$cert_staged" "$ca_staged"'\'' EXIT
ca_staged=$(printf '\''%s\n'\'' "$LISTENER_CA_PEM" | stage_file "$CA_PEM" 0644) || exit 1
if [ "$new_key" = 1 ] && ! { chmod 0600 -- "$NEXT_KEY" && mv -f -T -- "$NEXT_KEY" "$KEY"; }; then fail "cannot install $NEXT_KEY as $KEY"; fi
mv -f -T -- "$cert_staged" "$CERT" || fail "cannot install $CERT"
mv -f -T -- "$ca_staged" "$CA_PEM" || fail "cannot install $CA_PEM"
say "installed $installed, agent.crt, ca.pem"
printf '\''replaced_agent_cert_serial=%s
'\'' "$replaced"
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
