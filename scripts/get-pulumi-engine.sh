#!/usr/bin/env bash
# Prints the path of a directory holding a Pulumi engine for Node.js dynamic-resource
# programs: `pulumi` (the CLI), `pulumi-language-nodejs` (the language host) and
# `pulumi-resource-pulumi-nodejs` (the dynamic provider plugin). Progress goes to
# stderr. Used by scripts/bench-engine.ts; put the directory first on PATH.
#
# Order: $PULUMI_ENGINE_DIR, then a cached build (reused while the versions match),
# else a build from the Go modules (first run only; many minutes on 2 cores).
# With --cached-only it never builds: it prints the directory or fails in one line.
#
# Versions: the CLI is the newest github.com/pulumi/pulumi/pkg/v3 the Go module proxy
# serves here. The Node.js language host left the sdk/v3 module after v3.68.0 (it
# became a module of its own, not served here), so it is built from sdk/v3@v3.68.0.
# It only starts `node .../@pulumi/pulumi/cmd/run`, which resolves against the
# program's node_modules, so the Node.js SDK that runs is the program's own.
#
# Why the builds are done in copies: pkg/v3's go.mod has `replace
# github.com/pulumi/pulumi/sdk/v3 => ../sdk`, a directory that is not in the module
# zip. We drop that replace so Go uses the published sdk/v3 its `require` names
# (the same pattern as scripts/get-vault.sh).
set -euo pipefail
# Before any cd: the path is relative to where the script was started.
# shellcheck source-path=SCRIPTDIR source=lib/heartbeat.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/heartbeat.sh"

PULUMI_CLI_VERSION="${PULUMI_CLI_VERSION:-3.274.1}"
NODEJS_HOST_VERSION="${NODEJS_HOST_VERSION:-3.68.0}"
CACHE_ROOT="${VAULT_ROTATION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-rotation}"
BIN_DIR="$CACHE_ROOT/pulumi-engine/cli-$PULUMI_CLI_VERSION-nodejs-$NODEJS_HOST_VERSION"

log() { printf 'get-pulumi-engine: %s\n' "$*" >&2; }

complete() { # dir: true when the three programs are there and the CLI is the right version
  [[ -x "$1/pulumi" && -x "$1/pulumi-language-nodejs" && -x "$1/pulumi-resource-pulumi-nodejs" ]] &&
    "$1/pulumi" version 2>/dev/null | grep -qx "v$PULUMI_CLI_VERSION"
}

if [[ -n "${PULUMI_ENGINE_DIR:-}" ]]; then
  if [[ -x "$PULUMI_ENGINE_DIR/pulumi" && -x "$PULUMI_ENGINE_DIR/pulumi-language-nodejs" &&
    -x "$PULUMI_ENGINE_DIR/pulumi-resource-pulumi-nodejs" ]]; then
    printf '%s\n' "$PULUMI_ENGINE_DIR"; exit 0
  fi
  log "PULUMI_ENGINE_DIR=$PULUMI_ENGINE_DIR lacks pulumi, pulumi-language-nodejs or pulumi-resource-pulumi-nodejs"
  exit 1
fi

if complete "$BIN_DIR"; then
  printf '%s\n' "$BIN_DIR"; exit 0
fi

# --cached-only: report, never build (the engine tests ask this way).
if [[ "${1:-}" == "--cached-only" ]]; then
  log "no Pulumi engine in $BIN_DIR: run scripts/get-pulumi-engine.sh once (it builds the CLI; many minutes)"
  exit 1
fi

if ! command -v go >/dev/null 2>&1; then
  log "no cached Pulumi engine in $BIN_DIR and Go is not installed."
  log "Install Go (https://go.dev/doc/install), or set PULUMI_ENGINE_DIR to a directory holding"
  log "pulumi, pulumi-language-nodejs and pulumi-resource-pulumi-nodejs."
  exit 1
fi

mkdir -p "$CACHE_ROOT/pulumi-engine"
WORK="$(mktemp -d "$CACHE_ROOT/pulumi-engine/build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT


module_copy() { # module version dest: a writable copy of the module's source in dest
  local dir
  log "downloading $1@v$2"
  dir="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "$1@v$2" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$dir" || ! -d "$dir" ]]; then log "could not download $1@v$2"; return 1; fi
  cp -r "$dir" "$3"
  chmod -R u+w "$3"
}

drop_local_replaces() { # in the current directory's go.mod
  sed -n 's/^replace[[:space:]]\{1,\}\([^[:space:]]\{1,\}\)[[:space:]]\{1,\}=>[[:space:]]\{1,\}\.\{1,2\}\/.*/\1/p' go.mod \
    >"$WORK/local-replaces"
  while read -r path; do
    log "dropping replace $path => local directory (not in the module zip)"
    go mod edit -dropreplace="$path"
  done <"$WORK/local-replaces"
  if grep -qE '=>[[:space:]]*\.\.?/' go.mod; then
    log "go.mod still has local replace directives:"; grep -E '=>[[:space:]]*\.\.?/' go.mod >&2; return 1
  fi
}

log "building the Pulumi engine (CLI v$PULUMI_CLI_VERSION, Node.js language host v$NODEJS_HOST_VERSION)"
log "into $BIN_DIR (first run only; this takes many minutes)"

module_copy github.com/pulumi/pulumi/pkg/v3 "$PULUMI_CLI_VERSION" "$WORK/pkg"
module_copy github.com/pulumi/pulumi/sdk/v3 "$NODEJS_HOST_VERSION" "$WORK/sdk"

cd "$WORK/pkg"
drop_local_replaces
with_heartbeat "resolving the CLI's dependencies" nice -n 10 env GOFLAGS=-mod=mod go mod download
with_heartbeat "compiling the Pulumi CLI" nice -n 10 env GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_CLI_VERSION" \
  -o "$WORK/out/pulumi" ./cmd/pulumi

cd "$WORK/sdk"
drop_local_replaces
with_heartbeat "resolving the language host's dependencies" nice -n 10 env GOFLAGS=-mod=mod go mod download
with_heartbeat "compiling pulumi-language-nodejs" nice -n 10 env GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$NODEJS_HOST_VERSION" \
  -o "$WORK/out/pulumi-language-nodejs" ./nodejs/cmd/pulumi-language-nodejs
# The dynamic provider plugin is a shell script that runs the @pulumi/pulumi dynamic
# provider that `require.resolve` finds from the plugin's working directory (the program's).
cp nodejs/dist/pulumi-resource-pulumi-nodejs "$WORK/out/"
chmod 755 "$WORK/out/pulumi-resource-pulumi-nodejs"

rm -rf "$BIN_DIR.tmp"
mv "$WORK/out" "$BIN_DIR.tmp"
rm -rf "$BIN_DIR"
mv "$BIN_DIR.tmp" "$BIN_DIR"
if ! complete "$BIN_DIR"; then
  log "the build finished but $BIN_DIR/pulumi does not report v$PULUMI_CLI_VERSION:"
  "$BIN_DIR/pulumi" version >&2 || true
  exit 1
fi
log "pulumi $("$BIN_DIR/pulumi" version)"
printf '%s\n' "$BIN_DIR"
