#!/usr/bin/env bash
# A real single-node Kubernetes cluster for trying and testing the operator as users run it:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables),
# containerd + runc, CNI (bridge, host-local, loopback, portmap) and CoreDNS, all built or
# installed by hack/envtest.sh and hack/node/components.sh.
#
#   hack/node/cluster.sh up [--dir DIR] [--parent PID] [--registry]
#   hack/node/cluster.sh down [--dir DIR]
#   hack/node/cluster.sh diagnose [--dir DIR]    # node state and the tails of the component logs
#   hack/node/cluster.sh load-image [--dir DIR] OCI_ARCHIVE
#
# `up` prints `NAME=VALUE` lines on stdout (KUBECONFIG, NODE_IP, REGISTRY, DIR); everything
# else goes to stderr. DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/
# node/cluster; its kubeconfig is DIR/kubeconfig. With --parent PID, a watcher tears the cluster
# down when PID ends (the node tests pass their own pid, so a killed test leaves nothing behind).
# With --registry, a docker-registry (hack/oci-tools.sh) serves plain HTTP on NODE_IP:5000 for
# the pods.
#
# Network: everything runs in the network namespace `cxone-node`, connected to the host only by
# a veth pair (host 198.18.255.1/30, node 198.18.255.2/30; the apiserver listens on the node
# side, so the host's kubectl and helm reach it). The namespace has no default route and nothing
# masquerades to the outside, so no pod packet leaves the machine; kube-proxy's iptables rules
# and the pods' bridge live in that namespace only. Pods get 198.18.0.0/24, Services
# 198.19.0.0/16 (the benchmarking range, outside the private ranges), cluster DNS is
# 198.19.0.10 and answers cluster.local only (no upstream).
#
# Host state the node changes: the kubelet sets its usual kernel tunables (vm.overcommit_memory,
# kernel.panic, kernel.panic_on_oops), and containers' cgroups live under /cxone-node in each
# cgroup v1 hierarchy. `down` kills every process, unmounts everything under DIR, removes the
# cgroups and deletes the network namespace (and with it every iptables rule of the node).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

NETNS="cxone-node"
NODE_NAME="cxone-node"
HOST_VETH="cxn-host"
NODE_VETH="cxn-node"
HOST_IP="198.18.255.1"
NODE_IP="198.18.255.2"
POD_CIDR="198.18.0.0/24"
POD_GATEWAY="198.18.0.1"
CLUSTER_CIDR="198.18.0.0/16"
SERVICE_CIDR="198.19.0.0/16"
KUBERNETES_SVC_IP="198.19.0.1"
DNS_IP="198.19.0.10"
CGROUP_ROOT="/cxone-node"
REGISTRY_PORT=5000
APISERVER_PORT=6443
# The OCI runtime containerd's shim runs: Debian's runc.
OCI_RUNTIME="${OCI_RUNTIME:-/usr/sbin/runc}"
COMPONENTS=(kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd registry containerd)

log() { printf 'node: %s\n' "$*" >&2; }
die() { printf 'node: error: %s\n' "$*" >&2; exit 1; }

owned=0
cmd="${1:-}"
[[ -n "$cmd" ]] || die "usage: cluster.sh up|down|diagnose|load-image [--dir DIR] ..."
shift
dir="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/node/cluster"
parent=""
with_registry=0
args=()
while (($#)); do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --parent) parent="$2"; shift 2 ;;
    --registry) with_registry=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
# Only the network namespace: `ip netns exec` would also give the command a mount namespace of
# its own with a fresh /sys (no cgroup mounts for the kubelet, and containerd's mounts invisible
# to the kubelet).
in_ns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

# ---- teardown ---------------------------------------------------------------------------------
kill_pidfile() {
  local f="$1" pid i
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Processes whose command line or cgroup names this node: containers (cgroups under
# CGROUP_ROOT) and the containerd shims (their -address is DIR's socket).
node_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ "${p#/proc/}" == "$$" ]] && continue
    if { ((owned)) && grep -qs ":$CGROUP_ROOT/" "$p/cgroup"; } ||
      { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$dir/containerd/"; then
      echo "${p#/proc/}"
    fi
  done
}

down() {
  local c pid i
  # The cgroups and the network namespace are this node's only if it made the namespace.
  owned=0
  [[ -f "$dir/netns.created" ]] && owned=1
  # The watcher goes first so it does not race this teardown.
  kill_pidfile "$dir/pids/watcher.pid"
  for c in "${COMPONENTS[@]}"; do kill_pidfile "$dir/pids/$c.pid"; done
  for ((i = 0; i < 3; i++)); do
    for pid in $(node_pids); do kill -KILL "$pid" 2>/dev/null || true; done
    [[ -z "$(node_pids)" ]] && break
    sleep 0.5
  done
  # Unmount everything under DIR, deepest first (the kubelet's volumes, containerd's rootfs and
  # snapshots, the pods' network namespaces).
  local m
  for ((i = 0; i < 5; i++)); do
    mapfile -t mounts < <(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    ((${#mounts[@]})) || break
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  # Containers' cgroups, deepest first.
  local h
  for h in /sys/fs/cgroup/*/; do
    ((owned)) || break
    [[ -d "$h${CGROUP_ROOT#/}" ]] || continue
    find "$h${CGROUP_ROOT#/}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # The network namespace only if this directory's node made it (another node may be up).
  if [[ -f "$dir/netns.created" ]]; then
    if ip netns list 2>/dev/null | grep -qw "^$NETNS"; then ip netns delete "$NETNS" || true; fi
    ip link delete "$HOST_VETH" 2>/dev/null || true
    rm -f "$dir/netns.created"
  fi
  # The pods' network namespaces are bind mounts under DIR (netns_mounts_under_state_dir), gone
  # with the unmounts above. State stays for `diagnose` until the next `up`.
  rm -f "$dir/kubeconfig.ready"
  local left
  left="$(node_pids | tr '\n' ' ')"
  [[ -z "$left" ]] || log "warning: processes still running after teardown: $left"
  left="$(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | head -n 5 | tr '\n' ' ')"
  [[ -z "$left" ]] || log "warning: still mounted after teardown: $left"
  log "node in $dir is down"
}

# ---- diagnostics ------------------------------------------------------------------------------
diagnose() {
  local c
  echo "==== node $NODE_NAME ($dir)"
  for c in "${COMPONENTS[@]}"; do
    if [[ -f "$dir/pids/$c.pid" ]] && kill -0 "$(cat "$dir/pids/$c.pid")" 2>/dev/null; then
      echo "  $c: running (pid $(cat "$dir/pids/$c.pid"))"
    elif [[ -f "$dir/logs/$c.log" ]]; then
      echo "  $c: NOT running"
    fi
  done
  for c in kubelet containerd kube-proxy kube-controller-manager kube-scheduler kube-apiserver etcd registry; do
    [[ -s "$dir/logs/$c.log" ]] || continue
    echo "==== last 40 lines of $c.log"
    tail -n 40 "$dir/logs/$c.log"
  done
}

# ---- start ------------------------------------------------------------------------------------
# start NAME CMD...: runs CMD in the node's network namespace (see in_ns), detached, with its output in
# DIR/logs/NAME.log and its pid in DIR/pids/NAME.pid.
start() {
  local name="$1"
  shift
  setsid nsenter --net="/run/netns/$NETNS" -- "$@" </dev/null >>"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/pids/$name.pid"
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.5 s until it succeeds.
wait_for() {
  local what="$1" secs="$2" deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      diagnose >&2 || true
      die "timed out after ${secs}s waiting for $what"
    fi
    sleep 0.5
  done
}

gen_pki() {
  local p="$dir/pki"
  mkdir -p "$p"
  [[ -s "$p/ca.crt" && -s "$p/apiserver.crt" && -s "$p/kubelet-client.crt" && -s "$p/sa.pub" ]] && return 0
  log "generating the node's certificates (openssl)"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=cxone-node-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  # issue NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA.
  issue() {
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$p/$1.key" -out "$p/$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$p/$1.ext"
    openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 365 \
      -extfile "$p/$1.ext" -out "$p/$1.crt" 2>/dev/null
  }
  issue apiserver "/CN=kube-apiserver" \
    "subjectAltName=IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost
extendedKeyUsage=serverAuth"
  issue kubelet "/CN=$NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME
extendedKeyUsage=serverAuth"
  issue kubelet-client "/O=cxone-node/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$p/sa.key" 2>/dev/null
  openssl pkey -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  chmod 0600 "$p"/*.key
}

# kubeconfig FILE USER TOKEN SERVER
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: $NODE_NAME
    cluster:
      server: $4
      certificate-authority: $dir/pki/ca.crt
users:
  - name: $2
    user:
      token: $3
contexts:
  - name: $NODE_NAME
    context: {cluster: $NODE_NAME, user: $2}
current-context: $NODE_NAME
EOF
  chmod 0600 "$1"
}

write_configs() {
  local server="https://$NODE_IP:$APISERVER_PORT" t
  mkdir -p "$dir/conf"
  if [[ ! -s "$dir/conf/tokens.csv" ]]; then
    : >"$dir/conf/tokens.csv"
    chmod 0600 "$dir/conf/tokens.csv"
    local u
    for u in admin kubelet kube-controller-manager kube-scheduler kube-proxy; do
      t="$(openssl rand -hex 24)"
      case "$u" in
        admin) echo "$t,cluster-admin,cluster-admin,system:masters" ;;
        kubelet) echo "$t,system:node:$NODE_NAME,system:node:$NODE_NAME,system:nodes" ;;
        kube-proxy) echo "$t,system:kube-proxy,system:kube-proxy" ;;
        *) echo "$t,system:$u,system:$u" ;;
      esac >>"$dir/conf/tokens.csv"
      kubeconfig "$dir/conf/$u.kubeconfig" "$u" "$t" "$server"
    done
  fi
  cp "$dir/conf/admin.kubeconfig" "$dir/kubeconfig"

  mkdir -p "$dir/cni/net.d" "$dir/cni/ipam"
  cat >"$dir/cni/net.d/10-cxone-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cxone-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cxn0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  mkdir -p "$dir/containerd"
  cat >"$dir/containerd/config.toml" <<EOF
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]

[grpc]
  address = "$dir/containerd/containerd.sock"

[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "localhost/pause:$PAUSE_VERSION"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # This machine's root has no CAP_SYS_RESOURCE, so a negative oom_score_adj (the kubelet asks
  # -998 for sandboxes) fails in runc ("failed to update /proc/self/oom_score_adj: Permission
  # denied"); containerd clamps it to its own score instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$OCI_RUNTIME"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni/net.d"
    max_conf_num = 1
EOF

  # No upstream resolvers: a pod with dnsPolicy Default gets none.
  : >"$dir/conf/resolv.conf"
  cat >"$dir/conf/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 is what this machine has; kubelets from 1.35 refuse it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $dir/pki/kubelet.crt
tlsPrivateKeyFile: $dir/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $dir/conf/resolv.conf
failSwapOn: false
podLogsDir: $dir/pod-logs
# The images are loaded, never pulled (nothing can be pulled here): no image garbage collection.
# Eviction only when the machine is really short: the disk is shared with builds, and a
# percentage of a large, nearly full disk would evict the test pods (DiskPressure).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 200Mi
  nodefs.available: 256Mi
  imagefs.available: 256Mi
  nodefs.inodesFree: 1%
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
syncFrequency: 10s
EOF

  cat >"$dir/conf/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $dir/conf/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
# Leave the conntrack sysctls alone (0: do not set).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

setup_netns() {
  if ip netns list 2>/dev/null | grep -qw "^$NETNS"; then
    die "network namespace $NETNS exists: a node is already up (\`make cluster-down\` or hack/node/cluster.sh down --dir DIR)"
  fi
  modprobe br_netfilter 2>/dev/null || true
  ip netns add "$NETNS"
  touch "$dir/netns.created"
  ip link add "$HOST_VETH" type veth peer name "$NODE_VETH" netns "$NETNS"
  ip addr add "$HOST_IP/30" dev "$HOST_VETH"
  ip link set "$HOST_VETH" up
  in_ns ip link set lo up
  in_ns ip addr add "$NODE_IP/30" dev "$NODE_VETH"
  in_ns ip link set "$NODE_VETH" up
  in_ns sysctl -q -w net.ipv4.ip_forward=1
  in_ns sysctl -q -w net.bridge.bridge-nf-call-iptables=1
  in_ns sysctl -q -w net.bridge.bridge-nf-call-ip6tables=1 || true
  # No default route in the namespace: pod traffic can reach the node and the host's end of the
  # veth, nothing else.
}

# import_image ARCHIVE: loads an OCI archive into the node's containerd (the kubelet's k8s.io
# namespace), so pods can use it without a pull.
import_image() {
  "$bin/ctr" --address "$dir/containerd/containerd.sock" -n k8s.io images import --local "$1" >&2
}

# scratch_image NAME BINARY ARCHIVE CONFIG...: a FROM-scratch image of one static binary, built with buildah,
# exported as an OCI archive under the node cache (reused on later runs).
scratch_image() {
  local name="$1" binary="$2" archive="$3"
  shift 3
  [[ -s "$archive" ]] && return 0
  local b root="$cache/buildah" ctr
  b=(buildah --root "$root/storage" --runroot "$root/run" --storage-driver vfs)
  ctr="$("${b[@]}" from --pull-never scratch)"
  "${b[@]}" copy "$ctr" "$binary" "/$(basename "$binary")" >/dev/null
  "${b[@]}" config "$@" "$ctr"
  "${b[@]}" commit --quiet "$ctr" "$name" >/dev/null
  "${b[@]}" rm "$ctr" >/dev/null
  rm -f "$archive.tmp"
  "${b[@]}" push --quiet "$name" "oci-archive:$archive.tmp:$name"
  mv -f "$archive.tmp" "$archive"
}

up() {
  local t0=$SECONDS
  envtest="$("$repo/hack/envtest.sh")"
  bin="$("$here/components.sh")"
  cache="$(dirname "$bin")"
  PAUSE_VERSION="$(sed -nE 's/^PAUSE_VERSION="([0-9.]+)".*/\1/p' "$here/components.sh")"
  COREDNS_VERSION="$(sed -nE 's/^COREDNS_VERSION="([0-9.]+)".*/\1/p' "$here/components.sh")"
  local registry_bin=""
  if ((with_registry)); then
    registry_bin="$("$repo/hack/oci-tools.sh" | sed -n 's/^REGISTRY=//p')"
  fi

  # A namespace no process is in is what a node killed before its teardown left: remove it.
  if ip netns list 2>/dev/null | grep -qw "^$NETNS" && [[ ! -f "$dir/netns.created" ]] \
    && [[ -z "$(ip netns pids "$NETNS" 2>/dev/null)" ]]; then
    log "removing the network namespace $NETNS a stopped node left behind (no process in it)"
    ip netns delete "$NETNS" || die "cannot delete the stale network namespace $NETNS"
    ip link delete "$HOST_VETH" 2>/dev/null || true
  fi
  if ip netns list 2>/dev/null | grep -qw "^$NETNS" && [[ ! -f "$dir/netns.created" ]]; then
    die "network namespace $NETNS exists: another node is up (\`make cluster-down\`, or hack/node/cluster.sh down --dir ITS_DIR)"
  fi
  # A previous node in this directory (crashed test, forgotten `make cluster`) goes first.
  down 2>/dev/null || true
  rm -rf "$dir/etcd" "$dir/containerd/root" "$dir/containerd/state" "$dir/kubelet" "$dir/pod-logs" \
    "$dir/cni" "$dir/logs" "$dir/pids" "$dir/registry"
  mkdir -p "$dir/logs" "$dir/pids" "$dir/kubelet" "$dir/pod-logs"
  gen_pki
  write_configs
  setup_netns
  # From here on, a failure tears the node down again.
  # (NODE_KEEP_ON_FAILURE=1 keeps it for a look.)
  trap 'rc=$?; if ((rc != 0)); then diagnose >&2 || true; [[ "${NODE_KEEP_ON_FAILURE:-}" == 1 ]] || down || true; fi' EXIT
  if [[ -n "$parent" ]]; then
    # The watcher: tears the node down when the parent process ends, however it ends.
    setsid bash "$here/cluster.sh" watch --dir "$dir" --parent "$parent" </dev/null >>"$dir/logs/watcher.log" 2>&1 &
    echo $! >"$dir/pids/watcher.pid"
  fi

  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d "$h" && ! -L "${h%/}" ]] || continue
    mkdir -p "$h${CGROUP_ROOT#/}" 2>/dev/null || true
  done
  # A new cpuset cgroup starts with no CPUs and no memory nodes: give it the root's.
  local cs=/sys/fs/cgroup/cpuset
  if [[ -d "$cs${CGROUP_ROOT}" ]]; then
    cat "$cs/cpuset.cpus" >"$cs${CGROUP_ROOT}/cpuset.cpus" 2>/dev/null || true
    cat "$cs/cpuset.mems" >"$cs${CGROUP_ROOT}/cpuset.mems" 2>/dev/null || true
  fi

  start etcd "$envtest/etcd" --name=node --data-dir="$dir/etcd" \
    --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=node=http://127.0.0.1:2380 --unsafe-no-fsync --log-level=warn
  start containerd env PATH="$bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "$bin/containerd" --config "$dir/containerd/config.toml" --log-level warn
  start kube-apiserver "$envtest/kube-apiserver" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
    --etcd-servers=http://127.0.0.1:2379 \
    --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" \
    --token-auth-file="$dir/conf/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$dir/pki/kubelet-client.crt" \
    --kubelet-client-key="$dir/pki/kubelet-client.key" \
    --kubelet-certificate-authority="$dir/pki/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=false --profiling=false
  wait_for "containerd" 60 test -S "$dir/containerd/containerd.sock"
  wait_for "kube-apiserver /readyz" 120 kubectl_ get --raw /readyz

  # Images the node needs before any pod: the sandbox (pause) and CoreDNS.
  mkdir -p "$cache/images"
  scratch_image "localhost/pause:$PAUSE_VERSION" "$bin/pause" "$cache/images/pause-$PAUSE_VERSION.tar" \
    --entrypoint '["/pause"]' --user 65535:65535
  scratch_image "localhost/coredns:$COREDNS_VERSION" "$bin/coredns" "$cache/images/coredns-$COREDNS_VERSION.tar" \
    --entrypoint '["/coredns"]' --user 65532:65532 --port 1053/udp --port 1053/tcp
  import_image "$cache/images/pause-$PAUSE_VERSION.tar"
  import_image "$cache/images/coredns-$COREDNS_VERSION.tar"

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$dir/conf/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/conf/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/conf/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-cidr="$CLUSTER_CIDR" \
    --allocate-node-cidrs=false --controllers='*,-bootstrapsigner,-tokencleaner' --profiling=false
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$dir/conf/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$dir/conf/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$dir/conf/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false
  start kubelet "$bin/kubelet" --config="$dir/conf/kubelet.yaml" \
    --kubeconfig="$dir/conf/kubelet.kubeconfig" --root-dir="$dir/kubelet" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
  start kube-proxy "$bin/kube-proxy" --config="$dir/conf/kube-proxy.yaml"
  if ((with_registry)); then
    mkdir -p "$dir/registry"
    cat >"$dir/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $dir/registry/data}
  delete: {enabled: true}
http:
  addr: $NODE_IP:$REGISTRY_PORT
EOF
    start registry "$registry_bin" serve "$dir/registry/config.yml"
  fi

  wait_for "the node to register and be Ready" 180 kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  # The apiserver talks to the kubelet through its client certificate (the kubelet asks the
  # apiserver whether that user may: logs, exec, port-forward).
  kubectl_ apply -f - >&2 <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: cxone-node:kube-apiserver-kubelet-client
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}
EOF
  sed -e "s/@COREDNS_VERSION@/$COREDNS_VERSION/g" -e "s/@DNS_IP@/$DNS_IP/g" \
    "$here/manifests/coredns.yaml" | kubectl_ apply -f - >&2
  wait_for "CoreDNS to be available" 180 kubectl_ -n kube-system wait --for=condition=Available deployment/coredns --timeout=5s
  if ((with_registry)); then
    wait_for "the registry" 30 curl -fsS "http://$NODE_IP:$REGISTRY_PORT/v2/"
  fi
  trap - EXIT
  touch "$dir/kubeconfig.ready"
  log "node up in $((SECONDS - t0))s: $NODE_NAME ($NODE_IP), kube-apiserver https://$NODE_IP:$APISERVER_PORT"
  printf 'KUBECONFIG=%s\nNODE_IP=%s\nDIR=%s\n' "$dir/kubeconfig" "$NODE_IP" "$dir"
  if ((with_registry)); then printf 'REGISTRY=%s:%s\n' "$NODE_IP" "$REGISTRY_PORT"; fi
}

kubectl_() { "$envtest/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout=10s "$@"; }

# The watcher: polls the parent every 0.5 s and tears the node down when it is gone (a
# zombie, state Z, counts as gone).
watch() {
  [[ -n "$parent" ]] || die "watch needs --parent PID"
  local stat
  while :; do
    if ! kill -0 "$parent" 2>/dev/null; then break; fi
    read -r stat <"/proc/$parent/stat" 2>/dev/null || break
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]] || break
    sleep 0.5
  done
  rm -f "$dir/pids/watcher.pid"
  log "parent $parent ended; tearing the node down"
  down
  # The directory of a test's node goes too (NODE_KEEP_DIR=1 keeps it for a look).
  if [[ "${NODE_KEEP_DIR:-}" != 1 ]] && [[ -z "$(awk -v d="$dir/" 'index($5, d) == 1' /proc/self/mountinfo)" ]]; then
    # Exiting container shims may still write their last log lines: retry a few times.
    local i
    for ((i = 0; i < 5; i++)); do
      rm -rf "$dir" 2>/dev/null && break
      sleep 1
    done
  fi
}

case "$cmd" in
  up) up ;;
  down) down ;;
  watch) watch ;;
  diagnose) diagnose ;;
  load-image)
    ((${#args[@]} == 1)) || die "usage: cluster.sh load-image [--dir DIR] OCI_ARCHIVE"
    bin="$("$here/components.sh")"
    import_image "${args[0]}"
    ;;
  *) die "unknown command $cmd (up, down, diagnose, load-image)" ;;
esac
