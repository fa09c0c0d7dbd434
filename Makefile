# maillab: the lab in one command. `make help` lists the targets.
CARGO   ?= cargo
TARGET  := x86_64-unknown-linux-gnu
BIN     := target/$(TARGET)/release/labctl
VARIANT ?= 7

FUZZ_SECS ?= 600

.PHONY: help build image up verify down test bench lint fuzz

help:
	@echo "make build            static release binary ($(BIN))"
	@echo "make image            the labctl:<version> image from that binary (no registry)"
	@echo "make up VARIANT=7     bring the lab of a variant up on Docker"
	@echo "make verify           check every requirement against the running lab"
	@echo "make down             remove every lab"
	@echo "make test             install the test tools (Debian packages) and run every test"
	@echo "make bench            run the benchmarks and print their figures"
	@echo "make lint             cargo fmt --check and clippy -D warnings"
	@echo "make fuzz             run every cargo-fuzz target FUZZ_SECS s (default 600; nightly toolchain)"

# One profile and one target for everything (.cargo/config.toml): the binary
# the tests run is the static binary that goes into the image.
build:
	$(CARGO) build --release --workspace

image: build
	$(BIN) image

up: build
	$(BIN) up --variant $(VARIANT)

verify: build
	$(BIN) verify

down: build
	$(BIN) down --all

test:
	bash .ci/install-test-deps
	$(CARGO) test --release --workspace

bench: build
	bash scripts/bench.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# Nightly only for the fuzz crate (fuzz/, its own workspace); findings are
# minimized into fuzz/regressions/<target>/, which `make test` replays on
# stable. FUZZ_TARGETS="smtp dns" picks targets, FUZZ_JOBS=2 runs two at once.
fuzz:
	FUZZ_SECS=$(FUZZ_SECS) bash scripts/fuzz.sh
