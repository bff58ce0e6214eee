# syntax=docker/dockerfile:1.7
# Image of cxone-skill-operator: the operator (`run`, the default command) and the CXone API
# simulator (`simulate`) in one shell-less, non-root image.
#
#   docker build -t cxone-skill-operator:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Rebuilds are cheap: the crates.io registry and cargo's target directory are BuildKit cache
# mounts, so a source change recompiles only this crate, and the manifests are copied before the
# sources.

# The runtime base. Builds that cannot pull it pass a local equivalent (hack/image.sh: the same
# Debian 12 glibc, libgcc and CA certificates, user 65532, no shell).
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# The stage whose /out/cxone-skill-operator goes into the image: `builder` (cargo in the rust
# image, the default) or `prebuilt`, a binary built outside by the same `cargo build --release
# --locked` and given as the build context `prebuilt-bin` (hack/image.sh, where the rust image
# cannot be pulled). Unused stages are not built.
ARG BINARY_STAGE=builder

# ---- build ------------------------------------------------------------------------------------
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src

COPY Cargo.toml Cargo.lock ./
# Cargo refuses to load the package when a target it declares is missing (benches/, tests/).
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin cxone-skill-operator \
    && install -D -m 0755 target/release/cxone-skill-operator /out/cxone-skill-operator

FROM scratch AS prebuilt
# prebuilt-bin is a build context, not a stage.
# hadolint ignore=DL3022
COPY --from=prebuilt-bin cxone-skill-operator /out/cxone-skill-operator

FROM ${BINARY_STAGE} AS binary

# ---- runtime ----------------------------------------------------------------------------------
# Distroless: glibc and libgcc (what the binary links), CA certificates, no shell, no package
# manager; the :nonroot tag runs as 65532.
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cxone-skill-operator" \
      org.opencontainers.image.description="Kubernetes operator that trains NICE CXone AI skills from SkillTrainingJob resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

COPY --from=binary /out/cxone-skill-operator /cxone-skill-operator

# Numeric, so the kubelet can verify runAsNonRoot.
USER 65532:65532
# Metrics (8080) and probes (8081) of `run`; the simulator listens on 8089.
EXPOSE 8080 8081 8089
ENTRYPOINT ["/cxone-skill-operator"]
CMD ["run"]
