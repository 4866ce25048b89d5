#!/usr/bin/env bash
# Installs the Pulumi resource provider plugins this program uses, vault and command,
# into a PULUMI_HOME of their own and prints that directory on stdout (last line);
# progress goes to stderr. Use it as `PULUMI_HOME="$(bash scripts/get-pulumi-plugins.sh ...)"`.
#
# Versions: the ones the Node.js SDKs ask the engine for, i.e. the versions of
# node_modules/@pulumi/{vault,command} (else the pins in package.json). A plugin goes in
# $PULUMI_HOME/plugins/resource-<name>-v<version>/pulumi-resource-<name>, next to a
# marker file (vault-rotation-plugin.info) saying what it was built or installed from.
#
# Order, for each plugin:
#   1. already in PULUMI_HOME with a matching marker: nothing to do;
#   2. a source was given (--vault-src/--tf-vault-src/--command-src, --snapshots, or the
#      VAULT_ROTATION_* variables below): built from it with Go;
#   3. else `pulumi plugin install` (a `pulumi` on PATH, or the CLI that
#      scripts/get-pulumi-engine.sh has already cached; it is never built from here),
#      which needs the Pulumi plugin registry / GitHub releases to be reachable.
# A source is a bare git directory (a snapshot: the tag is taken with `git archive`) or
# a checkout (built as it is, whatever is checked out).
#
# THE VAULT PLUGIN IS BUILT FROM pulumi-vault v7.7.0 BY DEFAULT, NOT v7.8.0, and installed
# as resource-vault-v7.8.0 (the directory @pulumi/vault 7.8.0 asks for). pulumi-vault
# v7.8.0 needs github.com/pulumi/pulumi-terraform-bridge/v3 v3.125.0, which the Go module
# proxy we build against does not serve; v7.7.0 (bridge v3.120.0) builds. --vault-tag
# overrides this. Version stamp: `-X .../pkg/version.Version=` is set to the version of the
# source that was built (7.7.0, not 7.8.0), so the binary reports what it is. The engine
# accepts it, but warns on each `pulumi up`/`preview`: "resource plugin vault is expected
# to have version >=7.8.0, but has 7.7.0; the wrong version may be on your path, or this
# may be a bug in the plugin". That is true, and we keep it visible rather than hide it.
#
# pulumi-vault builds against terraform-provider-vault: provider/go.mod has `replace
# github.com/hashicorp/terraform-provider-vault => ../upstream`, and `upstream` is a git
# submodule. We put terraform-provider-vault at the commit the pulumi-vault tree records
# for `upstream` there and apply pulumi-vault's patches/*.patch to it.
#
# The provider embeds its Pulumi schema (schema-embed.json, made from schema.json by
# `go run ./generate.go`, as the Makefile's schema target does; it sets the schema's version
# to the stamp). Snapshots can lack that large blob (ours has it at v7.7.0, not at v7.8.0);
# then we embed a minimal {"name":"vault","version":...} schema instead and say so. The
# Node.js SDK never asks a provider for its schema, so programs run the same; only tools
# that read the schema from the plugin (e.g. `pulumi package get-schema`) see the stub.
set -euo pipefail
# Before any cd: the path is relative to where the script was started.
# shellcheck source-path=SCRIPTDIR source=lib/heartbeat.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/heartbeat.sh"
REPO_ROOT="$(cd "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

CACHE_ROOT="${VAULT_ROTATION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-rotation}"
MARKER=vault-rotation-plugin.info

log() { printf 'get-pulumi-plugins: %s\n' "$*" >&2; }
die() { log "$@"; exit 1; }

usage() {
  cat <<EOF
Usage: bash scripts/get-pulumi-plugins.sh [options]

Installs the vault and command resource plugins into a PULUMI_HOME and prints its path.

  --pulumi-home DIR     install here (default: $CACHE_ROOT/pulumi-home;
                        the PULUMI_HOME variable is not read)
  --snapshots DIR       DIR holds pulumi+pulumi-vault/repo, hashicorp+terraform-provider-vault/repo
                        and pulumi+pulumi-command/repo (git directories)  [VAULT_ROTATION_PLUGIN_SNAPSHOTS]
  --vault-src DIR       pulumi-vault source                               [VAULT_ROTATION_PULUMI_VAULT_SRC]
  --tf-vault-src DIR    terraform-provider-vault source (not needed for a pulumi-vault
                        checkout whose upstream/ submodule is checked out) [VAULT_ROTATION_TF_VAULT_SRC]
  --command-src DIR     pulumi-command source                             [VAULT_ROTATION_PULUMI_COMMAND_SRC]
  --vault-tag TAG       pulumi-vault tag to build from a git directory (default for 7.8.0: v7.7.0)
  --command-tag TAG     pulumi-command tag to build from a git directory (default: v<version>)
  --force               rebuild / reinstall even if the plugins are in place
  -h, --help            this text

A source DIR is a bare git directory (a snapshot) or a checkout. Without sources, the
plugins are fetched with \`pulumi plugin install\`, which needs internet access.
EOF
}

PULUMI_HOME_DIR="$CACHE_ROOT/pulumi-home"
SNAPSHOTS="${VAULT_ROTATION_PLUGIN_SNAPSHOTS:-}"
VAULT_SRC="${VAULT_ROTATION_PULUMI_VAULT_SRC:-}"
TF_VAULT_SRC="${VAULT_ROTATION_TF_VAULT_SRC:-}"
COMMAND_SRC="${VAULT_ROTATION_PULUMI_COMMAND_SRC:-}"
VAULT_TAG="" COMMAND_TAG="" FORCE=""

while (($#)); do
  case "$1" in
    --pulumi-home | --snapshots | --vault-src | --tf-vault-src | --command-src | --vault-tag | --command-tag)
      (($# >= 2)) || die "$1 needs a value (see --help)"
      case "$1" in
        --pulumi-home) PULUMI_HOME_DIR="$2" ;;
        --snapshots) SNAPSHOTS="$2" ;;
        --vault-src) VAULT_SRC="$2" ;;
        --tf-vault-src) TF_VAULT_SRC="$2" ;;
        --command-src) COMMAND_SRC="$2" ;;
        --vault-tag) VAULT_TAG="$2" ;;
        --command-tag) COMMAND_TAG="$2" ;;
      esac
      shift 2
      ;;
    --force) FORCE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

pinned_version() { # npm package name (vault, command): the version the SDK asks for
  local installed="$REPO_ROOT/node_modules/@pulumi/$1/package.json" v
  if [[ -f "$installed" ]]; then
    v="$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$installed" | head -n 1)"
  else
    v="$(sed -n 's/^[[:space:]]*"@pulumi\/'"$1"'":[[:space:]]*"[=^~v]*\([^"]*\)".*/\1/p' "$REPO_ROOT/package.json" | head -n 1)"
  fi
  [[ "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot tell which @pulumi/$1 version to serve (got '$v')"
  printf '%s\n' "$v"
}

VAULT_VERSION="$(pinned_version vault)"
COMMAND_VERSION="$(pinned_version command)"
VAULT_TAG_GIVEN="$VAULT_TAG" COMMAND_TAG_GIVEN="$COMMAND_TAG"
if [[ -z "$VAULT_TAG" ]]; then
  case "$VAULT_VERSION" in
    7.8.0) VAULT_TAG=v7.7.0 ;; # v7.8.0's bridge (v3.125.0) is not served by our module proxy
    *) VAULT_TAG="v$VAULT_VERSION" ;;
  esac
fi
COMMAND_TAG="${COMMAND_TAG:-v$COMMAND_VERSION}"

if [[ -n "$SNAPSHOTS" ]]; then
  [[ -d "$SNAPSHOTS" ]] || die "--snapshots $SNAPSHOTS is not a directory"
  VAULT_SRC="${VAULT_SRC:-$SNAPSHOTS/pulumi+pulumi-vault/repo}"
  TF_VAULT_SRC="${TF_VAULT_SRC:-$SNAPSHOTS/hashicorp+terraform-provider-vault/repo}"
  COMMAND_SRC="${COMMAND_SRC:-$SNAPSHOTS/pulumi+pulumi-command/repo}"
fi
PLUGINS="$PULUMI_HOME_DIR/plugins"

plugin_dir() { printf '%s\n' "$PLUGINS/resource-$1-v$2"; } # name version

installed() { # name version tag-asked-for-or-empty: true when in place with a matching marker
  local dir
  dir="$(plugin_dir "$1" "$2")"
  [[ -x "$dir/pulumi-resource-$1" && -f "$dir/$MARKER" && ! -e "$dir.partial" ]] &&
    grep -qx "plugin=$1" "$dir/$MARKER" && grep -qx "installed_as_version=$2" "$dir/$MARKER" &&
    { [[ -z "$3" ]] || grep -qx "source_version=$3" "$dir/$MARKER"; }
}

# --- 1. already installed -----------------------------------------------------------------
need_vault=1 need_command=1
if [[ -z "$FORCE" ]]; then
  if installed vault "$VAULT_VERSION" "$VAULT_TAG_GIVEN"; then need_vault=""; fi
  if installed command "$COMMAND_VERSION" "$COMMAND_TAG_GIVEN"; then need_command=""; fi
fi
if [[ -z "$need_vault$need_command" ]]; then
  for n in "vault $VAULT_VERSION" "command $COMMAND_VERSION"; do
    # shellcheck disable=SC2086 # "name version"
    set -- $n
    log "resource-$1-v$2 already installed ($(grep '^source_summary=' "$(plugin_dir "$1" "$2")/$MARKER" | cut -d= -f2-))"
  done
  printf '%s\n' "$PULUMI_HOME_DIR"
  exit 0
fi

# --- plan: which missing plugin comes from source, which from `pulumi plugin install` -------
check_src() { # flag dir
  [[ -d "$2" ]] || die "$1 $2: no such directory"
}
[[ -z "$VAULT_SRC" ]] || check_src --vault-src "$VAULT_SRC"
[[ -z "$TF_VAULT_SRC" ]] || check_src --tf-vault-src "$TF_VAULT_SRC"
[[ -z "$COMMAND_SRC" ]] || check_src --command-src "$COMMAND_SRC"

PULUMI_CLI=""
find_pulumi_cli() { # a pulumi on PATH, else one that get-pulumi-engine.sh has cached (never builds one)
  local c
  if command -v pulumi >/dev/null 2>&1; then PULUMI_CLI="$(command -v pulumi)"; return 0; fi
  while IFS= read -r c; do
    if [[ -x "$c" ]] && "$c" version >/dev/null 2>&1; then PULUMI_CLI="$c"; return 0; fi
  done < <(printf '%s\n' "$CACHE_ROOT"/pulumi-engine/cli-*/pulumi | sort -rV)
  return 1
}
if { [[ -n "$need_vault" && -z "$VAULT_SRC" ]] || [[ -n "$need_command" && -z "$COMMAND_SRC" ]]; } &&
  ! find_pulumi_cli; then
  log "no source to build the plugins from, and no pulumi CLI to fetch them with"
  log "(none on PATH, none cached by scripts/get-pulumi-engine.sh)."
  log "Without internet access, build them from source:"
  log "  bash scripts/get-pulumi-plugins.sh --snapshots DIR"
  log "  (DIR/pulumi+pulumi-vault/repo, DIR/hashicorp+terraform-provider-vault/repo, DIR/pulumi+pulumi-command/repo)"
  log "or --vault-src DIR --tf-vault-src DIR --command-src DIR (git directories or checkouts). See --help."
  exit 1
fi

mkdir -p "$CACHE_ROOT" "$PLUGINS"
WORK="$(mktemp -d "$CACHE_ROOT/plugins-build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

install_dir() { # staged-dir name version: atomic install of a plugin directory
  local dest
  dest="$(plugin_dir "$2" "$3")"
  rm -rf "$dest.tmp"
  mv "$1" "$dest.tmp"
  rm -rf "$dest" "$dest.partial"
  mv "$dest.tmp" "$dest"
  log "installed $dest/pulumi-resource-$2"
}

answers() { # binary: true when it starts serving (a provider prints its port, then waits)
  local out pid i port
  out="$(mktemp "$WORK/answer.XXXXXX")"
  "$1" </dev/null >"$out" 2>"$out.err" &
  pid=$!
  for ((i = 0; i < 60; i++)); do
    [[ -s "$out" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  port="$(head -n 1 "$out")"
  if [[ ! "$port" =~ ^[0-9]+$ ]]; then
    log "$1 did not print a port within 30 s; its output:"
    cat "$out" "$out.err" >&2
    return 1
  fi
  log "$(basename "$1") answers (serves on port $port)"
}

# --- 2. from source -------------------------------------------------------------------------
is_git_dir() { [[ -f "$1/HEAD" && -d "$1/objects" ]]; }

only_git() { # dir: true when .git is all it holds
  local f
  for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    [[ -e "$f" && "$f" != "$1/.git" ]] && return 1
  done
  return 0
}

git_dir_of() { # src: the git directory to archive from, or nothing for a checkout to copy as is
  if is_git_dir "$1"; then
    printf '%s\n' "$1"
  elif [[ -d "$1/.git" ]] && is_git_dir "$1/.git" && only_git "$1"; then
    printf '%s\n' "$1/.git" # a clone whose work tree was not kept
  fi
}

missing_blobs() { # git-dir commit: the paths whose blobs the git directory lacks
  local shas
  shas="$(git --git-dir="$1" ls-tree -r --format='%(objecttype) %(objectname)' "$2" |
    awk '$1 == "blob" { print $2 }' | git --git-dir="$1" cat-file --batch-check | awk '$2 == "missing" { print $1 }')"
  [[ -n "$shas" ]] || return 0
  git --git-dir="$1" ls-tree -r --format='%(objectname) %(path)' "$2" |
    awk 'NR == FNR { m[$1] = 1; next } ($1 in m) { print substr($0, index($0, " ") + 1) }' <(printf '%s\n' "$shas") -
}

# materialize src rev dest: a copy of src's tree at rev (git directory) or of the checkout.
# Sets SRC_COMMIT, SRC_VERSION (the tag / describe) and SRC_KIND.
materialize() {
  local src=$1 rev=$2 dest=$3 gd head missing=() p
  mkdir -p "$dest"
  gd="$(git_dir_of "$src")"
  if [[ -n "$gd" ]]; then
    SRC_KIND="git directory"
    SRC_COMMIT="$(git --git-dir="$gd" rev-parse --verify --quiet "$rev^{commit}")" ||
      die "$src has no $rev"
    SRC_VERSION="$rev"
    # A snapshot may lack some large blobs: leave them out of the archive, say which.
    while IFS= read -r p; do missing+=("$p"); done < <(missing_blobs "$gd" "$SRC_COMMIT")
    for p in "${missing[@]}"; do log "WARNING: $src lacks the blob of $p at $rev; left out"; done
    # (git archive still complains about a missing blob it leaves out: drop that line.)
    git --git-dir="$gd" archive --format=tar "$SRC_COMMIT" -- . "${missing[@]/#/:(exclude,literal)}" \
      2> >(grep -v '^error: invalid object ' >&2 || true) | tar -x -C "$dest"
  else
    SRC_KIND="checkout"
    SRC_COMMIT="unknown (not a git checkout)" SRC_VERSION="unknown"
    if head="$(git -C "$src" rev-parse --verify --quiet HEAD 2>/dev/null)"; then
      SRC_COMMIT="$head"
      SRC_VERSION="$(git -C "$src" describe --tags --always --dirty 2>/dev/null || printf '%s' "$head")"
      if [[ "$(git -C "$src" rev-parse --verify --quiet "$rev^{commit}" 2>/dev/null)" != "$head" ]]; then
        log "WARNING: the checkout $src is at $SRC_VERSION, not $rev; building it as it is"
      fi
    else
      log "WARNING: $src is not a git checkout; building it as it is"
    fi
    tar -C "$src" --exclude=.git -cf - . | tar -x -C "$dest"
  fi
  chmod -R u+w "$dest"
}

check_local_replaces() { # in a provider/ directory: local replaces must point at copied dirs
  local path target
  while read -r path target; do
    if [[ -f "$target/go.mod" ]]; then
      log "go.mod: replace $path => $target (present in the copied tree)"
    else
      log "go.mod: replace $path => $target is not in the copied tree; dropping it (using the required version)"
      go mod edit -dropreplace="$path"
    fi
  done < <(sed -n 's/^\(replace\)\{0,1\}[[:space:]]*\([^[:space:]()]\{1,\}\)\( v[^[:space:]]*\)\{0,1\}[[:space:]]\{1,\}=>[[:space:]]\{1,\}\(\.\{1,2\}\/[^[:space:]]*\)[[:space:]]*$/\2 \4/p' go.mod)
}

go_build() { # what name version-stamp out: build ./cmd/pulumi-resource-<name> in the current provider/
  local module
  module="$(sed -n 's/^module[[:space:]]\{1,\}\([^[:space:]]\{1,\}\).*/\1/p' go.mod)"
  [[ -n "$module" ]] || die "no module line in $(pwd)/go.mod"
  with_heartbeat "$1" nice -n 10 env GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X $module/pkg/version.Version=$3" -o "$4" "./cmd/pulumi-resource-$2"
}

apply_patches() { # patches-dir target-dir: git apply each non-empty patch, skip already applied ones
  local p
  for p in "$1"/*.patch; do
    [[ -e "$p" ]] || continue
    if ! grep -q '^diff --git ' "$p"; then log "patch $(basename "$p"): empty, skipped"; continue; fi
    if git -C "$2" apply --check "$p" 2>/dev/null; then
      git -C "$2" apply "$p"
      log "patch $(basename "$p"): applied to upstream"
    elif git -C "$2" apply --reverse --check "$p" 2>/dev/null; then
      log "patch $(basename "$p"): already applied to upstream"
    else
      die "patch $(basename "$p") does not apply to upstream"
    fi
  done
}

write_marker() { # file key=value...
  local f=$1
  shift
  printf '%s\n' "$@" "go_version=$(go env GOVERSION)" "installed_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$f"
}

build_command() {
  local src="$WORK/command" started=$SECONDS stamp
  log "building the command plugin $COMMAND_VERSION from pulumi-command $COMMAND_TAG ($COMMAND_SRC)"
  materialize "$COMMAND_SRC" "$COMMAND_TAG" "$src"
  stamp="${COMMAND_TAG#v}"
  [[ "$SRC_KIND" == checkout ]] && [[ "$SRC_VERSION" =~ ^v?[0-9]+\.[0-9]+\.[0-9]+$ ]] && stamp="${SRC_VERSION#v}"
  cd "$src/provider"
  check_local_replaces
  mkdir -p "$WORK/out-command"
  go_build "compiling pulumi-resource-command" command "$stamp" "$WORK/out-command/pulumi-resource-command"
  answers "$WORK/out-command/pulumi-resource-command" || die "the built pulumi-resource-command does not start"
  write_marker "$WORK/out-command/$MARKER" plugin=command "installed_as_version=$COMMAND_VERSION" \
    "source=build" "source_repo=github.com/pulumi/pulumi-command" "source_dir=$COMMAND_SRC ($SRC_KIND)" \
    "source_version=$COMMAND_TAG" "source_commit=$SRC_COMMIT" "source_describe=$SRC_VERSION" \
    "version_stamp=$stamp" "source_summary=built from pulumi-command $SRC_VERSION ($SRC_COMMIT)"
  install_dir "$WORK/out-command" command "$COMMAND_VERSION"
  log "command plugin: built in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
  cd "$WORK"
}

build_vault() {
  local src="$WORK/vault" started=$SECONDS gd up_commit="" stamp schema_kind tf_summary cmd
  log "building the vault plugin for @pulumi/vault $VAULT_VERSION FROM pulumi-vault $VAULT_TAG ($VAULT_SRC)"
  if [[ "v$VAULT_VERSION" != "$VAULT_TAG" ]]; then
    log "NOTE: source v${VAULT_TAG#v} is installed as resource-vault-v$VAULT_VERSION, the version the SDK asks for"
    log "      (pulumi-vault v7.8.0 needs pulumi-terraform-bridge v3.125.0, which the Go proxy does not serve)"
  fi
  materialize "$VAULT_SRC" "$VAULT_TAG" "$src"
  local v_kind=$SRC_KIND v_commit=$SRC_COMMIT v_describe=$SRC_VERSION
  stamp="${VAULT_TAG#v}"
  [[ "$v_kind" == checkout ]] && [[ "$v_describe" =~ ^v?[0-9]+\.[0-9]+\.[0-9]+$ ]] && stamp="${v_describe#v}"

  # upstream/: terraform-provider-vault at the commit the pulumi-vault tree records.
  gd="$(git_dir_of "$VAULT_SRC")"
  if [[ -n "$gd" ]]; then
    up_commit="$(git --git-dir="$gd" ls-tree "$v_commit" upstream | awk '$2 == "commit" { print $3 }')"
  elif git -C "$VAULT_SRC" rev-parse --verify --quiet HEAD >/dev/null 2>&1; then
    up_commit="$(git -C "$VAULT_SRC" ls-tree HEAD upstream | awk '$2 == "commit" { print $3 }')"
  fi
  if [[ -n "$TF_VAULT_SRC" ]]; then
    [[ -n "$up_commit" ]] || die "cannot tell which terraform-provider-vault commit $VAULT_SRC records for upstream/"
    log "terraform-provider-vault at $up_commit (the upstream/ submodule of pulumi-vault $v_describe) from $TF_VAULT_SRC"
    rm -rf "$src/upstream"
    materialize "$TF_VAULT_SRC" "$up_commit" "$src/upstream"
    tf_summary="$SRC_COMMIT"
  elif [[ -f "$src/upstream/go.mod" ]]; then
    log "using the upstream/ checked out in $VAULT_SRC"
    tf_summary="${up_commit:-unknown} (upstream/ of the checkout)"
  else
    die "pulumi-vault's upstream/ (terraform-provider-vault${up_commit:+ at $up_commit}) is empty: give --tf-vault-src DIR"
  fi
  # git apply needs a repository to apply paths relative to upstream/ itself.
  [[ -e "$src/upstream/.git" ]] || { git -C "$src/upstream" init -q && local tmp_git=1; }
  apply_patches "$src/patches" "$src/upstream"
  [[ -z "${tmp_git:-}" ]] || rm -rf "$src/upstream/.git"

  cd "$src/provider"
  check_local_replaces
  [[ -f ../upstream/go.mod ]] || die "upstream/go.mod is missing"

  # schema-embed.json: what `go generate` (./generate.go) makes from schema.json, with our
  # version stamp; a stub when the snapshot lacks schema.json.
  cmd="cmd/pulumi-resource-vault"
  if [[ -s "$cmd/schema.json" ]]; then
    schema_kind="full (schema.json of pulumi-vault $v_describe, version set to $stamp by generate.go)"
    (cd "$cmd" && with_heartbeat "generating schema-embed.json (go run ./generate.go)" \
      nice -n 10 env GOFLAGS="-mod=mod -buildvcs=false" VERSION="$stamp" go run ./generate.go)
  else
    schema_kind="minimal stub (the source lacks schema.json)"
    log "WARNING: no $cmd/schema.json in the source: embedding a minimal schema {\"name\":\"vault\",\"version\":\"$stamp\"}"
    log "         (the Node.js SDK never asks a provider for its schema; schema tools would see the stub)"
    printf '{"name":"vault","version":"%s"}\n' "$stamp" >"$cmd/schema.json"
    cp "$cmd/schema.json" "$cmd/schema-embed.json"
  fi

  mkdir -p "$WORK/out-vault"
  go_build "compiling pulumi-resource-vault" vault "$stamp" "$WORK/out-vault/pulumi-resource-vault"
  answers "$WORK/out-vault/pulumi-resource-vault" || die "the built pulumi-resource-vault does not start"
  write_marker "$WORK/out-vault/$MARKER" plugin=vault "installed_as_version=$VAULT_VERSION" \
    "source=build" "source_repo=github.com/pulumi/pulumi-vault" "source_dir=$VAULT_SRC ($v_kind)" \
    "source_version=$VAULT_TAG" "source_commit=$v_commit" "source_describe=$v_describe" \
    "upstream_repo=github.com/hashicorp/terraform-provider-vault" "upstream_commit=$tf_summary" \
    "version_stamp=$stamp" "schema=$schema_kind" \
    "source_summary=built from pulumi-vault $v_describe ($v_commit), NOT $VAULT_VERSION; binary reports $stamp"
  install_dir "$WORK/out-vault" vault "$VAULT_VERSION"
  log "vault plugin: built in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
  cd "$WORK"
}

# --- 3. from the plugin registry --------------------------------------------------------------
registry_install() { # name version
  local stage="$WORK/home-$1" dir
  log "installing resource $1 $2 with $PULUMI_CLI plugin install (needs internet access)"
  if ! PULUMI_HOME="$stage" PULUMI_SKIP_UPDATE_CHECK=true timeout 600 \
    "$PULUMI_CLI" plugin install resource "$1" "$2" >&2; then
    log "\`pulumi plugin install resource $1 $2\` failed (is the Pulumi plugin registry / GitHub reachable?)."
    log "Without internet access, build the plugins from source instead:"
    log "  bash scripts/get-pulumi-plugins.sh --snapshots DIR      (see --help for --vault-src, --tf-vault-src, --command-src)"
    exit 1
  fi
  dir="$stage/plugins/resource-$1-v$2"
  [[ -x "$dir/pulumi-resource-$1" ]] || die "pulumi plugin install left no $dir/pulumi-resource-$1"
  write_marker "$dir/$MARKER" "plugin=$1" "installed_as_version=$2" "source=pulumi plugin install" \
    "source_version=v$2" "source_summary=installed by pulumi plugin install ($("$PULUMI_CLI" version))"
  install_dir "$dir" "$1" "$2"
}

cd "$WORK"
if [[ -n "$need_command" ]]; then
  if [[ -n "$COMMAND_SRC" ]]; then build_command; else registry_install command "$COMMAND_VERSION"; fi
else
  log "resource-command-v$COMMAND_VERSION already installed"
fi
if [[ -n "$need_vault" ]]; then
  if [[ -n "$VAULT_SRC" ]]; then build_vault; else registry_install vault "$VAULT_VERSION"; fi
else
  log "resource-vault-v$VAULT_VERSION already installed"
fi

for n in "vault $VAULT_VERSION" "command $COMMAND_VERSION"; do
  # shellcheck disable=SC2086 # "name version"
  set -- $n
  installed "$1" "$2" "" || die "resource-$1-v$2 is not in place after the install"
done
log "plugins in $PLUGINS:"
ls -1 "$PLUGINS" >&2
printf '%s\n' "$PULUMI_HOME_DIR"
