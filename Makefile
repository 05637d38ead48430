# Dragonfly Fleet. `make demo` sets up a fresh Debian/Ubuntu machine (with Go)
# and runs the demo; `make test` runs the whole test suite.
SHELL := /bin/bash
GO ?= go
BIN := bin/dragonfly
# Debian packages the build needs (cgo + libyara) and the tests use.
BUILD_DEPS := build-essential pkg-config libyara-dev libmagic-dev libssl-dev zlib1g-dev liblzma-dev libbz2-dev ca-certificates
TEST_DEPS := yara

.PHONY: demo test build setup setup-test gen gen-check lint-proto fuzz-seed clean

setup:
	@scripts/setup $(BUILD_DEPS)

setup-test: setup
	@scripts/setup $(TEST_DEPS)

build: setup
	$(GO) build -o $(BIN) ./cmd/dragonfly

demo: build
	./$(BIN) scan --demo

test: setup-test
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

clean:
	rm -rf bin
