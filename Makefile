# nodeimg: build, test, lint, bench.
#   make node    build a containerd node image (recipes/containerd-debian.toml)
#                on a minimal Debian 12 base made with mmdebstrap
#   make build   release build of the nodeimg binary
#   make test    install test dependencies, build the fixture base, run every
#                test (unit and end-to-end), then lint; what .ci/run calls
#   make e2e     only the end-to-end tests (tests/)
#   make lint    rustfmt and clippy, warnings are errors
#   make bench   time and peak memory of builds, against a tar|gzip baseline

SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
export CARGO_TERM_PROGRESS_WHEN ?= never

.PHONY: node build test e2e lint bench deps fixtures

build:
	$(CARGO) build --release

node: build
	scripts/make-node-base build/node-base.tar
	target/release/nodeimg build recipes/containerd-debian.toml \
		--base rootfs:build/node-base.tar -o out/containerd-debian
	@echo "node image: out/containerd-debian (OCI layout, tag latest)"

deps:
	scripts/install-test-deps

fixtures: deps
	scripts/make-test-base

test: deps fixtures
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) --no-print-directory lint

e2e: deps fixtures
	$(CARGO) build --workspace --bins
	$(CARGO) test -p nodeimg-e2e --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps fixtures build
	scripts/bench
