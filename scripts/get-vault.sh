#!/usr/bin/env bash
# Prints the path of a usable `vault` binary on stdout; progress goes to stderr.
#
# Order: $VAULT_BIN, then `vault` on PATH, then a cached build of HashiCorp Vault
# from its Go module (built once, reused while the version matches).
#
# Why the build is done in a copy: the module's go.mod has `replace` directives
# pointing at nested modules (./api, ./sdk, ...) that are separate modules and so
# are not in the module zip. We drop those replaces so Go uses the published
# versions that the `require` block names.
set -euo pipefail
# Before any cd: the path is relative to where the script was started.
# shellcheck source-path=SCRIPTDIR source=lib/heartbeat.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/heartbeat.sh"

# 1.21.0 is the newest release whose published api/sdk modules (api v1.22.0,
# sdk v0.20.0, the versions its go.mod requires) compile with it unpatched. The
# 1.20.x tags need sdk APIs that were never published as an sdk version (the
# proxy has only sdk v0.18.0/v0.19.0 around them, and neither compiles 1.20.4).
VAULT_VERSION="${VAULT_VERSION:-1.21.0}"
CACHE_ROOT="${VAULT_ROTATION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-rotation}"
BIN_DIR="$CACHE_ROOT/vault-$VAULT_VERSION"
BIN="$BIN_DIR/vault"

log() { printf 'get-vault: %s\n' "$*" >&2; }

if [[ -n "${VAULT_BIN:-}" ]]; then
  if [[ -x "$VAULT_BIN" ]]; then printf '%s\n' "$VAULT_BIN"; exit 0; fi
  log "VAULT_BIN=$VAULT_BIN is not an executable file"; exit 1
fi

if command -v vault >/dev/null 2>&1; then
  command -v vault; exit 0
fi

if [[ -x "$BIN" ]] && "$BIN" version 2>/dev/null | grep -q "Vault v$VAULT_VERSION"; then
  printf '%s\n' "$BIN"; exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "no vault binary found and Go is not installed."
  log "Install Go (https://go.dev/doc/install) or put a vault $VAULT_VERSION binary on PATH / in VAULT_BIN."
  exit 1
fi

log "building Vault v$VAULT_VERSION from its Go module into $BIN_DIR (first run only; this takes many minutes)"
mkdir -p "$CACHE_ROOT"
WORK="$(mktemp -d "$CACHE_ROOT/build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

log "downloading github.com/hashicorp/vault@v$VAULT_VERSION"
SRC="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/vault@v$VAULT_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$SRC" || ! -d "$SRC" ]]; then log "could not download the Vault module"; exit 1; fi

cp -r "$SRC" "$WORK/src"
chmod -R u+w "$WORK/src"
cd "$WORK/src"

# Drop every replace that points at a local directory (the nested modules).
sed -n 's/^replace[[:space:]]\{1,\}\([^[:space:]]\{1,\}\)[[:space:]]\{1,\}=>[[:space:]]\{1,\}\.\/.*/\1/p' go.mod > "$WORK/local-replaces"
while read -r path; do
  log "dropping replace $path => ./... (nested module, not in the zip)"
  go mod edit -dropreplace="$path"
done < "$WORK/local-replaces"
if grep -qE '=>[[:space:]]*\./' go.mod; then
  log "go.mod still has local replace directives:"; grep -E '=>[[:space:]]*\./' go.mod >&2; exit 1
fi


log "resolving dependencies"
with_heartbeat "resolving dependencies" env GOFLAGS=-mod=mod go mod download
log "compiling (uses all cores)"
with_heartbeat "compiling Vault" env GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$WORK/vault" .

mkdir -p "$BIN_DIR"
mv "$WORK/vault" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
"$BIN" version >&2
printf '%s\n' "$BIN"
