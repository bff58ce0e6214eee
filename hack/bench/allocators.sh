#!/usr/bin/env bash
# Compares the operator's memory and CPU with each global allocator on one scale scenario.
#
#   hack/bench/allocators.sh [SCENARIOS] [OUT_DIR]
#
# Builds the operator binary with jemalloc (the default), the system allocator
# (`--no-default-features`) and mimalloc (each copied to target/alloc/), then runs `cargo bench --bench scale`
# with BENCH_SCENARIOS=SCENARIOS (default: g, with BENCH_G_STAGES as set, default 10) against
# each binary, and against the system one with MALLOC_ARENA_MAX=2. Each run's output goes to
# OUT_DIR/<variant>.txt (default target/alloc); the JSON lines carry the variant as "label".
set -euo pipefail
cd "$(dirname "$0")/../.."
scenarios="${1:-g}"
out="${2:-target/alloc}"
mkdir -p "$out" target/alloc
cargo="${CARGO:-cargo}"

# `cargo bench --no-run` builds the binary with the same dependency features as the bench, so
# switching allocators recompiles only this crate (and the allocator).
build() { # variant [cargo feature args...]
  local variant="$1"
  shift
  "$cargo" bench --locked --no-run --bench scale "$@" >&2
  cp target/release/cxone-skill-operator "target/alloc/cxone-skill-operator-$variant"
}
build jemalloc
build mimalloc --no-default-features --features mimalloc
build system --no-default-features

run() { # label binary [env]
  echo "== $1" >&2
  BENCH_LABEL="$1" BENCH_SCENARIOS="$scenarios" BENCH_OPERATOR_BIN="$2" BENCH_OPERATOR_ENV="${3:-}" \
    "$cargo" bench --locked --bench scale | tee "$out/$1.txt"
}
run system target/alloc/cxone-skill-operator-system
run arena2 target/alloc/cxone-skill-operator-system MALLOC_ARENA_MAX=2
run jemalloc target/alloc/cxone-skill-operator-jemalloc
run mimalloc target/alloc/cxone-skill-operator-mimalloc
