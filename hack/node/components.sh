#!/usr/bin/env bash
# Provides everything the single-node test cluster runs (hack/node/cluster.sh) and prints the
# directory holding the built binaries on stdout; every other message goes to stderr.
#
#   hack/node/components.sh          # install/build what is missing, print the directory
#   hack/node/components.sh --check  # install nothing; exit 1 naming what is missing
#
# Built into ${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/node/<KUBE_VERSION>/, outside
# the repository, the way hack/envtest.sh builds kube-apiserver:
#   kubelet, kube-proxy,     one `go build` of the k8s.io/kubernetes module (the version of
#   kube-controller-manager, hack/envtest.sh, its staging modules replaced by their published
#   kube-scheduler           releases); kube-apiserver, etcd and kubectl come from hack/envtest.sh
#   containerd, ctr,         the Go module github.com/containerd/containerd/v2: Kubernetes 1.35
#   containerd-shim-runc-v2  was announced as the last release to support containerd 1.x (Debian
#                            has 1.6.20)
#   coredns                  github.com/coredns/coredns with only the plugins the cluster DNS
#                            uses (hack/node/coredns/main.go; no forward plugin)
#   pause                    the sandbox ("pause") container of k8s.io/kubernetes
#                            (build/pause/linux/pause.c in the module), compiled statically
# From Debian (apt-get, when missing): runc (1.1.5; works with containerd 2.2 here),
# containernetworking-plugins (bridge, host-local, loopback, portmap), buildah (the image
# builds), iptables, conntrack, iproute2, util-linux (nsenter), openssl, curl, gcc and libc6-dev
# (pause), ca-certificates.
#
# Build times are appended to build-times.tsv next to the version directory. With the Go build
# cache warm from hack/envtest.sh's kube-apiserver (most packages are shared), the four node
# components took 57 s; later runs only check `--version` of the cached binaries (under 1 s).
# Safe to run concurrently (a lock serialises builds). Needs root for apt-get.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

# ---- pinned versions --------------------------------------------------------------------------
# The Kubernetes version is hack/envtest.sh's, so the node runs the apiserver the tests build.
KUBE_VERSION="$(sed -nE 's/^KUBE_VERSION="([0-9.]+)".*/\1/p' "$repo/hack/envtest.sh")"
STAGING_VERSION="$(sed -nE 's/^STAGING_VERSION="([0-9.]+)".*/\1/p' "$repo/hack/envtest.sh")"
GO_MIN_VERSION="$(sed -nE 's/^GO_MIN_VERSION="([0-9.]+)".*/\1/p' "$repo/hack/envtest.sh")"
CONTAINERD_VERSION="2.2.9"  # github.com/containerd/containerd/v2; CRI v1, cgroup v1 still supported
COREDNS_VERSION="1.14.7"    # github.com/coredns/coredns
PAUSE_VERSION="3.10.2"      # kubeadm's PauseVersion in k8s.io/kubernetes v1.37.2
DEBIAN_PACKAGES=(runc containernetworking-plugins buildah iptables conntrack iproute2 util-linux openssl curl gcc libc6-dev ca-certificates)

log() { printf 'node-components: %s\n' "$*" >&2; }
die() { printf 'node-components: error: %s\n' "$*" >&2; exit 1; }

[[ -n "$KUBE_VERSION" && -n "$STAGING_VERSION" && -n "$GO_MIN_VERSION" ]] ||
  die "cannot read KUBE_VERSION/STAGING_VERSION/GO_MIN_VERSION from hack/envtest.sh"

mode="${1:-}"
case "$mode" in
  "" | --check) ;;
  *) die "unknown argument $mode (use --check or nothing)" ;;
esac

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/node"
dest="$cache_root/$KUBE_VERSION"

# Output is captured first: `grep -q` on a pipe could kill the writer with SIGPIPE.
version_line() {
  local bin="$1" pattern="$2" out
  shift 2
  [[ -x "$bin" ]] || return 1
  out="$(timeout 20 "$bin" "$@" 2>&1)" || return 1
  grep -Eq -- "$pattern" <<<"$out"
}
v_re() { printf '%s' "$1" | sed 's/[.]/[.]/g'; }
kube_ok() {
  local c
  for c in kubelet kube-proxy kube-controller-manager kube-scheduler; do
    version_line "$dest/$c" "^Kubernetes v$(v_re "$KUBE_VERSION")\$" --version || return 1
  done
}
containerd_ok() {
  version_line "$dest/containerd" " v$(v_re "$CONTAINERD_VERSION") " --version &&
    version_line "$dest/ctr" " v$(v_re "$CONTAINERD_VERSION")\$" --version &&
    version_line "$dest/containerd-shim-runc-v2" "Version: +v$(v_re "$CONTAINERD_VERSION")\$" -v
}
coredns_ok() { version_line "$dest/coredns" "^CoreDNS-$(v_re "$COREDNS_VERSION")\$" -version; }
pause_ok() { version_line "$dest/pause" "^pause[.]c v$(v_re "$PAUSE_VERSION")\$" -v; }
debian_missing() {
  local p missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  echo "${missing[*]}"
}
all_ok() { [[ -z "$(debian_missing)" ]] && kube_ok && containerd_ok && coredns_ok && pause_ok; }

if all_ok; then
  echo "$dest"
  exit 0
fi
if [[ "$mode" == --check ]]; then
  [[ -z "$(debian_missing)" ]] || log "missing Debian packages: $(debian_missing)"
  kube_ok || log "missing: kubelet/kube-proxy/kube-controller-manager/kube-scheduler v$KUBE_VERSION in $dest"
  containerd_ok || log "missing: containerd v$CONTAINERD_VERSION in $dest"
  coredns_ok || log "missing: coredns $COREDNS_VERSION in $dest"
  pause_ok || log "missing: pause $PAUSE_VERSION in $dest"
  exit 1
fi

mkdir -p "$dest" || die "cannot create $dest"
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
  log "another run is providing the node components; waiting for its lock ($cache_root/.lock)"
  flock 9
fi
if all_ok; then
  echo "$dest"
  exit 0
fi

work="$(mktemp -d "$cache_root/.build-XXXXXX")"
cleanup() {
  local rc=$?
  if ((rc != 0)); then log "build failed; its logs are kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/out"

# run_step NAME LOGFILE CMD...: runs CMD with its output in LOGFILE; on failure shows the log's tail.
run_step() {
  local name="$1" logfile="$2" rc=0 t0=$SECONDS
  shift 2
  "$@" >>"$logfile" 2>&1 || rc=$?
  log "  $name: $((SECONDS - t0))s"
  if ((rc != 0)); then
    printf 'node-components: error: %s failed (exit %d); last lines of %s:\n' "$name" "$rc" "$logfile" >&2
    tail -n 40 "$logfile" | sed 's/^/    /' >&2
    exit 1
  fi
}
install_bin() {
  cp "$1" "$dest/.$2.tmp.$$"
  chmod 0755 "$dest/.$2.tmp.$$"
  mv -f "$dest/.$2.tmp.$$" "$dest/$2"
}

need_go() {
  command -v go >/dev/null 2>&1 || die "the Go toolchain (go ${GO_MIN_VERSION} or newer) is not on PATH"
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off
}

install_debian() {
  local missing
  missing="$(debian_missing)"
  [[ -n "$missing" ]] || return 0
  log "installing Debian packages: $missing"
  local logfile="$work/apt.log"
  # shellcheck disable=SC2086 # a list of package names
  run_step "apt-get-install" "$logfile" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends $missing ||
    true
  if [[ -n "$(debian_missing)" ]]; then
    run_step "apt-get-update" "$logfile" apt-get update -q
    # shellcheck disable=SC2086
    run_step "apt-get-install" "$logfile" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends $(debian_missing)
  fi
}

build_kube() {
  need_go
  local mod="$work/kube" logfile="$work/kube.log"
  mkdir -p "$mod"
  log "building kubelet, kube-proxy, kube-controller-manager, kube-scheduler v$KUBE_VERSION (log: $logfile)"
  run_step "download-kubernetes-module" "$logfile" \
    go -C "$mod" mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}"
  local gomod staging
  gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v${KUBE_VERSION}.mod"
  staging="$(sed -nE 's#^[[:space:]]*(k8s\.io/[A-Za-z0-9._-]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\1#p' "$gomod")"
  [[ -n "$staging" ]] || die "no staging modules found in $gomod"
  {
    printf 'module node.local/kube\n\ngo %s\n\ngodebug default=go%s\n\n' "$GO_MIN_VERSION" "${GO_MIN_VERSION%.*}"
    printf 'require k8s.io/kubernetes v%s\n\nreplace (\n' "$KUBE_VERSION"
    local m
    for m in $staging; do printf '\t%s => %s v%s\n' "$m" "$m" "$STAGING_VERSION"; done
    printf ')\n'
  } >"$mod/go.mod"
  local major="${KUBE_VERSION%%.*}" minor="${KUBE_VERSION#*.}" ldflags="-s -w" kv key val
  minor="${minor%%.*}"
  for kv in "gitVersion=v${KUBE_VERSION}" "gitMajor=${major}" "gitMinor=${minor}" \
    "gitTreeState=clean" "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
    key="${kv%%=*}" val="${kv#*=}"
    ldflags+=" -X k8s.io/client-go/pkg/version.${key}=${val} -X k8s.io/component-base/version.${key}=${val}"
  done
  run_step "go-build-kube-node" "$logfile" \
    go -C "$mod" build -trimpath -ldflags "$ldflags" -o "$work/out/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
  local c
  for c in kubelet kube-proxy kube-controller-manager kube-scheduler; do install_bin "$work/out/$c" "$c"; done
  kube_ok || die "the built node components do not report v$KUBE_VERSION"

  # pause: the sandbox container's program, from the same module.
  local src
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@v${KUBE_VERSION}/build/pause/linux/pause.c"
  [[ -f "$src" ]] || die "pause.c not found at $src"
  run_step "gcc-pause" "$logfile" \
    gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_VERSION}" -o "$work/out/pause" "$src"
  strip "$work/out/pause" 2>/dev/null || true
  install_bin "$work/out/pause" pause
}

build_containerd() {
  need_go
  local mod="$work/containerd" logfile="$work/containerd.log"
  mkdir -p "$mod"
  log "building containerd v$CONTAINERD_VERSION (log: $logfile)"
  printf 'module node.local/containerd\n\ngo %s\n\nrequire github.com/containerd/containerd/v2 v%s\n' \
    "$GO_MIN_VERSION" "$CONTAINERD_VERSION" >"$mod/go.mod"
  local pkg=github.com/containerd/containerd/v2
  run_step "go-build-containerd" "$logfile" \
    go -C "$mod" build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $pkg/version.Version=v$CONTAINERD_VERSION -X $pkg/version.Revision=module" \
    -o "$work/out/" "$pkg/cmd/containerd" "$pkg/cmd/containerd-shim-runc-v2" "$pkg/cmd/ctr"
  local c
  for c in containerd containerd-shim-runc-v2 ctr; do install_bin "$work/out/$c" "$c"; done
  containerd_ok || die "the built containerd does not report v$CONTAINERD_VERSION: $("$dest/containerd" --version 2>&1 | head -n1)"
}

build_coredns() {
  need_go
  local mod="$work/coredns" logfile="$work/coredns.log"
  mkdir -p "$mod"
  log "building coredns $COREDNS_VERSION (log: $logfile)"
  sed "s/@GO_VERSION@/${GO_MIN_VERSION}/; s/@COREDNS_VERSION@/${COREDNS_VERSION}/" \
    "$here/coredns/go.mod.in" >"$mod/go.mod"
  cp "$here/coredns/main.go" "$mod/main.go"
  run_step "go-build-coredns" "$logfile" \
    go -C "$mod" build -trimpath -ldflags "-s -w" -o "$work/out/coredns" .
  install_bin "$work/out/coredns" coredns
  coredns_ok || die "the built coredns does not report $COREDNS_VERSION: $("$dest/coredns" -version 2>&1 | head -n1)"
}

start=$SECONDS
built=()
install_debian
if ! kube_ok || ! pause_ok; then build_kube; built+=(kube-node pause); fi
if ! containerd_ok; then build_containerd; built+=(containerd); fi
if ! coredns_ok; then build_coredns; built+=(coredns); fi
all_ok || die "components in $dest still fail their checks after the build"
elapsed=$((SECONDS - start))
log "provided ${built[*]:-nothing new} in $dest: wall time ${elapsed}s"
printf '%s\t%s\t%ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${built[*]:-}" "$elapsed" >>"$cache_root/build-times.tsv"
echo "$dest"
