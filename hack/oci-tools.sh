#!/usr/bin/env bash
# Installs what the OCI registry tests and benchmark run (tests/registry_oci.rs,
# benches/registry.rs) and prints the paths it provides on stdout, one `NAME=PATH` a line; every
# other message goes to stderr.
#
#   hack/oci-tools.sh          # install what is missing, print REGISTRY=…, HTPASSWD=…, ORAS=…
#   hack/oci-tools.sh --check  # install nothing; exit 1 naming what is missing
#
# What and from where (only package registries are reachable from the machines this project
# runs on):
#   docker-registry  Debian package docker-registry (the CNCF distribution registry, 2.8):
#                    /usr/bin/docker-registry. The packaged service is never started: the tests
#                    start their own registry on 127.0.0.1 with a generated configuration.
#   htpasswd         Debian package apache2-utils (bcrypt htpasswd files for the registry).
#   oras             built from the Go module oras.land/oras/cmd/oras@v1.3.6 (through the Go module
#                    proxy) into ${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/tools/
#                    oras-1.3.6/oras, outside the repository; an independent client the tests
#                    check our pushes with.
# Re-running is cheap (a dpkg query and a version check; no network once installed). Safe to
# run concurrently (a lock serialises installs). Works without a terminal (CI=true, no stdin);
# needs root for apt-get when a Debian package is missing.
set -euo pipefail

ORAS_VERSION="1.3.6"
ORAS_MODULE="oras.land/oras/cmd/oras"

log() { printf 'oci-tools: %s\n' "$*" >&2; }
die() { printf 'oci-tools: error: %s\n' "$*" >&2; exit 1; }

mode="${1:-}"
case "$mode" in
  "" | --check) ;;
  -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown argument $mode (use --check or nothing)" ;;
esac

root="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/tools"
oras_dir="$root/oras-$ORAS_VERSION"
registry_bin="/usr/bin/docker-registry"
htpasswd_bin="/usr/bin/htpasswd"

# Output is captured first: `grep -q` on a pipe could kill the writer with SIGPIPE.
registry_ok() {
  local out
  [[ -x "$registry_bin" ]] || return 1
  out="$(timeout 20 "$registry_bin" --version 2>&1)" || return 1
  grep -Eq 'v?2[.]|v?3[.]' <<<"$out"
}
htpasswd_ok() {
  local out
  [[ -x "$htpasswd_bin" ]] || return 1
  out="$(timeout 20 "$htpasswd_bin" -Bbn probe probe 2>&1)" || return 1
  grep -Eq '^probe:[$]2[aby][$]' <<<"$out"
}
oras_ok() {
  local out
  [[ -x "$oras_dir/oras" ]] || return 1
  out="$(timeout 20 "$oras_dir/oras" version 2>&1)" || return 1
  grep -Eq "^Version: +$ORAS_VERSION( |\$)" <<<"$out"
}

report() {
  printf 'REGISTRY=%s\n' "$registry_bin"
  printf 'HTPASSWD=%s\n' "$htpasswd_bin"
  printf 'ORAS=%s\n' "$oras_dir/oras"
}

if registry_ok && htpasswd_ok && oras_ok; then
  report
  exit 0
fi
if [[ "$mode" == --check ]]; then
  registry_ok || log "missing: docker-registry ($registry_bin; Debian package docker-registry)"
  htpasswd_ok || log "missing: htpasswd ($htpasswd_bin; Debian package apache2-utils)"
  oras_ok || log "missing: oras $ORAS_VERSION ($oras_dir/oras)"
  exit 1
fi

mkdir -p "$root" || die "cannot create $root"
exec 9>"$root/.oci-tools.lock"
if ! flock -n 9; then
  log "another run is installing the tools; waiting for its lock ($root/.oci-tools.lock)"
  flock 9
fi

# ---- Debian packages --------------------------------------------------------------------------
install_debs() {
  local missing=("$@")
  command -v apt-get >/dev/null || die "apt-get is needed to install ${missing[*]} and is not on PATH"
  [[ "$(id -u)" == 0 ]] || die "installing ${missing[*]} needs root (apt-get install -y ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  # The packaged registry service must not start (and there may be no init system to start it):
  # a policy-rc.d answering 101 tells invoke-rc.d to leave services alone during the install.
  local policy=/usr/sbin/policy-rc.d created_policy=""
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created_policy=1
  fi
  local log_file rc=0
  log_file="$(mktemp)"
  log "apt-get update"
  apt-get update -q </dev/null >"$log_file" 2>&1 || rc=$?
  if [[ $rc == 0 ]]; then
    log "apt-get install ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >>"$log_file" 2>&1 || rc=$?
  fi
  if [[ $rc != 0 ]]; then
    # A postinst that fails for want of an init system leaves the package unconfigured; the
    # binaries are unpacked all the same. Configure what can be configured and go on if the
    # binaries work (checked below).
    log "apt-get exited $rc; finishing the configuration with dpkg --configure -a"
    dpkg --configure -a </dev/null >>"$log_file" 2>&1 || log "dpkg --configure -a failed too; checking the binaries anyway"
  fi
  [[ -n "$created_policy" ]] && rm -f "$policy"
  registry_ok && htpasswd_ok || die "docker-registry or htpasswd does not run after the install: $(tail -20 "$log_file")"
  rm -f "$log_file"
  # The package may have started its service where an init system exists: stop it, since the
  # tests start their own registries. Only the packaged unit is touched.
  if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || log "could not stop the packaged docker-registry service"
  fi
}

missing=()
registry_ok || missing+=(docker-registry)
htpasswd_ok || missing+=(apache2-utils)
if ((${#missing[@]})); then
  install_debs "${missing[@]}"
  log "$("$registry_bin" --version 2>&1 | head -1); htpasswd from apache2-utils"
fi

# ---- oras -------------------------------------------------------------------------------------
install_oras() {
  command -v go >/dev/null || die "the Go toolchain is needed to build oras and is not on PATH"
  local tmp
  tmp="$(mktemp -d "$root/.oras-build-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  log "building oras $ORAS_VERSION from $ORAS_MODULE@v$ORAS_VERSION (a minute or two when the Go caches are cold)"
  (cd "$tmp" &&
    GOBIN="$tmp/bin" GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" \
      go install "$ORAS_MODULE@v$ORAS_VERSION" </dev/null >"$tmp/build.log" 2>&1) ||
    die "go install $ORAS_MODULE@v$ORAS_VERSION failed: $(tail -20 "$tmp/build.log")"
  rm -rf "$oras_dir"
  mkdir -p "$oras_dir"
  install -m 0755 "$tmp/bin/oras" "$oras_dir/oras"
  oras_ok || die "the built oras does not report version $ORAS_VERSION: $("$oras_dir/oras" version 2>&1 | head -3)"
  log "oras $ORAS_VERSION in $oras_dir"
}
oras_ok || install_oras

report
