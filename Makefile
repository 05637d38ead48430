# Dragonfly Fleet. `make demo` sets up a fresh Debian/Ubuntu machine (with Go)
# and runs the demo; `make test` runs the whole test suite.
SHELL := /bin/bash
GO ?= go
BIN := bin/dragonfly
# Debian packages the build needs (cgo + libyara) and the tests use.
BUILD_DEPS := build-essential pkg-config libyara-dev libmagic-dev libssl-dev zlib1g-dev liblzma-dev libbz2-dev ca-certificates
TEST_DEPS := yara prometheus chromium iproute2 nftables bzip2

.PHONY: demo test test-deploy build setup setup-test gen proto-check clean

include deploy/image.mk

setup:
	@scripts/setup $(BUILD_DEPS)

setup-test: setup
	@scripts/setup $(TEST_DEPS)

# The revision is linked in as for images (deploy/image.mk): Go's own VCS
# stamp is missing where GOFLAGS has -buildvcs=false or git is not usable.
build: setup
	$(GO) build -ldflags "-X github.com/dragonfly-fleet/fleet/version.revision=$(IMAGE_REVISION)" -o $(BIN) ./cmd/dragonfly

# demo runs the whole fleet in one process (coordinator, worker and a
# development Dragonfly API serving the built-in demo packages and rules),
# scans every demo release and prints the reports.
demo: build
	./$(BIN) local --demo

# gen regenerates gen/ from proto/ with buf (pinned in tools/go.mod).
gen:
	$(GO) tool -modfile=tools/go.mod buf generate

# proto-check: buf lint and format are clean and gen/ matches proto/.
proto-check: gen
	$(GO) tool -modfile=tools/go.mod buf lint
	$(GO) tool -modfile=tools/go.mod buf format --diff --exit-code
	git add -N gen && git diff --exit-code -- gen

test: setup-test proto-check
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	@echo "== benchmarks, one iteration each (they must keep compiling and running)"
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./...
	$(MAKE) test-deploy

# test-deploy: the kustomize overlays (with their components) and the Helm
# chart (rendered and linted with Helm v4 as a library, default and
# non-default values) decoded strictly into the real Kubernetes, KEDA and
# Prometheus Operator API types and held to the same checks (a separate
# module, deploy/kubernetes/validate); the Grafana dashboard against the
# exported metrics (promtool required); then the compose fleet on this
# machine's Docker engine: image built offline, dev profile with 3 workers, one
# killed mid-run, every job reported once; and the production settings (secrets
# as files, TLS, no plaintext token) with 2 workers.
test-deploy: setup-test
	cd deploy/kubernetes/validate && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(GO) test -count=1 ./deploy/grafana/
	DRAGONFLY_COMPOSE_TEST=1 $(GO) test -count=1 -timeout 15m -run 'TestCompose' -v ./deploy/compose/

clean:
	rm -rf bin
