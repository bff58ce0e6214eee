# cxone-skill-operator — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BIN := target/debug/cxone-skill-operator

.PHONY: bench-smoke demo crds envtest test fmt-check clippy unit guide-example bench build sklearn-vectors fmt help

help: ## Show targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: fmt-check clippy envtest tools unit guide-example demo node-test ## Everything CI checks: format, lints, all tests, the guide's example, the demo, the node layer
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

demo: envtest ## The one-command demo: control plane, simulator, operator, examples/, local registries, live progress, summary
	./hack/oci-tools.sh >/dev/null
	$(CARGO) test --locked --test demo

guide-example: build ## The CXone guide's complete example against the simulator
	./hack/guide-example.sh

bench: envtest tools ## Benchmarks (release build): domain (validation, payload, evaluation), scale scenarios a-i, registry
	$(CARGO) bench --locked --bench domain
	$(CARGO) bench --locked --bench scale
	$(CARGO) bench --locked --bench registry

bench-smoke: envtest ## Reduced scale benchmark (also part of `make test` through cargo test)
	$(CARGO) test --locked --bench scale

sklearn-vectors: ## Regenerate the scikit-learn reference vectors
	"$$(./hack/python-venv.sh)/bin/python" hack/sklearn_vectors.py

crds: build ## Regenerate crds/ from the Rust types, and its copies in the Helm chart and deploy/
	$(BIN) crd > crds/skilltrainingjobs.ai.cxone.io.yaml
	$(MAKE) --no-print-directory chart-crd

# ---- packaging: Helm chart, deploy/ (kustomize), Dockerfile, Argo CD health check -------------
.PHONY: tools chart-crd argocd-cm packaging

tools: ## Install helm, hadolint, kubernetes-validate, docker-registry, htpasswd, the MLflow venv; build argocd-lua and oras (cached outside the repo)
	./hack/tools.sh >/dev/null
	./hack/mlflow-venv.sh >/dev/null
	./hack/oci-tools.sh >/dev/null

chart-crd: ## Copy crds/ into the Helm chart (files/crds/) and deploy/crds/ (tests fail on drift)
	cp crds/skilltrainingjobs.ai.cxone.io.yaml charts/cxone-skill-operator/files/crds/skilltrainingjobs.ai.cxone.io.yaml
	cp crds/skilltrainingjobs.ai.cxone.io.yaml deploy/crds/skilltrainingjobs.ai.cxone.io.yaml

ARGOCD_HEALTH := deploy/argocd/resource_customizations/ai.cxone.io/SkillTrainingJob/health.lua
argocd-cm: ## Regenerate deploy/argocd/argocd-cm.yaml from the Argo CD health check (tests fail on drift)
	{ printf '%s\n' \
	    '# Generated from $(ARGOCD_HEALTH) by `make argocd-cm`; do not edit.' \
	    '# Merge into Argo CD'"'"'s argocd-cm (server-side apply leaves its other keys alone):' \
	    '#   kubectl apply --server-side --field-manager=cxone-skill-operator -n argocd -f deploy/argocd/argocd-cm.yaml' \
	    'apiVersion: v1' 'kind: ConfigMap' 'metadata:' '  name: argocd-cm' '  namespace: argocd' \
	    '  labels:' '    app.kubernetes.io/name: argocd-cm' '    app.kubernetes.io/part-of: argocd' \
	    'data:' '  resource.customizations.health.ai.cxone.io_SkillTrainingJob: |'; \
	  sed -e 's/^\(.\)/    \1/' $(ARGOCD_HEALTH); } > deploy/argocd/argocd-cm.yaml

packaging: tools ## Chart lint/render/schema, deploy/ drift, hadolint, Argo CD health tests, helm install + operator as the chart's ServiceAccount
	$(CARGO) test --locked --test packaging

# ---- a real single-node cluster: the image, helm install, the node layer ----------------------
.PHONY: node-components cluster cluster-down image node-test

node-components: envtest ## Build kubelet, kube-proxy, kube-controller-manager, kube-scheduler, containerd, CoreDNS, pause; install runc, CNI plugins, buildah (cached outside the repo)
	./hack/node/components.sh >/dev/null

cluster: envtest node-components ## Bring up the single-node cluster (root); KUBECONFIG is printed (~/.cache/cxone-skill-operator/node/cluster/kubeconfig)
	@./hack/node/cluster.sh up
	@echo "  export KUBECONFIG=$${XDG_CACHE_HOME:-$$HOME/.cache}/cxone-skill-operator/node/cluster/kubeconfig"
	@echo "  then: make image; helm install … (README: Running on a real node); make cluster-down"

cluster-down: ## Tear the single-node cluster down: no process, mount, cgroup or network namespace left
	./hack/node/cluster.sh down

image: node-components ## Build the image from the Dockerfile with buildah (no daemon) and load it into the node, if up
	./hack/image.sh

node-test: envtest tools node-components ## The node layer: image, single-node cluster, helm install/upgrade, GC, PodSecurity, OCI registration (tests/node.rs)
	$(CARGO) clippy --locked --test node -- -D warnings
	$(CARGO) test --locked --test node -- --test-threads=6
