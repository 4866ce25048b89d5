// Host scripts, as pure functions.
//
// Privilege model (README, "Threat model"): every host step is a small
// *launcher* that runs as root (local hosts) or as the SSH login user, and does
// nothing but switch to the app user and start the step's *body* from an empty
// environment. The body is the only code that reads, writes, moves or lists
// anything under the app's home, so a link or file the app user planted can
// only ever reach what that user could reach already. Nothing of the Pulumi
// process's environment (VAULT_TOKEN, PULUMI_*, the Deployment's OIDC token)
// crosses to the app user. Nothing secret is ever in a script's text, on its
// standard input or on its standard output: the agent key is generated on the
// host (agent-keygen) and only its certificate request leaves it.
import { hostPaths } from "../../lib/naming";
import { shQuote } from "./quote";

/** The PATH of host steps when the stack does not set one (every directory must be writable by root only). */
export const DEFAULT_HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** A host step's time limit when the stack does not set one (rotation.stepTimeoutSeconds). */
export const DEFAULT_STEP_TIMEOUT_SECONDS = 300;

/** How long a body that ignores the time limit's SIGTERM (or is stopped) gets before SIGKILL. */
export const STEP_KILL_GRACE_SECONDS = 10;

/** Whose step it is: the app, its Unix user and home, and the PATH its body runs with. */
export interface HostUser {
    app: string;
    user: string;
    home: string;
    /** PATH for the body (the app user's commands: systemctl, vault, podman, coreutils). */
    hostPath: string;
    /** The step's time limit (default DEFAULT_STEP_TIMEOUT_SECONDS), enforced by the launcher. */
    timeoutSeconds?: number;
}

/**
 * Runs `body` as the app user from an explicit minimal environment, in a new
 * session without a controlling terminal and with standard input from
 * /dev/null. The launcher's own commands (id, setpriv, env, setsid, timeout, stat) come
 * from a fixed system PATH, so a configured PATH entry can never put a program
 * in front of root; and every directory of the body's PATH (and each of its
 * ancestors) must be root's (or the app user's own) and writable by no one else,
 * or the step fails before switching user, naming the first that is not. The
 * body runs under the step's time limit (timeout(1), outside the app user's reach
 * on local hosts).
 *
 * Why a new session: switching user starts none, nor do the command provider
 * or the engine's plugin launcher, so a body started from an operator's
 * terminal would otherwise hold that terminal as its controlling tty, and a
 * process of the app user could push input into root's shell (TIOCSTI).
 */
export function renderLauncher(u: HostUser, step: string, body: string, opts: { restore?: boolean } = {}): string {
    const limit = u.timeoutSeconds ?? DEFAULT_STEP_TIMEOUT_SECONDS;
    return `# vault-rotation: ${step} for ${u.app}. Runs the step below as ${u.user} from an empty environment.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
APP=${shQuote(u.app)}
STEP=${shQuote(step)}
APP_USER=${shQuote(u.user)}
APP_HOME=${shQuote(u.home)}
HOST_PATH=${shQuote(u.hostPath)}
fail() { printf 'vault-rotation: %s: %s: %s\\n' "$APP" "$STEP" "$*" >&2; exit 1; }
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
    owner=\${info% *} mode=\${info#* }
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
  entry=\${rest%%:*} rest=\${rest#*:}
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
# The body is data for \`sh -c\` below, so nothing in it expands here.
# shellcheck disable=SC2016
BODY=${shQuote(body)}
set -- env -i PATH="$HOST_PATH" HOME="$APP_HOME" USER="$APP_USER" LOGNAME="$APP_USER" LANG=C \\
  XDG_RUNTIME_DIR="/run/user/$uid" DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" \\
  /bin/sh -c "$BODY" "vault-rotation:$APP:$STEP"
# setpriv replaces itself with the body as the app user: no process of root's stays between the
# time limit and the body (runuser would, and would SIGKILL the body 2s after passing on a SIGTERM,
# cutting the rotate unit's restore short).
gid=$(id -g -- "$APP_USER") || fail "no group for $APP_USER on $(uname -n)"
if [ -n "$switch" ]; then set -- setpriv --reuid="$uid" --regid="$gid" --init-groups -- "$@"; fi
# setsid -w: a new session (no controlling terminal), and the body's exit status is the step's.
# timeout: the step's time limit, in the launcher's hands (root's on local hosts: the app
# user cannot stop or signal it): SIGTERM, which the rotate unit answers by putting
# everything back, then SIGKILL ${STEP_KILL_GRACE_SECONDS}s later for a body that is stopped or ignores it.
rc=0
started=$(date +%s)
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid -w timeout -s TERM -k ${STEP_KILL_GRACE_SECONDS} ${limit} "$@" </dev/null || rc=$?
# 124: timed out (SIGTERM); 137 after the limit: timed out and killed; another 128+N: killed by signal N.
if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ $(($(date +%s) - started)) -ge ${limit} ]; }; then
  why="the step did not finish within ${limit}s (rotation.stepTimeoutSeconds); it was stopped"
elif [ "$rc" -gt 128 ]; then
  why="the step's body was killed by signal $((rc - 128))"
else
  exit "$rc"
fi
${
    opts.restore
        ? `# If the body died before it could put things back (a stopped body gets SIGKILL), the same
# body does it now, bounded in turn ("restore" mode: only what a live unit would have undone).
set -- "$@" restore
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin setsid -w timeout -s TERM -k ${STEP_KILL_GRACE_SECONDS} 60 "$@" </dev/null || true
why="$why (what was put back is said above)"
`
        : ""
}fail "$why"
`;
}

/**
 * The body's preamble: strict mode, a private umask, one-line messages on
 * stderr naming app and step (the command resources log stderr only, so a
 * step logs exactly its one success line or its failure), and the home check.
 */
function bodyPreamble(app: string, step: string): string {
    return `set -eu
umask 077
APP=${shQuote(app)}
STEP=${shQuote(step)}
say() { printf 'vault-rotation: %s: %s: %s\\n' "$APP" "$STEP" "$*" >&2; }
fail() { say "$*"; exit 1; }
# The launcher started this in a session of its own: a terminal here would be the operator's.
if (: </dev/tty) 2>/dev/null; then fail "refusing to run with a controlling terminal"; fi
{ [ -d "$HOME" ] && [ -O "$HOME" ]; } || fail "home $HOME must be an existing directory owned by $USER"
cd -- "$HOME"
`;
}

/**
 * Helpers for paths under the home. A managed directory must be a real
 * directory owned by the app user (never a link); a file is only ever replaced
 * by rename (mv -T), which replaces a planted link itself, never its target.
 */
function pathHelpers(): string {
    return `own_dir() { # path mode: create when missing; refuse a link, a non-directory, another owner
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
  printf '%s\\n' "$tmp"
}
# Writes standard input to $1 with mode $2: temp file in the same directory,
# then rename, so readers see the old file or the new one, never a partial one.
write_atomic() { # dest mode
  staged=$(stage_file "$1" "$2") || exit 1
  if ! mv -f -T -- "$staged" "$1"; then rm -f -- "$staged"; fail "cannot install $1"; fi
}
`;
}

export interface AgentKeygenScriptInput extends HostUser {
    /** The agent certificate's common name (the CSR's subject). */
    commonName: string;
}

/**
 * Generates the agent's next key on the host, as the app user, and prints its
 * CSR. The key never leaves the host: it is written (0600, temp file and
 * rename) to `agent.key.next`, where the files step picks it up once Vault has
 * signed the CSR. Standard output is the CSR alone (public), so Pulumi state
 * holds no copy of the key.
 */
export function renderAgentKeygenScript(i: AgentKeygenScriptInput): string {
    return renderLauncher(i, "agent-keygen", renderAgentKeygenBody(i));
}

/** The body of the agent-keygen step. */
export function renderAgentKeygenBody(i: AgentKeygenScriptInput): string {
    const p = hostPaths(i.home, i.app);
    return `${bodyPreamble(i.app, "agent-keygen")}${pathHelpers()}
NEXT_KEY=${shQuote(p.agentKeyNext)}
MTLS_DIR=${shQuote(p.mtlsDir)}
SUBJECT=${shQuote(`/CN=${i.commonName}`)}
command -v openssl >/dev/null 2>&1 || fail "no openssl on PATH: the agent key is generated on this host"
own_dir ${shQuote(p.vaultDir)} 0750
own_dir "$MTLS_DIR" 0700
regular_or_absent "$NEXT_KEY"
# The key is made and checked in a temp file (0600 by the umask; only its name is
# on a command line), and replaces a waiting agent.key.next only once its CSR is
# made: a failed run leaves the waiting key as it was.
key_tmp=$(mktemp "$MTLS_DIR/.vault-rotation.XXXXXX") || fail "cannot create a temp file in $MTLS_DIR"
trap 'rm -f -- "$key_tmp"' EXIT
if ! { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$key_tmp" 2>/dev/null &&
  openssl pkey -in "$key_tmp" -noout 2>/dev/null; }; then
  fail "openssl could not generate an EC P-256 key"
fi
csr=$(openssl req -new -key "$key_tmp" -subj "$SUBJECT" 2>/dev/null) || fail "openssl could not make a certificate request"
# This is all that leaves the host: one certificate request block, base64 lines only.
printf '%s\\n' "$csr" | awk '
  NR == 1 { if ($0 != "-----BEGIN CERTIFICATE REQUEST-----") exit 3; next }
  $0 == "-----END CERTIFICATE REQUEST-----" && !end { end = 1; next }
  end || length($0) > 76 || $0 !~ /^[A-Za-z0-9+\\/=]+$/ { exit 3 }
  END { if (!end) exit 3 }
' || fail "openssl printed something other than one certificate request; refusing to pass it on"
mv -f -T -- "$key_tmp" "$NEXT_KEY" || fail "cannot install $NEXT_KEY"
printf '%s\\n' "$csr"
say "generated a new agent key (agent.key.next, 0600) and printed its certificate request"
`;
}

export interface AgentFilesScriptInput extends HostUser {
    /** PEM of the signed agent certificate (public). */
    agentCertPem: string;
    /** PEM bundle that verifies Vault's listener (public). */
    listenerCaPem: string;
}

/**
 * Installs the agent's mTLS files as the app user: the key generated on the
 * host for this certificate (0600), the cert and the CA bundle (0644). Nothing
 * secret is in the script or on its standard input.
 */
export function renderAgentFilesScript(i: AgentFilesScriptInput): string {
    return renderLauncher(i, "write-agent-files", renderAgentFilesBody(i));
}

/**
 * The body of the write-agent-files step. Which key goes with the cert is
 * decided by public key: the waiting `agent.key.next` (a new key's first
 * cert) or the `agent.key` in place (a renewal of the same key, or a re-run).
 * Neither matching means the key this cert was signed for is gone: nothing is
 * changed and the step says how to recover.
 */
export function renderAgentFilesBody(i: AgentFilesScriptInput): string {
    const p = hostPaths(i.home, i.app);
    return `${bodyPreamble(i.app, "write-agent-files")}${pathHelpers()}
AGENT_CERT_PEM=${shQuote(i.agentCertPem.trim())}
LISTENER_CA_PEM=${shQuote(i.listenerCaPem.trim())}
KEY=${shQuote(p.agentKey)}
NEXT_KEY=${shQuote(p.agentKeyNext)}
CERT=${shQuote(p.agentCert)}
CA_PEM=${shQuote(p.caPem)}
ca_staged=''
command -v openssl >/dev/null 2>&1 || fail "no openssl on PATH: it matches the agent key to its certificate"
own_dir ${shQuote(p.vaultDir)} 0750
own_dir ${shQuote(p.mtlsDir)} 0700
own_dir ${shQuote(p.caDir)} 0755
regular_or_absent "$KEY"
regular_or_absent "$NEXT_KEY"
cert_public=$(printf '%s\\n' "$AGENT_CERT_PEM" | openssl x509 -noout -pubkey 2>/dev/null) || fail "the signed agent certificate does not parse"
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
# app user's: the program revokes the serial only if Vault issued it for this
# agent's name (RotationCheck), so a planted file can name nothing else.
replaced=''
if [ -f "$CERT" ]; then replaced=$(openssl x509 -in "$CERT" -noout -serial 2>/dev/null | sed -n 's/^serial=\\([0-9A-Fa-f]*\\)$/\\1/p') || replaced=''; fi
# Cert and CA are written first, so the renames that install key, cert and CA
# follow each other with nothing in between that could fail on a full disk.
cert_staged=$(printf '%s\\n' "$AGENT_CERT_PEM" | stage_file "$CERT" 0644) || exit 1
trap 'rm -f -- "$cert_staged" "$ca_staged"' EXIT
ca_staged=$(printf '%s\\n' "$LISTENER_CA_PEM" | stage_file "$CA_PEM" 0644) || exit 1
if [ "$new_key" = 1 ] && ! { chmod 0600 -- "$NEXT_KEY" && mv -f -T -- "$NEXT_KEY" "$KEY"; }; then fail "cannot install $NEXT_KEY as $KEY"; fi
mv -f -T -- "$cert_staged" "$CERT" || fail "cannot install $CERT"
mv -f -T -- "$ca_staged" "$CA_PEM" || fail "cannot install $CA_PEM"
say "installed $installed, agent.crt, ca.pem"
printf 'replaced_agent_cert_serial=%s\n' "$replaced"
`;
}

export interface AgentConfigScriptInput extends HostUser {
    agentHclText: string;
    templateText: string;
    hookText: string;
}

/** Installs agent.hcl (0640), the fullchain template (0640) and the post-hook (0750), as the app user. */
export function renderAgentConfigScript(i: AgentConfigScriptInput): string {
    return renderLauncher(i, "write-agent-config", renderAgentConfigBody(i));
}

/** The body of the write-agent-config step. */
export function renderAgentConfigBody(i: AgentConfigScriptInput): string {
    const p = hostPaths(i.home, i.app);
    return `${bodyPreamble(i.app, "write-agent-config")}${pathHelpers()}
own_dir ${shQuote(p.vaultDir)} 0750
own_dir ${shQuote(p.templatesDir)} 0750
own_dir ${shQuote(p.hooksDir)} 0750
own_dir ${shQuote(p.renderDir)} 0700
own_dir ${shQuote(p.tlsDir)} 0750
printf '%s' ${shQuote(i.agentHclText)} | write_atomic ${shQuote(p.agentHcl)} 0640
printf '%s' ${shQuote(i.templateText)} | write_atomic ${shQuote(p.template)} 0640
printf '%s' ${shQuote(i.hookText)} | write_atomic ${shQuote(p.hook)} 0750
say "wrote agent.hcl, the fullchain template and the post-hook"
`;
}

export interface RotateScriptInput extends HostUser {
    service: string;
    waitSeconds: number;
    /** How the host-side cert login reaches Vault: as the agent does, with the files just written. */
    login: { vaultAddress: string; certAuthPath: string; mapping: string };
}

/**
 * Shell function: the first line of `vault version` on the host when it is one
 * printable `Vault v<version>` line, else nothing. Vault prints several forms,
 * all accepted: `Vault v1.15.2 (abc123), built 2023-...`, `Vault v1.21.0, built
 * 2025-...` (a build without a commit hash: a comma right after the version),
 * `Vault v1.13.0+ent (abc)`, `Vault v1.16.0-rc1`.
 */
export const AGENT_VERSION_FN = `agent_version() {
  version=$(vault version 2>/dev/null | head -n 1 | cut -c1-200) || version=''
  if printf '%s\\n' "$version" | grep -Eqx 'Vault v[0-9][0-9A-Za-z.+-]*([ ,][ -~]*)?'; then echo "$version"; fi
}
`;

/**
 * Shell functions that read the public facts a check needs, shared by the rotate
 * and verify steps: `certs_only` (a file's certificate blocks and nothing else:
 * the fullchain also holds the key), `login_check` (a cert login as the agent
 * does it, with the agent files on the host; the token never leaves a private
 * temp HOME and is revoked at once) and `service_state`. They expect the body's
 * FULLCHAIN-style paths, VAULT_ADDRESS, CA_PEM, AGENT_CERT, AGENT_KEY,
 * CERT_AUTH_PATH, MAPPING and SERVICE, and its `fail`.
 */
export const HOST_FACTS_FNS = `certs_only() { # file: its CERTIFICATE blocks and nothing else (the fullchain also holds the key)
  regular_or_absent "$1"
  [ -f "$1" ] || return 0
  blocks=$(awk '
    /^-----BEGIN CERTIFICATE-----$/ { if (p) exit 3; p = 1; print; next }
    /^-----END CERTIFICATE-----$/ { if (!p) exit 3; p = 0; print; next }
    p { if (length($0) > 76 || $0 !~ /^[A-Za-z0-9+\\/=]+$/) exit 3; print }
    END { if (p) exit 3 }
  ' "$1") || fail "$1 holds a malformed certificate block; refusing to pass it on"
  [ -n "$blocks" ] || return 0
  # Each block must parse as a certificate: base64 of anything else (the key's DER
  # under a CERTIFICATE header) would otherwise reach state.
  certdir=$(mktemp -d) || fail "cannot create a temp directory"
  printf '%s\\n' "$blocks" | awk -v d="$certdir" '/^-----BEGIN CERTIFICATE-----$/ { n++ } { print > (d "/" sprintf("%05d", n) ".pem") }'
  # What goes out is openssl's own encoding of each certificate it parsed: bytes after a
  # certificate's DER inside its block (which openssl x509 ignores) are left behind.
  out=''
  for block in "$certdir"/*.pem; do
    if ! cert=$(openssl x509 -in "$block" 2>/dev/null); then
      rm -rf -- "$certdir"
      fail "$1 holds a CERTIFICATE block that is not a certificate; refusing to pass it on"
    fi
    out="$out$cert
"
  done
  rm -rf -- "$certdir"
  printf '%s' "$out"
}
# A cert login with the files just written, the way the agent logs in. The
# CLI keeps the token in .vault-token of a private temp HOME: never on a
# command line, in an environment or on stdout; it is revoked right after.
login_check() {
  command -v vault >/dev/null 2>&1 || { echo "error=no vault binary on PATH"; return 0; }
  # Each call bounded, so the facts phase cannot outlast the step's time limit.
  VAULT_CLIENT_TIMEOUT=20s
  export VAULT_CLIENT_TIMEOUT
  vhome=$(mktemp -d) || { echo "error=cannot create a temp directory"; return 0; }
  if out=$(HOME=$vhome VAULT_ADDR=$VAULT_ADDRESS VAULT_CACERT=$CA_PEM vault login -method=cert -path="$CERT_AUTH_PATH" \\
      -client-cert="$AGENT_CERT" -client-key="$AGENT_KEY" name="$MAPPING" 2>&1 >/dev/null); then
    policies=$(HOME=$vhome VAULT_ADDR=$VAULT_ADDRESS VAULT_CACERT=$CA_PEM vault read -field=policies auth/token/lookup-self 2>/dev/null |
      tr -d '[]' | tr ' ' '\\n' | grep -v '^$' | sort | paste -sd, -) || policies=''
    HOME=$vhome VAULT_ADDR=$VAULT_ADDRESS VAULT_CACERT=$CA_PEM vault token revoke -self >/dev/null 2>&1 || true
    case "$policies" in
      '' | *[!A-Za-z0-9_.,-]*) echo "error=cannot read the policies of the login token" ;;
      *) echo "policies=$policies" ;;
    esac
  else
    echo "error=$(printf '%s' "$out" | tr -c '[:print:]' ' ' | tr -s ' ' | cut -c1-300)"
  fi
  rm -rf -- "$vhome"
}
service_state() {
  state=$(systemctl --user is-active "$SERVICE" 2>/dev/null) || true
  case "$state" in '' | *[!a-z-]*) state=unknown ;; esac
  echo "$state"
}
`;

/**
 * The rotation on the host, as one unit run by the app user:
 *
 *  1. copy the served fullchain to `.prev` and move the agent's private render
 *     target aside (`pkiCert` reuses a still-valid file and would not reissue);
 *  2. restart the agent's user service;
 *  3. wait, bounded, until the agent rendered a new fullchain and the post-hook
 *     installed it where the app reads it, reloaded, and reported `result=ok`.
 *
 * Any failure or signal in 1-3 puts both files back and restarts the agent on
 * them (trap on EXIT/INT/TERM/HUP). The served file is only ever replaced by the
 * hook's rename, so even a run killed outright (no trap runs) leaves the
 * previous certificate in place. Then it prints the public facts the rotation
 * check needs, each limited to what it claims to be (see lib/hostState.ts):
 * certificate blocks only, the hook's one status line in its expected form, the
 * service state, the result of a cert login made here with the new agent files,
 * and `vault version`.
 */
export function renderRotateScript(i: RotateScriptInput): string {
    return renderLauncher(i, "rotate", renderRotateBody(i), { restore: true });
}

/** The body of the rotate step. */
export function renderRotateBody(i: RotateScriptInput): string {
    const p = hostPaths(i.home, i.app);
    return `${bodyPreamble(i.app, "rotate")}${pathHelpers()}
FULLCHAIN=${shQuote(p.fullchain)}
PREVIOUS=${shQuote(p.previousFullchain)}
RENDERED=${shQuote(p.renderedFullchain)}
RENDERED_PREV=${shQuote(p.renderedPrevious)}
MARK=${shQuote(p.rotationMark)}
ARMED=${shQuote(p.rotationArmed)}
STATUS=${shQuote(p.reloadStatus)}
HOOK=${shQuote(p.hook)}
SERVICE=${shQuote(i.service)}
WAIT_SECONDS=${i.waitSeconds}
VAULT_ADDRESS=${shQuote(i.login.vaultAddress)}
CA_PEM=${shQuote(p.caPem)}
AGENT_CERT=${shQuote(p.agentCert)}
AGENT_KEY=${shQuote(p.agentKey)}
CERT_AUTH_PATH=${shQuote(i.login.certAuthPath)}
MAPPING=${shQuote(i.login.mapping)}
for d in ${shQuote(p.vaultDir)} ${shQuote(p.tlsDir)} ${shQuote(p.renderDir)} ${shQuote(p.hooksDir)}; do is_own_dir "$d"; done
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
  # Nothing cuts a restore short: a second signal waits for the time limit's SIGKILL.
  trap '' HUP INT TERM
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
exit_on_signals() { trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; }
exit_on_signals

# A unit that died before it could put things back (killed by the time limit, or its launcher
# gone) left ARMED: put back first. In restore mode that is all; else the rotation follows.
if [ -f "$ARMED" ]; then
  armed=1
  restore
  exit_on_signals
fi
if [ "\${1:-}" = restore ]; then exit 1; fi

rm -f -- "$PREVIOUS" "$RENDERED_PREV"
: >"$MARK"
if [ -f "$FULLCHAIN" ]; then write_atomic "$PREVIOUS" 0600 <"$FULLCHAIN"; fi
: >"$ARMED"
armed=1
if [ -f "$RENDERED" ]; then mv -f -T -- "$RENDERED" "$RENDERED_PREV" || fail "cannot move $RENDERED aside"; fi
systemctl --user restart "$SERVICE" || fail "systemctl --user restart $SERVICE failed; $looked_at"

newer_than_mark() { [ -f "$1" ] && [ -n "$(find "$1" -prune -newer "$MARK")" ]; }
# The hook writes its report after installing: a report older than the served file is an earlier run's.
reported() { [ -f "$STATUS" ] && [ -z "$(find "$FULLCHAIN" -prune -newer "$STATUS")" ]; }
started=$(date +%s)
deadline=$((started + WAIT_SECONDS))
until newer_than_mark "$RENDERED" && newer_than_mark "$FULLCHAIN" && reported; do
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.2
done
newer_than_mark "$RENDERED" || fail "no new fullchain rendered at $RENDERED within \${WAIT_SECONDS}s; $looked_at, then re-run pulumi up"
{ newer_than_mark "$FULLCHAIN" && reported; } || fail "the agent rendered a new fullchain but the post-hook did not install it at $FULLCHAIN and report within \${WAIT_SECONDS}s; $looked_at"

# The hook's one-line report, passed on only in its expected form.
status_line() {
  regular_or_absent "$STATUS"
  line=$(head -c 512 -- "$STATUS" | head -n 1)
  printf '%s\\n' "$line" | grep -Eqx 'result=(ok|failed) reloaded=[A-Za-z0-9_.,-]* failed=[A-Za-z0-9_.,: -]*' ||
    fail "$STATUS does not hold a post-hook report; refusing to pass it on"
  printf '%s\\n' "$line"
}
report=$(status_line)
case "$report" in
  'result=ok '*) ;;
  *) fail "the post-hook reported a failed reload ($report); $looked_at" ;;
esac
armed=0
rm -f -- "$ARMED"
took=$(($(date +%s) - started))

# -- public facts for the rotation check (stdout, kept in state)
${HOST_FACTS_FNS}${AGENT_VERSION_FN}echo '### fullchain'
certs_only "$FULLCHAIN"
echo '### previous'
certs_only "$PREVIOUS"
echo '### reload'
echo "$report"
echo '### service'
service_state
echo '### login'
login_check
echo '### agent-version'
agent_version
echo '### end'
say "restarted $SERVICE; new fullchain rendered, installed and reloaded in \${took}s"
`;
}

export interface ReloadHookInput {
    app: string;
    label: string;
    proxy?: string;
    signal: string;
    /** Where the agent renders (its private target). */
    renderedFullchain: string;
    /** Where the app reads the fullchain: the hook installs the render there. */
    fullchain: string;
    /** Where the hook reports its last run (read back by the rotate step). */
    statusFile: string;
    /** The node_exporter textfile the hook rewrites after each run, and what it is composed from. */
    metrics: MetricsPaths;
}

/**
 * The post-render hook, run by the agent as the app user: install the render
 * where the app reads it (temp file + rename: the app never sees a partial
 * file, and a planted link is replaced, not followed), then signal every
 * podman container carrying the label, then the edge proxy (once, even if it
 * also carries the label). Exits non-zero when anything fails, so the agent
 * logs it; no match is not an error. Its one-line report
 * (`result=ok|failed reloaded=... failed=...`) tells the rotate step that a
 * reload followed the render.
 */
export function renderReloadHook(i: ReloadHookInput): string {
    return `#!/bin/sh
# Managed by vault-rotation: runs after Vault Agent renders the ${i.app} fullchain.
set -u
umask 077
APP=${shQuote(i.app)}
RENDERED=${shQuote(i.renderedFullchain)}
FULLCHAIN=${shQuote(i.fullchain)}
RELOAD_TLS_LABEL=${shQuote(i.label)}
PROXY_RELOAD=${shQuote(i.proxy ?? "")}
RELOAD_SIGNAL=${shQuote(i.signal)}
STATUS_FILE=${shQuote(i.statusFile)}
${metricsVariables(i.metrics)}log() { printf 'reload-tls: %s: %s\\n' "$APP" "$*"; }
${METRICS_FNS}# Every way out rewrites the metrics textfile (expiry, last render and reload as the files say).
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
  printf 'result=%s reloaded=%s failed=%s\\n' "$1" "$list" "\${failed_names%,}" >"$tmp" && mv -f -T -- "$tmp" "$STATUS_FILE"
}
install_fullchain() {
  if [ -d "$FULLCHAIN" ] && [ ! -L "$FULLCHAIN" ]; then log "$FULLCHAIN is a directory"; return 1; fi
  tmp=$(mktemp "\${FULLCHAIN%/*}/.vault-rotation.XXXXXX") || return 1
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
    proxy=\${PROXY_RELOAD#podman:}
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
`;
}

export interface EdgeTrustScriptInput extends HostUser {
    /** The upstream trust bundle's path (inside the edge user's home). */
    bundle: string;
    /** The PKI's issuing chain, PEM (public). */
    chainPem: string;
    /** The proxy's container (podman). */
    container: string;
    /** `signal`: the proxy re-reads its upstream trust on a signal; `restart`: it cannot. */
    trustReload: "signal" | "restart";
    signal: string;
}

/**
 * Keeps the edge proxy's upstream trust bundle equal to the PKI's issuing
 * chain, as the edge user: rewrites it (atomically) and reloads or restarts the
 * proxy only when the content differs. A reload that fails puts the previous
 * bundle back, so the next run tries again instead of finding "unchanged".
 * Prints `changed` or `unchanged` on stdout.
 */
export function renderEdgeTrustScript(i: EdgeTrustScriptInput): string {
    return renderLauncher(i, "edge-trust", renderEdgeTrustBody(i));
}

/** The body of the edge-trust step. */
export function renderEdgeTrustBody(i: EdgeTrustScriptInput): string {
    const reload = i.trustReload === "restart" ? `podman restart "$CONTAINER"` : `podman kill --signal "$SIGNAL" "$CONTAINER"`;
    return `${bodyPreamble(i.app, "edge-trust")}${pathHelpers()}
BUNDLE=${shQuote(i.bundle)}
CHAIN_PEM=${shQuote(i.chainPem.trim())}
CONTAINER=${shQuote(i.container)}
SIGNAL=${shQuote(i.signal)}
own_dir "$(dirname -- "$BUNDLE")" 0750
regular_or_absent "$BUNDLE"
regular_or_absent "$BUNDLE.prev"
if [ -f "$BUNDLE" ] && printf '%s\\n' "$CHAIN_PEM" | cmp -s - "$BUNDLE"; then
  say "upstream trust bundle $BUNDLE already holds the issuing chain; $CONTAINER not reloaded"
  echo unchanged
  exit 0
fi
rm -f -- "$BUNDLE.prev"
if [ -f "$BUNDLE" ]; then write_atomic "$BUNDLE.prev" 0644 <"$BUNDLE"; fi
printf '%s\\n' "$CHAIN_PEM" | write_atomic "$BUNDLE" 0644
if ! ${reload} >/dev/null; then
  if [ -f "$BUNDLE.prev" ]; then mv -f -T -- "$BUNDLE.prev" "$BUNDLE"; else rm -f -- "$BUNDLE"; fi
  fail "wrote $BUNDLE but could not ${i.trustReload === "restart" ? "restart" : "reload"} $CONTAINER; the previous bundle is back, run pulumi up again once the proxy can be reloaded"
fi
say "wrote the issuing chain to $BUNDLE and ${i.trustReload === "restart" ? "restarted" : "reloaded"} $CONTAINER"
echo changed
`;
}

/** The paths the metrics textfile is composed from and written to (all under the app's home). */
export interface MetricsPaths {
    /** The node_exporter textfile (`*.prom`), in a directory of its own (0755; the file 0644). */
    textfile: string;
    /** Held while the file is written. */
    lock: string;
    fullchain: string;
    renderedFullchain: string;
    agentCert: string;
    reloadStatus: string;
    reloadOk: string;
    verifyStatus: string;
}

/** Shell assignments of the metrics paths, for a script that writes the textfile. */
export function metricsVariables(m: MetricsPaths): string {
    return `TEXTFILE=${shQuote(m.textfile)}
METRICS_LOCK=${shQuote(m.lock)}
M_FULLCHAIN=${shQuote(m.fullchain)}
M_RENDERED=${shQuote(m.renderedFullchain)}
M_AGENT_CERT=${shQuote(m.agentCert)}
M_RELOAD_STATUS=${shQuote(m.reloadStatus)}
M_RELOAD_OK=${shQuote(m.reloadOk)}
VERIFY_STATUS=${shQuote(m.verifyStatus)}
`;
}

/**
 * Shell functions that write the app's node_exporter textfile. Every value is
 * read from the files themselves (the certificates' notAfter, the render's and
 * the hook's marks, the verification's status line), so each writer (the
 * post-hook after a render, the verify and record steps) writes the whole file
 * and none needs another's memory. Written under a lock, to a temp file in the
 * same directory (not `*.prom`, so the collector never reads it) and renamed:
 * the collector sees the old file or the new one. The file is 0644 and its
 * directory 0755: readable by node_exporter, writable by the app user alone.
 * `write_metrics` returns non-zero when it cannot write; it never exits.
 */
export const METRICS_FNS = `cert_not_after() { # file: its first certificate's notAfter in Unix seconds; nothing when absent or unreadable
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  end=$(openssl x509 -in "$1" -noout -enddate 2>/dev/null) || return 0
  date -u -d "\${end#notAfter=}" +%s 2>/dev/null || true
}
mtime_of() { # file: its mtime in Unix seconds; nothing when absent
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  stat -c %Y -- "$1" 2>/dev/null || true
}
status_field() { # file key: the value of key=<word> on the file's first line
  { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
  head -c 512 -- "$1" | head -n 1 | tr ' ' '\\n' | sed -n "s/^$2=\\\\([A-Za-z0-9]*\\\\)\$/\\\\1/p" | head -n 1
}
metric() { # name labels value: one sample, only for a value that is a number
  case "$3" in '' | *[!0-9]*) return 0 ;; esac
  printf '%s{%s} %s\\n' "$1" "$2" "$3"
}
help_type() { # name help
  printf '# HELP %s %s\\n# TYPE %s gauge\\n' "$1" "$2" "$1"
}
metrics_text() {
  a="app=\\"$APP\\""
  reload_ok=''
  case "$(status_field "$M_RELOAD_STATUS" result)" in ok) reload_ok=1 ;; failed) reload_ok=0 ;; esac
  verify_ok=''
  case "$(status_field "$VERIFY_STATUS" result)" in ok) verify_ok=1 ;; failed | pending) verify_ok=0 ;; esac
  help_type vault_rotation_cert_not_after_timestamp_seconds "When a certificate on the host expires (Unix seconds): kind=leaf the served fullchain's leaf, kind=agent the Vault Agent's login certificate."
  metric vault_rotation_cert_not_after_timestamp_seconds "$a,kind=\\"leaf\\"" "$(cert_not_after "$M_FULLCHAIN")"
  metric vault_rotation_cert_not_after_timestamp_seconds "$a,kind=\\"agent\\"" "$(cert_not_after "$M_AGENT_CERT")"
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
  mdir=\${TEXTFILE%/*}
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
`;

export interface VerifyScriptInput extends HostUser {
    service: string;
    /** How the host-side cert login reaches Vault: as the agent does. */
    login: { vaultAddress: string; certAuthPath: string; mapping: string };
    /** The login token's policies, exactly (sorted, `default` included). */
    expectedPolicies: string[];
    /** The leaf must have at least this much validity left (rotation.leafMinRemaining). */
    leafMinRemainingSeconds: number;
    /** The agent cert must outlive the next run: the verification interval plus its margin. */
    agentMinRemainingSeconds: number;
    /** The node_exporter textfile. */
    textfile: string;
}

/**
 * A verification between rotations, as the app user, read-only on everything
 * the rotation manages: it restarts, reloads and moves nothing. It checks the
 * host's own items (leaf and agent cert present and valid long enough, the
 * post-hook's last report, the service, a cert login with the agent files on the
 * host and its token's policies) and fails on any of them, each as one line
 * `<app>: <item>: expected <x>, found <y>`, so a failed step is not kept in state
 * and the next run reads the host again. When they pass it prints the same public
 * facts as the rotate step (plus the agent cert) for the runner's checks. Either
 * way it writes the metrics textfile; a failure also sets the verification
 * status to failed (a pass is recorded by the record step, after the runner's checks).
 */
export function renderVerifyScript(i: VerifyScriptInput): string {
    return renderLauncher(i, "verify", renderVerifyBody(i));
}

/** The body of the verify step. */
export function renderVerifyBody(i: VerifyScriptInput): string {
    const p = hostPaths(i.home, i.app);
    const expected = [...new Set(i.expectedPolicies)].sort().join(",");
    return `${bodyPreamble(i.app, "verify")}${pathHelpers()}
FULLCHAIN=${shQuote(p.fullchain)}
STATUS=${shQuote(p.reloadStatus)}
SERVICE=${shQuote(i.service)}
VAULT_ADDRESS=${shQuote(i.login.vaultAddress)}
CA_PEM=${shQuote(p.caPem)}
AGENT_CERT=${shQuote(p.agentCert)}
AGENT_KEY=${shQuote(p.agentKey)}
CERT_AUTH_PATH=${shQuote(i.login.certAuthPath)}
MAPPING=${shQuote(i.login.mapping)}
EXPECTED_POLICIES=${shQuote(expected)}
LEAF_MIN_SECONDS=${i.leafMinRemainingSeconds}
AGENT_MIN_SECONDS=${i.agentMinRemainingSeconds}
${metricsVariables(metricsPaths(i.home, i.app, i.textfile))}for d in ${shQuote(p.vaultDir)} ${shQuote(p.tlsDir)} ${shQuote(p.hooksDir)}; do is_own_dir "$d"; done
for f in "$FULLCHAIN" "$STATUS" "$VERIFY_STATUS" "$AGENT_CERT"; do regular_or_absent "$f"; done
command -v openssl >/dev/null 2>&1 || fail "no openssl on PATH: the verification reads the certificates on this host"
${HOST_FACTS_FNS}${AGENT_VERSION_FN}${METRICS_FNS}
# Any way out but the end (a failed item, a refused file) records a failed verification.
completed=0
record_failed() {
  [ "$completed" = 0 ] || return 0
  ok_at=$(status_field "$VERIFY_STATUS" ok_at)
  printf 'result=failed at=%s ok_at=%s\\n' "$(date +%s)" "\${ok_at:-0}" | write_atomic "$VERIFY_STATUS" 0644 || true
  write_metrics || say "could not write the metrics textfile $TEXTFILE"
}
trap record_failed EXIT
problems=''
problem() { problems="$problems$APP: $1
"; }
end_of() { printf '%s\\n' "$1" | openssl x509 -noout -enddate 2>/dev/null | sed 's/^notAfter=//'; }

fullchain=$(certs_only "$FULLCHAIN")
if [ -z "$fullchain" ]; then
  problem "fullchain present: expected a fullchain at $FULLCHAIN, found none"
elif ! printf '%s\\n' "$fullchain" | openssl x509 -noout -checkend "$LEAF_MIN_SECONDS" >/dev/null 2>&1; then
  problem "leaf remaining validity: expected at least \${LEAF_MIN_SECONDS}s, found notAfter $(end_of "$fullchain") (the agent renews the leaf; look at: journalctl --user -u $SERVICE)"
fi
agent_cert=$(certs_only "$AGENT_CERT")
if [ -z "$agent_cert" ]; then
  problem "agent cert present: expected the agent's certificate at $AGENT_CERT, found none"
elif ! printf '%s\\n' "$agent_cert" | openssl x509 -noout -checkend "$AGENT_MIN_SECONDS" >/dev/null 2>&1; then
  problem "agent cert remaining validity: expected at least \${AGENT_MIN_SECONDS}s (until after the next run), found notAfter $(end_of "$agent_cert") (a run with refresh renews it: pulumi up --refresh)"
fi
report=''
if [ -f "$STATUS" ]; then report=$(head -c 512 -- "$STATUS" | head -n 1); fi
if ! printf '%s\\n' "$report" | grep -Eqx 'result=(ok|failed) reloaded=[A-Za-z0-9_.,-]* failed=[A-Za-z0-9_.,: -]*'; then
  problem "post-hook reload: expected a report from the post-hook in $STATUS, found $(if [ -z "$report" ]; then echo none; else echo 'something else'; fi)"
  report=''
else
  case "$report" in 'result=ok '*) ;; *) problem "post-hook reload: expected result=ok from its last run, found $report" ;; esac
fi
state=$(service_state)
[ "$state" = active ] || problem "agent service: expected active, found $state (look at: journalctl --user -u $SERVICE)"
login=$(login_check)
case "$login" in
  "policies=$EXPECTED_POLICIES") ;;
  policies=*) problem "token policies: expected [$EXPECTED_POLICIES], found [\${login#policies=}]" ;;
  *) problem "cert login: expected a token from auth/$CERT_AUTH_PATH/login with name $MAPPING (as $USER, with the agent files on this host), found \${login#error=}" ;;
esac
if [ -n "$problems" ]; then
  printf '%s' "$problems" >&2
  fail "the verification failed (nothing was restarted or reloaded); fix the cause above, then re-run pulumi up: the host is read again"
fi

# -- public facts for the runner's checks (stdout, kept in state)
echo '### fullchain'
printf '%s\\n' "$fullchain"
echo '### reload'
echo "$report"
echo '### service'
echo "$state"
echo '### login'
echo "$login"
echo '### agent-version'
agent_version
echo '### agent-cert'
printf '%s\\n' "$agent_cert"
# When the host was read: each reading is a new verification on the runner, even of unchanged facts.
echo '### read-at'
date +%s
echo '### end'
completed=1
# Pending until the record step says every item passed: a check that fails on the runner leaves it so.
ok_at=$(status_field "$VERIFY_STATUS" ok_at)
printf 'result=pending at=%s ok_at=%s\\n' "$(date +%s)" "\${ok_at:-0}" | write_atomic "$VERIFY_STATUS" 0644
write_metrics || fail "cannot write the metrics textfile $TEXTFILE (its directory must be a directory of $USER's, not a link)"
say "every host item passed (nothing restarted or reloaded)"
`;
}

export interface RecordVerificationScriptInput extends HostUser {
    textfile: string;
}

/** After every check passed (host and runner): records the pass on the host and rewrites the textfile. */
export function renderRecordVerificationScript(i: RecordVerificationScriptInput): string {
    return renderLauncher(i, "record-verification", renderRecordVerificationBody(i));
}

/** The body of the record-verification step. */
export function renderRecordVerificationBody(i: RecordVerificationScriptInput): string {
    const p = hostPaths(i.home, i.app);
    return `${bodyPreamble(i.app, "record-verification")}${pathHelpers()}
${metricsVariables(metricsPaths(i.home, i.app, i.textfile))}is_own_dir ${shQuote(p.vaultDir)}
regular_or_absent "$VERIFY_STATUS"
${METRICS_FNS}now=$(date +%s)
printf 'result=ok at=%s ok_at=%s\\n' "$now" "$now" | write_atomic "$VERIFY_STATUS" 0644
write_metrics || fail "cannot write the metrics textfile $TEXTFILE (its directory must be a directory of $USER's, not a link)"
say "verification passed; recorded in $VERIFY_STATUS and $TEXTFILE"
`;
}

/** The metrics paths of an app: the textfile as configured, every other path from hostPaths. */
export function metricsPaths(home: string, app: string, textfile: string): MetricsPaths {
    const p = hostPaths(home, app);
    return {
        textfile,
        lock: p.metricsLock,
        fullchain: p.fullchain,
        renderedFullchain: p.renderedFullchain,
        agentCert: p.agentCert,
        reloadStatus: p.reloadStatus,
        reloadOk: p.reloadOk,
        verifyStatus: p.verifyStatus,
    };
}
