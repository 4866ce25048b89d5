// Host scripts, as pure functions. They run through `sh -c` locally or over SSH,
// so every value is single-quoted into a variable at the top, and nothing secret
// is ever in the script text: the agent key arrives on standard input.
import { shQuote } from "./quote";

/** Shared preamble: strict mode and failure/progress lines that name app and step. */
function preamble(app: string, step: string, user?: string): string {
    return `set -eu
umask 077
APP=${shQuote(app)}
STEP=${shQuote(step)}
${user === undefined ? "" : `APP_USER=${shQuote(user)}\n`}fail() { printf 'vault-rotation: %s: %s: %s\\n' "$APP" "$STEP" "$*" >&2; exit 1; }
log() { printf 'vault-rotation: %s: %s: %s\\n' "$APP" "$STEP" "$*"; }
`;
}

/** Helpers of the scripts that install files: ownership, directories and atomic writes. */
function fileHelpers(): string {
    return `# Files belong to the app user. As root we chown; as the app user there is nothing to do.
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
`;
}

/**
 * Runs a command as the app user with its systemd user instance reachable:
 * `systemctl --user` needs the user's runtime dir and session bus, which a
 * non-login shell (runuser, sudo, ssh without a session) does not set.
 */
function asAppUser(): string {
    return `as_app_user() {
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
`;
}

export interface AgentFilesScriptInput {
    app: string;
    user: string;
    mtlsDir: string;
    caDir: string;
    agentKey: string;
    agentCert: string;
    caPem: string;
    /** PEM of the signed agent certificate (public). */
    agentCertPem: string;
    /** PEM bundle that verifies Vault's listener (public). */
    listenerCaPem: string;
}

/**
 * Writes the agent's mTLS files: key 0600 (from standard input), cert and CA
 * bundle 0644, all owned by the app user. The cert and CA are public; the key
 * never appears in the script.
 */
export function renderAgentFilesScript(i: AgentFilesScriptInput): string {
    return `${preamble(i.app, "write-agent-files", i.user)}${fileHelpers()}
AGENT_KEY=${shQuote(i.agentKey)}
AGENT_CERT=${shQuote(i.agentCert)}
CA_PEM=${shQuote(i.caPem)}
AGENT_CERT_PEM=${shQuote(i.agentCertPem.trim())}
LISTENER_CA_PEM=${shQuote(i.listenerCaPem.trim())}
ensure_dir ${shQuote(i.mtlsDir)} 0700
ensure_dir ${shQuote(i.caDir)} 0755
# The key comes first and from standard input only.
write_atomic "$AGENT_KEY" 0600
printf '%s\\n' "$AGENT_CERT_PEM" | write_atomic "$AGENT_CERT" 0644
printf '%s\\n' "$LISTENER_CA_PEM" | write_atomic "$CA_PEM" 0644
`;
}

export interface AgentConfigScriptInput {
    app: string;
    user: string;
    vaultDir: string;
    templatesDir: string;
    hooksDir: string;
    tlsDir: string;
    agentHcl: string;
    agentHclText: string;
    template: string;
    templateText: string;
    hook: string;
    hookText: string;
}

/** Installs agent.hcl (0640), the fullchain template (0640) and the post-hook (0750). */
export function renderAgentConfigScript(i: AgentConfigScriptInput): string {
    return `${preamble(i.app, "write-agent-config", i.user)}${fileHelpers()}
ensure_dir ${shQuote(i.vaultDir)} 0750
ensure_dir ${shQuote(i.templatesDir)} 0750
ensure_dir ${shQuote(i.hooksDir)} 0750
ensure_dir ${shQuote(i.tlsDir)} 0750
printf '%s' ${shQuote(i.agentHclText)} | write_atomic ${shQuote(i.agentHcl)} 0640
printf '%s' ${shQuote(i.templateText)} | write_atomic ${shQuote(i.template)} 0640
printf '%s' ${shQuote(i.hookText)} | write_atomic ${shQuote(i.hook)} 0750
`;
}

export interface MoveAsideScriptInput {
    app: string;
    user: string;
    fullchain: string;
    previousFullchain: string;
}

/**
 * Moves the current fullchain aside before the agent restarts: `pkiCert` reuses
 * a still-valid certificate from its destination file and would not reissue.
 * The moved file is the rollback copy the wait step restores on failure.
 */
export function renderMoveAsideScript(i: MoveAsideScriptInput): string {
    return `${preamble(i.app, "move-aside-fullchain")}
FULLCHAIN=${shQuote(i.fullchain)}
PREVIOUS=${shQuote(i.previousFullchain)}
if [ -f "$FULLCHAIN" ]; then
  mv -f -- "$FULLCHAIN" "$PREVIOUS" || fail "cannot move $FULLCHAIN aside"
  log "moved $FULLCHAIN to $PREVIOUS"
else
  log "no $FULLCHAIN yet (first rotation)"
fi
`;
}

export interface RestartScriptInput {
    app: string;
    user: string;
    service: string;
}

/** Restarts the agent's systemd user service as the app user. */
export function renderRestartScript(i: RestartScriptInput): string {
    return `${preamble(i.app, "restart-agent", i.user)}${asAppUser()}SERVICE=${shQuote(i.service)}
as_app_user systemctl --user restart "$SERVICE" || fail "systemctl --user restart $SERVICE failed; look at: journalctl --user -u $SERVICE (as $APP_USER)"
log "restarted $SERVICE"
`;
}

/**
 * `reported`: the post-hook's report ($STATUS) is about the current fullchain
 * ($FULLCHAIN). The hook writes it after each render, so a report older than
 * the fullchain is the last rotation's. (find -newer: POSIX, and finer than a
 * second where the filesystem is.)
 */
function reportedHelper(): string {
    return `reported() { [ -f "$STATUS" ] && [ -f "$FULLCHAIN" ] && [ -z "$(find "$FULLCHAIN" -prune -newer "$STATUS")" ]; }
`;
}

export interface WaitScriptInput {
    app: string;
    user: string;
    service: string;
    fullchain: string;
    previousFullchain: string;
    reloadStatus: string;
    waitSeconds: number;
}

/**
 * Waits, bounded, for the agent to render a new fullchain and for the post-hook
 * to report on the reload that follows it (issue -> write -> reload). When no
 * fullchain appears in time, the previous one is put back so the frontend keeps
 * a working certificate.
 */
export function renderWaitScript(i: WaitScriptInput): string {
    return `${preamble(i.app, "wait-fullchain", i.user)}
FULLCHAIN=${shQuote(i.fullchain)}
PREVIOUS=${shQuote(i.previousFullchain)}
STATUS=${shQuote(i.reloadStatus)}
SERVICE=${shQuote(i.service)}
WAIT_SECONDS=${i.waitSeconds}
rendered() { [ -s "$FULLCHAIN" ] && grep -q -- '-----BEGIN CERTIFICATE-----' "$FULLCHAIN"; }
${reportedHelper()}waited=0
while [ "$waited" -lt "$WAIT_SECONDS" ]; do
  if rendered && reported; then
    log "new fullchain rendered and post-hook reported after \${waited}s"
    exit 0
  fi
  sleep 1
  waited=$((waited + 1))
done
if rendered; then
  fail "the new fullchain is in place but the post-hook did not report within \${WAIT_SECONDS}s; look at: journalctl --user -u $SERVICE (as $APP_USER)"
fi
if [ -f "$PREVIOUS" ] && [ ! -s "$FULLCHAIN" ]; then
  mv -f -- "$PREVIOUS" "$FULLCHAIN" && log "restored the previous fullchain to $FULLCHAIN"
fi
fail "no new fullchain at $FULLCHAIN after \${WAIT_SECONDS}s; look at: journalctl --user -u $SERVICE (as $APP_USER), then re-run pulumi up"
`;
}

export interface ReadHostStateScriptInput {
    app: string;
    user: string;
    service: string;
    fullchain: string;
    previousFullchain: string;
    reloadStatus: string;
}

/**
 * Prints the public facts the rotation check needs, in marked sections:
 * the certificate blocks of the fullchain and of the previous one (never their
 * key blocks), the post-hook's report on the reload after this render, the
 * service state and the agent's `vault version`.
 */
export function renderReadHostStateScript(i: ReadHostStateScriptInput): string {
    return `${preamble(i.app, "read-host-state", i.user)}${asAppUser()}FULLCHAIN=${shQuote(i.fullchain)}
PREVIOUS=${shQuote(i.previousFullchain)}
STATUS=${shQuote(i.reloadStatus)}
SERVICE=${shQuote(i.service)}
# Only CERTIFICATE blocks leave the host: the fullchain file also holds the key.
certs_only() {
  if [ -f "$1" ]; then awk '/-----BEGIN CERTIFICATE-----/{p=1} p{print} /-----END CERTIFICATE-----/{p=0}' "$1"; fi
}
echo '### fullchain'
certs_only "$FULLCHAIN"
echo '### previous'
certs_only "$PREVIOUS"
${reportedHelper()}echo '### reload'
if reported; then head -n 1 "$STATUS"; fi
echo '### service'
as_app_user systemctl --user is-active "$SERVICE" 2>/dev/null || true
echo '### agent-version'
vault version 2>/dev/null | head -n 1 || true
echo '### end'
`;
}

export interface ReloadHookInput {
    app: string;
    label: string;
    proxy?: string;
    signal: string;
    /** Where the hook reports its last run (read back by the rotation check). */
    statusFile: string;
}

/**
 * The post-render hook: signal every podman container carrying the label, then
 * the edge proxy (once, even if it also carries the label). Exits non-zero when
 * any reload fails, so the agent logs the failure; no match is not an error.
 * Its one-line report (`result=ok|failed reloaded=... failed=...`) lets the
 * rotation check verify that a reload followed the render.
 */
export function renderReloadHook(i: ReloadHookInput): string {
    return `#!/bin/sh
# Managed by vault-rotation: runs after Vault Agent renders the ${i.app} fullchain.
set -u
APP=${shQuote(i.app)}
RELOAD_TLS_LABEL=${shQuote(i.label)}
PROXY_RELOAD=${shQuote(i.proxy ?? "")}
RELOAD_SIGNAL=${shQuote(i.signal)}
STATUS_FILE=${shQuote(i.statusFile)}
log() { printf 'reload-tls: %s: %s\\n' "$APP" "$*"; }
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
  printf 'result=%s reloaded=%s failed=%s\\n' "$1" "$list" "\${failed_names%,}" >"$tmp" && mv -f -- "$tmp" "$STATUS_FILE"
}
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
    proxy=\${PROXY_RELOAD#podman:}
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
`;
}
