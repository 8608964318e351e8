# Targets are listed by `make help` from their `## ` comments.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.DEFAULT_GOAL := help
.PHONY: help build test lint image demo chart bench fuzz fuzz-targets screenshots

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## Build bin/outbox-relay (`bin/outbox-relay version` names the commit and build time)
	go build -buildvcs=true -trimpath -ldflags "-X main.buildTime=$$(date -u +%Y-%m-%dT%H:%M:%SZ)" -o bin/outbox-relay .

test: ## Every test: Go tests with the race detector on a real PostgreSQL, the chart, a short fuzz run
	scripts/with-postgres.sh go test -race -count=1 ./...
	cd bench/river && GOWORK=off go vet ./... && GOWORK=off go test -count=1 ./...
	$(MAKE) --no-print-directory chart
	$(MAKE) --no-print-directory fuzz

# The release tools `make lint` runs, each built once into bin/<tool>-<version> (a clean clone
# pays the build once; bumping a version builds the new one beside the old).
ACTIONLINT_VERSION ?= v1.7.12
GORELEASER_VERSION ?= v2.17.0
ACTIONLINT = bin/actionlint-$(ACTIONLINT_VERSION)
GORELEASER = bin/goreleaser-$(GORELEASER_VERSION)

lint: $(ACTIONLINT) $(GORELEASER) ## Check gofmt, go vet, go mod tidy, the workflows (actionlint), .goreleaser.yaml
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needs to run on:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	go mod tidy -diff
	$(ACTIONLINT) .github/workflows/*.yml
	$(GORELEASER) check

# actionlint also runs shellcheck on the workflows' run: scripts when shellcheck is installed.
$(ACTIONLINT):
	@echo "go install actionlint $(ACTIONLINT_VERSION) into bin/ (once)"
	GOBIN=$(CURDIR)/tmp/actionlint-$(ACTIONLINT_VERSION) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	@mkdir -p bin && mv tmp/actionlint-$(ACTIONLINT_VERSION)/actionlint $@ && rmdir tmp/actionlint-$(ACTIONLINT_VERSION)

# GoReleaser is large: its first build takes minutes.
$(GORELEASER):
	@echo "go install goreleaser $(GORELEASER_VERSION) into bin/ (once; it takes a few minutes)"
	GOBIN=$(CURDIR)/tmp/goreleaser-$(GORELEASER_VERSION) go install github.com/goreleaser/goreleaser/v2@$(GORELEASER_VERSION)
	@mkdir -p bin && mv tmp/goreleaser-$(GORELEASER_VERSION)/goreleaser $@ && rmdir tmp/goreleaser-$(GORELEASER_VERSION)

IMAGE ?= outbox-relay:dev
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

image: ## Build the container image (IMAGE=outbox-relay:dev) with Docker (BuildKit) or Podman
	@if docker buildx version >/dev/null 2>&1; then \
		set -x; docker buildx build --load --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .; \
	elif command -v podman >/dev/null 2>&1; then \
		set -x; podman build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .; \
	elif command -v docker >/dev/null 2>&1; then \
		echo "make image needs Docker with BuildKit (the buildx plugin) or Podman; this docker has no buildx" >&2; exit 1; \
	else \
		echo "make image needs Docker (with BuildKit) or Podman; neither is installed" >&2; exit 1; \
	fi

demo: ## Show the relay delivering verified webhooks end to end (finds or starts PostgreSQL)
	scripts/with-postgres.sh bash scripts/demo.sh

bench: ## End-to-end benchmark of the real binary (bench/README.md); BENCH_FLAGS=-quick for a smoke run
	scripts/with-postgres.sh go run ./bench $(BENCH_FLAGS)

screenshots: ## Write the console's pictures in docs/ with headless Chromium (finds or starts PostgreSQL)
	SCREENSHOTS=1 scripts/with-postgres.sh go test -count=1 -run '^TestConsoleScreenshots$$' .

HELM_VERSION ?= v3.22.0

chart: ## Lint the Helm chart and test what it renders (builds bin/helm-<version> once)
	@test -x bin/helm-$(HELM_VERSION) || { echo "go install helm $(HELM_VERSION) into bin/ (once)"; \
		GOBIN=$(CURDIR)/tmp/helm-$(HELM_VERSION) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) && \
		mkdir -p bin && mv tmp/helm-$(HELM_VERSION)/helm bin/helm-$(HELM_VERSION); }
	for f in charts/outbox-relay/ci/*-values.yaml; do bin/helm-$(HELM_VERSION) lint --strict charts/outbox-relay -f $$f || exit 1; done
	cd charts/test && go vet ./... && HELM=$(CURDIR)/bin/helm-$(HELM_VERSION) go test -count=1 ./...

FUZZTIME ?= 4s
# package:FuzzTarget pairs run by `make fuzz`, one after the other (go test -fuzz takes one).
FUZZ_TARGETS = ./relay/signature:FuzzVerify ./relay/targets:FuzzValidate ./relay/api:FuzzCreateSubscription \
	./relay/api:FuzzPatchSubscription ./relay/api:FuzzReplay ./relay/deliver:FuzzAppendJSONString \
	./relay/secrets:FuzzOpen ./config:FuzzDurationListDecode ./config:FuzzKeyDecode ./relay/deliver:FuzzHostileAnswer \
	./config:FuzzCheckDatabaseURL ./relay/secrets:FuzzOpenHeaders ./internal/pgtext:FuzzClean ./relay/proxy:FuzzStripPrefix

fuzz: tmp ## Run every fuzz target for FUZZTIME (4s) each (finds or starts PostgreSQL: some need it)
	@scripts/with-postgres.sh $(MAKE) --no-print-directory fuzz-targets

fuzz-targets:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		go test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg >tmp/fuzz.log 2>&1 && continue; \
		if grep -q 'Failing input written' tmp/fuzz.log; then cat tmp/fuzz.log; exit 1; fi; \
		echo "  the fuzzer stopped without a failing input (a loaded machine); once more"; \
		go test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg >tmp/fuzz.log 2>&1 || { cat tmp/fuzz.log; exit 1; }; \
	done

tmp:
	@mkdir -p tmp
