# cxone-skill-operator — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BIN := target/debug/cxone-skill-operator

.PHONY: bench-smoke demo crds envtest test fmt-check clippy unit guide-example bench build sklearn-vectors fmt help

help: ## Show targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: fmt-check clippy envtest unit guide-example demo ## Everything CI checks: format, lints, all tests, the guide's example, the demo
	@echo "make test: all checks passed"

fmt-check: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

fmt: ## Format the code
	$(CARGO) fmt --all

clippy: ## Lints, warnings are errors
	$(CARGO) clippy --all-targets --locked -- -D warnings

envtest: ## Build or locate kube-apiserver, etcd and kubectl for the tests (cached outside the repo)
	./hack/envtest.sh

unit: ## Unit, property and integration tests (loopback simulator, real kube-apiserver + etcd)
	$(CARGO) test --all-targets --locked

build: ## Debug build of the binary
	$(CARGO) build --locked

demo: envtest ## The one-command demo: control plane, simulator, operator, examples/, live progress, summary
	$(CARGO) test --locked --test demo

guide-example: build ## The CXone guide's complete example against the simulator
	./hack/guide-example.sh

bench: envtest ## Benchmarks (release build): domain (validation, payload, evaluation) and scale scenarios a-e
	$(CARGO) bench --locked --bench domain
	$(CARGO) bench --locked --bench scale

bench-smoke: envtest ## Reduced scale benchmark (also part of `make test` through cargo test)
	$(CARGO) test --locked --bench scale

sklearn-vectors: ## Regenerate the scikit-learn reference vectors
	"$$(./hack/python-venv.sh)/bin/python" hack/sklearn_vectors.py

crds: build ## Regenerate crds/ from the Rust types
	$(BIN) crd > crds/skilltrainingjobs.ai.cxone.io.yaml
