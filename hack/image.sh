#!/usr/bin/env bash
# Builds the operator image from the repository's Dockerfile without a Docker daemon (buildah,
# rootful, vfs storage, chroot isolation) and, when the test node is up (hack/node/cluster.sh),
# loads it into the node's containerd. Prints `NAME=VALUE` lines on stdout (IMAGE, ARCHIVE,
# SIZE_BYTES unpacked, COMPRESSED_BYTES); every other message goes to stderr.
#
#   hack/image.sh [--dir NODE_DIR] [--no-load] [--binary PATH]
#
# --binary PATH puts that binary in the image instead of building the release binary (for trying
# a change quickly; the image users get is the release build).
#
# Neither base of the Dockerfile can be pulled here, so the same Dockerfile is built with two
# build arguments (see its header):
#   BASE_IMAGE=localhost/cc-debian12-local:nonroot  a FROM-scratch base made here from this
#       machine's Debian 12 (bookworm, the distroless cc-debian12 release): glibc's libraries
#       and loader, libgcc_s, the CA certificates, /etc/passwd and /etc/group with nonroot
#       (65532), a /tmp; no shell, no package manager.
#   BINARY_STAGE=prebuilt, with the build context prebuilt-bin holding the binary of
#       `cargo build --release --locked --bin cxone-skill-operator` (the Dockerfile's own command,
#       the release profile of Cargo.toml) built on this machine, which is Debian 12 like the
#       rust:…-bookworm builder image.
# The image is localhost/cxone-skill-operator:<version of Cargo.toml>; its OCI archive is kept in
# ${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/node/images/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
log() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

node_dir="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator/node/cluster"
load=1
binary=""
while (($#)); do
  case "$1" in
    --dir) node_dir="$2"; shift 2 ;;
    --no-load) load=0; shift ;;
    --binary) binary="$2"; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done

bin="$("$here/node/components.sh")" # buildah, ctr
cache="$(dirname "$bin")"
root="$cache/buildah"
b=(buildah --root "$root/storage" --runroot "$root/run" --storage-driver vfs)
version="$(sed -nE '0,/^version = "([^"]+)"/s//\1/p' "$repo/Cargo.toml")"
[[ -n "$version" ]] || die "no version in Cargo.toml"
image="localhost/cxone-skill-operator:$version"
base="localhost/cc-debian12-local:nonroot"
mkdir -p "$cache/images"
exec 9>"$cache/images/.image.lock"
flock 9

# ---- the release binary -----------------------------------------------------------------------
t0=$SECONDS
if [[ -z "$binary" ]]; then
  log "cargo build --release --locked --bin cxone-skill-operator"
  (cd "$repo" && cargo build --release --locked --bin cxone-skill-operator >&2)
  target_dir="$(cd "$repo" && cargo metadata --format-version 1 --no-deps | sed -nE 's/.*"target_directory":"([^"]+)".*/\1/p')"
  binary="$target_dir/release/cxone-skill-operator"
  log "  release build: $((SECONDS - t0))s"
fi
[[ -x "$binary" ]] || die "no binary at $binary"

# ---- the local base ---------------------------------------------------------------------------
# The files it holds come from Debian packages; the base is rebuilt when their versions change.
base_stamp="$(dpkg-query -W -f='${Package}=${Version} ' libc6 libgcc-s1 ca-certificates)"
if [[ "$("${b[@]}" inspect --type image --format '{{index .ImageAnnotations "io.cxone.base.packages"}}' "$base" 2>/dev/null || true)" != "$base_stamp" ]]; then
  log "building the local base $base ($base_stamp)"
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  lib=lib/x86_64-linux-gnu
  mkdir -p "$rootfs/$lib" "$rootfs/lib64" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/home/nonroot" \
    "$rootfs/usr/share/doc"
  for so in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 \
    libresolv.so.2 libnss_files.so.2 libnss_dns.so.2 libutil.so.1 libgcc_s.so.1; do
    cp -L "/$lib/$so" "$rootfs/$lib/$so"
  done
  ln -s "../$lib/ld-linux-x86-64.so.2" "$rootfs/lib64/ld-linux-x86-64.so.2"
  cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  cp -L /etc/os-release "$rootfs/etc/os-release"
  for p in libc6 libgcc-s1 ca-certificates; do
    mkdir -p "$rootfs/usr/share/doc/$p"
    cp -L "/usr/share/doc/$p/copyright" "$rootfs/usr/share/doc/$p/copyright" 2>/dev/null || true
  done
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rootfs/etc/group"
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
  chmod 1777 "$rootfs/tmp"
  chown 65532:65532 "$rootfs/home/nonroot"
  ctr="$("${b[@]}" from --pull-never scratch)"
  "${b[@]}" copy --quiet "$ctr" "$rootfs/" / >/dev/null
  "${b[@]}" config --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --annotation "io.cxone.base.packages=$base_stamp" "$ctr"
  "${b[@]}" commit --quiet "$ctr" "$base" >/dev/null
  "${b[@]}" rm "$ctr" >/dev/null
fi

# ---- the image, from the Dockerfile -----------------------------------------------------------
t0=$SECONDS
ctx_bin="$(mktemp -d)"
trap 'rm -rf "$ctx_bin" "${rootfs:-}"' EXIT
cp "$binary" "$ctx_bin/cxone-skill-operator"
revision="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
log "buildah bud $image (Dockerfile, BASE_IMAGE=$base, BINARY_STAGE=prebuilt)"
"${b[@]}" bud --quiet --isolation chroot --pull-never --layers=false \
  --build-arg "BASE_IMAGE=$base" --build-arg BINARY_STAGE=prebuilt \
  --build-context "prebuilt-bin=$ctx_bin" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -f "$repo/Dockerfile" -t "$image" "$repo" >/dev/null
archive="$cache/images/cxone-skill-operator-$version.tar"
rm -f "$archive.tmp"
"${b[@]}" push --quiet "$image" "oci-archive:$archive.tmp:$image"
mv -f "$archive.tmp" "$archive"
# The build's intermediate images (vfs keeps full copies) are not needed again.
"${b[@]}" rmi --prune >/dev/null 2>&1 || true
# Size: the layers unpacked (what a node stores) and the archive (compressed layers, what a
# registry stores and a node pulls).
size="$(python3 - "$archive" <<'PY'
import gzip, json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":", 1)[1]).read()
    manifest = json.loads(blob(json.loads(t.extractfile("index.json").read())["manifests"][0]["digest"]))
    print(sum(len(gzip.decompress(blob(l["digest"])) if l["mediaType"].endswith("gzip") else blob(l["digest"]))
              for l in manifest["layers"]))
PY
)"
archive_size="$(stat -c %s "$archive")"
log "  image build: $((SECONDS - t0))s; $image: $((size / 1024 / 1024)) MiB unpacked, $((archive_size / 1024 / 1024)) MiB compressed"

if ((load)); then
  if [[ -f "$node_dir/kubeconfig.ready" ]]; then
    "$here/node/cluster.sh" load-image --dir "$node_dir" "$archive"
    log "loaded $image into the node's containerd ($node_dir)"
  else
    log "no node is up in $node_dir (make cluster); the image is in $archive"
  fi
fi
printf 'IMAGE=%s\nARCHIVE=%s\nSIZE_BYTES=%s\nCOMPRESSED_BYTES=%s\n' "$image" "$archive" "$size" "$archive_size"
