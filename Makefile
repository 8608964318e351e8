# Targets are listed by `make help` from their `## ` comments.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.DEFAULT_GOAL := help
.PHONY: help build test lint demo

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  %-8s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## Build bin/outbox-relay, stamped with the git version
	go build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/outbox-relay .

test: ## Run all tests with the race detector against a PostgreSQL found or started for them
	scripts/with-postgres.sh go test -race -count=1 ./...

lint: ## Check gofmt, go vet and that go mod tidy changes nothing
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needs to run on:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	go mod tidy -diff

demo: ## Show the relay delivering verified webhooks end to end (finds or starts PostgreSQL)
	scripts/with-postgres.sh bash scripts/demo.sh
