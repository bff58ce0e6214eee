# syntax=docker/dockerfile:1.7
# Image of cxone-skill-operator: the operator (`run`, the default command) and the CXone API
# simulator (`simulate`) in one static-like, shell-less, non-root image.
#
#   docker build -t cxone-skill-operator:0.1.0 --build-arg VERSION=0.1.0 .

# ---- build ------------------------------------------------------------------------------------
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src

# Dependencies first: this layer is rebuilt only when Cargo.toml or Cargo.lock change. The
# placeholder sources let cargo compile every dependency without the real code.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/domain.rs \
    && cargo build --release --locked --bin cxone-skill-operator \
    && rm -rf src benches target/release/.fingerprint/cxone-skill-operator-*

# The real sources; only the crate itself is compiled here.
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin cxone-skill-operator \
    && install -D -m 0755 target/release/cxone-skill-operator /out/cxone-skill-operator

# ---- runtime ----------------------------------------------------------------------------------
# Distroless: glibc and libgcc (what the binary links), CA certificates, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cxone-skill-operator" \
      org.opencontainers.image.description="Kubernetes operator that trains NICE CXone AI skills from SkillTrainingJob resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/cxone-skill-operator /cxone-skill-operator

# 65532 is distroless' "nonroot"; numeric so runAsNonRoot can be verified by the kubelet.
USER 65532:65532
# Metrics and probes of `run`; the simulator listens on 8089.
EXPOSE 8080 8081 8089
ENTRYPOINT ["/cxone-skill-operator"]
CMD ["run"]
