# jobset-fleet. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

BIN := $(CURDIR)/bin
export KUBEBUILDER_ASSETS := $(BIN)
CONTROLLER_GEN := go tool controller-gen
GO_TEST_FLAGS ?= -timeout 40m

# Images `make images` builds and `make e2e-kind` runs.
IMG_HUB ?= jobset-fleet/hub:dev
IMG_AGENT ?= jobset-fleet/agent:dev
IMG_WORKLOAD ?= jobset-fleet/workload:dev
export IMG_HUB IMG_AGENT IMG_WORKLOAD

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Build the control-plane binaries into bin/ (cold: ~25 min on 2 cores; warm: seconds).
	hack/tools.sh

.PHONY: tools-kueue
tools-kueue: ## Build bin/kueue-manager from the Kueue version hack/kueue pins (cold: ~4 min on 2 cores; warm: seconds).
	hack/tools.sh kueue-manager

.PHONY: manifests
manifests: ## Regenerate deepcopy code, CRDs, RBAC and webhook manifests.
	hack/generate.sh .

.PHONY: verify-manifests
verify-manifests: ## Fail if generated code or manifests are stale.
	hack/verify-generated.sh

# Stamps --version and jobset_fleet_build_info (VERSION overrides git describe).
LDFLAGS = $(shell hack/ldflags.sh)

.PHONY: verify-charts
verify-charts: ## helm lint and helm template of the charts (bin/helm, built from hack/helm).
	hack/tools.sh helm
	@# With the default values, and with each charts/*/ci/*-values.yaml (the optional objects on).
	for c in charts/jobset-fleet-hub charts/jobset-fleet-agent; do \
		for v in /dev/null $$c/ci/*-values.yaml; do \
			$(BIN)/helm lint --strict --namespace jobset-fleet-system --values $$v $$c; \
			$(BIN)/helm template jobset-fleet $$c --namespace jobset-fleet-system --include-crds --values $$v >/dev/null; \
		done; \
	done

.PHONY: build
build: ## Build the hub, agent and kubectl-fleet binaries into bin/ (stamped with `git describe`, or VERSION).
	go build -ldflags '$(LDFLAGS)' -o $(BIN)/jobset-fleet-hub ./cmd/hub
	go build -ldflags '$(LDFLAGS)' -o $(BIN)/jobset-fleet-agent ./cmd/agent
	go build -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-fleet ./cmd/kubectl-fleet

.PHONY: images
images: ## Build the hub, agent and e2e workload images (static binaries FROM scratch; IMG_HUB, IMG_AGENT, IMG_WORKLOAD).
	hack/images/build.sh hub=$(IMG_HUB) agent=$(IMG_AGENT) workload=$(IMG_WORKLOAD)

.PHONY: release
release: ## dist/: images (docker save), install-{hub,agent}.yaml, binaries, Helm charts, SHA256SUMS, all of VERSION=vX.Y.Z.
	hack/release.sh

.PHONY: e2e-kind-host-setup
e2e-kind-host-setup: ## As root: install Docker and the packages kind needs, configure and start dockerd, raise inotify limits.
	@# The only target that changes the host (make e2e-kind does with E2E_SETUP_HOST=1).
	hack/kind/node-image.sh host

.PHONY: e2e-kind
e2e-kind: ## Kind clusters hub, member-1, member-2 from `make release` (dist/): install, join, e2e tests with real pods. Needs Docker (make e2e-kind-host-setup).
	@# The test harness (e2e/kindfleet) builds the node image and the release
	@# itself; it changes the host only with E2E_SETUP_HOST=1, and otherwise
	@# says what is missing.
	hack/tools.sh kubectl helm
	JOBSET_FLEET_E2E_KIND=1 go test -timeout 45m -count 1 -v ./e2e/kindfleet/

# KUEUE=hub (or 1): Kueue on the hub too; KUEUE=members: Kueue on each
# member, none on the hub (make run KUEUE=..., make dev-up KUEUE=...).
DEVFLEET_FLAGS = $(if $(KUEUE),-kueue=$(KUEUE))

.PHONY: run
run: tools build $(if $(KUEUE),tools-kueue) ## The local fleet (hub, member-1, member-2 as kwok clusters) in the foreground; Ctrl-C tears it down. KUEUE=hub (or 1): with Kueue on the hub; KUEUE=members: on each member.
	go run ./hack/devfleet $(DEVFLEET_FLAGS) run

.PHONY: dev-up
dev-up: tools build $(if $(KUEUE),tools-kueue) ## The local fleet, in the background. KUEUE=hub (or 1): with Kueue on the hub; KUEUE=members: on each member.
	go run ./hack/devfleet $(DEVFLEET_FLAGS) up

.PHONY: dev-down
dev-down: ## Tear the local fleet down.
	go run ./hack/devfleet down

.PHONY: verify-tidy
verify-tidy: ## Fail if go.mod/go.sum are not what `go mod tidy` makes them.
	@go mod tidy -diff || { echo "run 'go mod tidy' and commit the result" >&2; exit 1; }

.PHONY: verify-file-sizes
verify-file-sizes: ## Fail if a tracked file over 1 MiB exists outside generated CRDs and testdata.
	hack/check-file-sizes.sh

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: ## golangci-lint (config .golangci.yml; the first run builds bin/golangci-lint: ~12 min on 2 cores).
	hack/tools.sh golangci-lint
	$(BIN)/golangci-lint run --timeout 10m ./...

.PHONY: test
test: tools tools-kueue verify-manifests verify-charts verify-tidy verify-file-sizes vet lint ## Everything: unit, integration (real apiservers) and e2e (kwok clusters).
	@# End-to-end suites each run whole clusters of processes: one at a time.
	@# Whatever the outcome, nothing the tests started may outlive them.
	rc=0; \
	go test $(GO_TEST_FLAGS) -p 2 $$(go list ./... | grep -v /e2e/) || rc=$$?; \
	go test $(GO_TEST_FLAGS) -p 1 ./e2e/... || rc=$$?; \
	hack/check-leaks.sh || rc=$$?; \
	exit $$rc

.PHONY: test-faults
test-faults: tools ## The whole fault matrix (e2e/integration TestFault*), with the rows that take minutes (partitions healing around the lost timeout, 20 runs).
	FLEET_FAULTS=1 go test $(GO_TEST_FLAGS) -count=1 -run 'TestFault' ./e2e/integration/ ; rc=$$?; hack/check-leaks.sh || rc=$$?; exit $$rc

.PHONY: bench
bench: tools ## Benchmarks.
	go test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-scale
bench-scale: tools tools-kueue build ## Scale benchmark: ours vs upstream JobSet v0.12.0 vs a raw client, the hub vs Kueue MultiKueue, on fresh local clusters (BENCH_ARGS="-n 50 ..."; -h lists them).
	@# Upstream's controller, from the Go module proxy via the hack/upstream tools module.
	cd hack/upstream && go build -o $(BIN)/upstream-jobset sigs.k8s.io/jobset
	go build -o $(BIN)/jobset-fleet-bench ./e2e/bench
	$(BIN)/jobset-fleet-bench $(BENCH_ARGS)

.PHONY: kind-node-image
kind-node-image: ## Build or find the kind node image (Docker; offline-capable).
	hack/kind/node-image.sh
