# nodeimg: build, test, lint, bench.
#   make node    build a containerd node image (recipes/containerd-debian.toml)
#                for linux/amd64 and linux/arm64, one OCI image index, each
#                on a minimal Debian 12 base made with mmdebstrap (the arm64
#                one under qemu-user: about 20 minutes, once)
#   make build   release build of the nodeimg binary
#   make install release build, then install it with its manual pages and
#                bash, zsh and fish completions under $(DESTDIR)$(PREFIX)
#                (PREFIX=/usr/local by default); make install-files installs
#                an already built $(INSTALL_BIN) the same way
#   make test    install test dependencies, build the fixture base, run every
#                test (unit and end-to-end), then lint; what .ci/run calls
#   make e2e     only the end-to-end tests (tests/), the boot proof among them
#   make boot    only the boot proof (tests/e2e/boot.rs): the node images and
#                their bare base booted under QEMU, the nodes' state read back
#   make boot-arm64  the arm64 node (containerd-debian on an arm64 base, arm64
#                packages) and its bare base booted under qemu-system-aarch64;
#                not in make test: the arm64 base is made once with mmdebstrap
#                under qemu-user, about 20 minutes on 2 cores (cached in build/)
#   make lint    rustfmt and clippy, warnings are errors
#   make bench   time and peak memory of builds, as root: the node image cold,
#                warm and rebuilt after one sysctl change (rootfs and OCI base);
#                the base compressed, against pigz and zstd; the packages layer,
#                against apt-get in a chroot and dpkg-deb | pigz; rebuilds on
#                generated bases of 100 MB to 2 GB (scripts/bench)
#   make fuzz    mutation fuzzing of the parsers of hostile input, longer than
#                the bounded run in make test (FUZZ_ITERS inputs per parser,
#                a random seed, printed; FUZZ_SEED=N repeats a run)

SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
export CARGO_TERM_PROGRESS_WHEN ?= never

# The Debian mirror packages are installed from: by default the first Debian
# archive this machine's apt configuration names (scripts/lib-apt.sh).
MIRROR ?= $(shell . scripts/lib-apt.sh && debian_mirror)

.PHONY: node build install install-files test e2e boot boot-arm64 lint bench fuzz deps fixtures

build:
	$(CARGO) build --release

PREFIX ?= /usr/local
INSTALL_BIN ?= target/release/nodeimg
BINDIR = $(DESTDIR)$(PREFIX)/bin
MAN1DIR = $(DESTDIR)$(PREFIX)/share/man/man1
BASHDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d

install: build
	$(MAKE) --no-print-directory install-files

# The manual pages and completions come from the binary itself (the same
# definitions as --help), generated in a temporary folder, then installed.
install-files:
	@set -eu; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	"$(INSTALL_BIN)" man --out-dir "$$tmp/man" >/dev/null; \
	"$(INSTALL_BIN)" completions bash >"$$tmp/nodeimg.bash"; \
	"$(INSTALL_BIN)" completions zsh >"$$tmp/_nodeimg"; \
	"$(INSTALL_BIN)" completions fish >"$$tmp/nodeimg.fish"; \
	install -d "$(BINDIR)" "$(MAN1DIR)" "$(BASHDIR)" "$(ZSHDIR)" "$(FISHDIR)"; \
	install -m 0755 "$(INSTALL_BIN)" "$(BINDIR)/nodeimg"; \
	install -m 0644 "$$tmp"/man/*.1 "$(MAN1DIR)/"; \
	install -m 0644 "$$tmp/nodeimg.bash" "$(BASHDIR)/nodeimg"; \
	install -m 0644 "$$tmp/_nodeimg" "$(ZSHDIR)/_nodeimg"; \
	install -m 0644 "$$tmp/nodeimg.fish" "$(FISHDIR)/nodeimg.fish"; \
	echo "installed $(BINDIR)/nodeimg, its manual pages in $(MAN1DIR) and completions"

node:
	scripts/install-test-deps --node
	$(MAKE) --no-print-directory build
	scripts/make-node-base --arch amd64 build/node-base.tar
	scripts/make-node-base --arch arm64 build/node-base-arm64.tar
	@[ -n "$(MIRROR)" ] || { echo "error: no Debian mirror; pass MIRROR=URL" >&2; exit 1; }
	target/release/nodeimg build recipes/containerd-debian.toml --var mirror=$(MIRROR) \
		--platform linux/amd64,linux/arm64 \
		--base linux/amd64=rootfs:build/node-base.tar \
		--base linux/arm64=rootfs:build/node-base-arm64.tar -o out/containerd-debian
	@echo "node image: out/containerd-debian (OCI layout, tag latest: an image index of linux/amd64 and linux/arm64)"

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

boot: deps
	$(CARGO) build -p nodeimg-cli
	$(CARGO) test -p nodeimg-e2e --test boot

boot-arm64:
	scripts/install-test-deps --arm64
	$(CARGO) build -p nodeimg-cli
	$(CARGO) test -p nodeimg-e2e --test boot -- --ignored arm64_node_boots_with_its_configuration

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps fixtures build
	scripts/bench

FUZZ_ITERS ?= 50000
FUZZ_SEED ?= $(shell date +%s)
fuzz:
	NODEIMG_FUZZ_ITERS=$(FUZZ_ITERS) NODEIMG_FUZZ_SEED=$(FUZZ_SEED) \
		$(CARGO) test -p nodeimg --lib fuzz -- --nocapture
