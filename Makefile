# tenant_guard: every target installs what it needs first (tests/support/deps.sh), on a fresh Debian 12 machine too.
#
#   make demo    build, install, start a throwaway cluster, run the demo application, stop
#   make test    unit tests, in-database tests (pgrx), end-to-end tests against a real cluster
#   make bench   benchmarks on a throwaway cluster, report in bench/results/latest.md
#   make soak    the pooled load through pgbouncer at full size (SOAK_TRANSACTIONS, default 120,000)
#   make fuzz    cargo-fuzz on the token, key-set and ciphertext parsers (FUZZ_RUNS each, default 10,000,000)
#   make install / install-release / fmt / lint / clean

SHELL := /bin/bash
PG_CONFIG := /usr/lib/postgresql/15/bin/pg_config
export PATH := $(HOME)/.cargo/bin:$(PATH)

E2E_DIR    ?= /tmp/tenant_guard-e2e
E2E_PORT   ?= 54329
DEMO_DIR   ?= /tmp/tenant_guard-demo
DEMO_PORT  ?= 54330
BENCH_DIR  ?= /tmp/tenant_guard-bench
BENCH_PORT ?= 54331
SOAK_DIR   ?= /tmp/tenant_guard-soak
SOAK_PORT  ?= 54332
SOAK_TRANSACTIONS ?= 120000
FUZZ_RUNS  ?= 10000000
FUZZ_SECONDS ?= 1800
PGTEST_DIR ?= /tmp/tenant_guard-pgtest

# PostgreSQL refuses to run as root: as root, pgrx runs the test server as the postgres OS user, with its data
# directory somewhere that user can create. As anyone else, installing into the system PostgreSQL needs sudo.
ifeq ($(shell id -u),0)
  PGRX_TEST_ENV := CARGO_PGRX_TEST_RUNAS=postgres CARGO_PGRX_TEST_PGDATA=$(PGTEST_DIR)
  INSTALL_SUDO :=
else
  PGRX_TEST_ENV :=
  INSTALL_SUDO := --sudo
endif

.PHONY: deps install install-release test test-unit test-docs test-pg test-e2e test-fuzz demo bench soak fuzz fmt lint clean

deps:
	@tests/support/deps.sh

install: deps
	cargo pgrx install --pg-config $(PG_CONFIG) $(INSTALL_SUDO)

install-release: deps
	cargo pgrx install --release --pg-config $(PG_CONFIG) $(INSTALL_SUDO)

test: deps
	$(MAKE) test-unit
	$(MAKE) test-docs
	$(MAKE) test-pg
	$(MAKE) test-e2e
	$(MAKE) test-fuzz

## pure-Rust unit tests only (no Postgres needed): the core crate (token, ciphertext, key providers, label grammar,
## redaction)
test-unit:
	cargo test -p tenant_guard_core

## the documentation's relative links and anchors resolve, and the README stays short
test-docs:
	python3 tests/support/check_docs.py

## unit tests and #[pg_test] in-database tests
test-pg: deps
	$(PGRX_TEST_ENV) cargo pgrx test pg15

## end-to-end tests (several connections, COMMIT, session scope, connection options, PyJWT interop)
test-e2e: install
	tests/support/with-cluster.sh $(E2E_DIR) $(E2E_PORT) .venv/bin/python -m pytest -q tests/e2e

## a short run of each fuzz target, so that the harnesses keep building and their seeds keep verifying
test-fuzz:
	$(MAKE) fuzz FUZZ_RUNS=20000

## cargo-fuzz needs nightly compiler flags: RUSTC_BOOTSTRAP=1 allows them on the stable toolchain;
## libFuzzer is C++, built with clang++ (installed by deps.sh; a fresh machine may have no c++)
fuzz: deps
	@cargo fuzz --version 2>/dev/null | grep -q ' 0\.13\.2' || cargo install cargo-fuzz --version 0.13.2 --locked
	for t in token jwks ciphertext; do \
	  CXX=clang++ RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz -O $$t -- \
	    -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

soak: install-release
	tests/support/with-cluster.sh $(SOAK_DIR) $(SOAK_PORT) .venv/bin/python tests/pooled/pgbouncer_load.py \
	  --transactions $(SOAK_TRANSACTIONS) --clients 32 --tenants 16 --pool-size 4

demo: install-release
	tests/support/with-cluster.sh $(DEMO_DIR) $(DEMO_PORT) .venv/bin/python examples/demo.py

bench: install-release
	tests/support/with-cluster.sh $(BENCH_DIR) $(BENCH_PORT) .venv/bin/python bench/run.py

fmt:
	cargo fmt

lint: deps
	@cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1 || rustup component add clippy rustfmt
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --features tenant_guard/pg_test -- -D warnings

clean:
	cargo clean
	rm -rf .venv
	tests/support/cluster.sh stop $(E2E_DIR); tests/support/cluster.sh stop $(DEMO_DIR); tests/support/cluster.sh stop $(BENCH_DIR)
	tests/support/cluster.sh stop $(SOAK_DIR); rm -rf tests/fuzz/target tests/fuzz/artifacts
