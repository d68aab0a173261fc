# tenant_guard: every target installs what it needs first (tests/support/deps.sh), on a fresh Debian 12 machine too.
#
#   make demo    build, install, start a throwaway cluster, run the demo application, stop
#   make test    unit tests, in-database tests (pgrx), end-to-end tests against a real cluster
#   make bench   benchmarks on a throwaway cluster, report in bench/results/latest.md (and zero-trust.md, pooled.md, tenant-stats.md, citus.md)
#   make soak    the pooled load through pgbouncer at full size (SOAK_TRANSACTIONS, default 120,000)
#   make fuzz    cargo-fuzz on the token, key-set and ciphertext parsers (FUZZ_RUNS each, default 10,000,000)
#   make install / install-release / fmt / lint / clean
#
# PG=17 or PG=18 (make test PG=17): the same targets against that PostgreSQL major, inside a Debian root of the
# release that ships it, built once and cached by tests/support/pgroot.sh. Without PG, PostgreSQL 15 on this machine.

SHELL := /bin/bash
PG ?= 15
VENV ?= .venv
PG_CONFIG := /usr/lib/postgresql/$(PG)/bin/pg_config
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PG

# each major its own port and directory, so that runs for several majors never collide (roots share the network)
E2E_DIR    ?= /tmp/tenant_guard-e2e$(if $(filter 15,$(PG)),,-pg$(PG))
E2E_PORT   ?= $(if $(filter 15,$(PG)),54329,$(if $(filter 17,$(PG)),54339,54349))
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

.PHONY: deps install install-release test test-unit test-docs test-pg test-e2e test-citus test-upgrade upgrade-script test-fuzz demo bench soak fuzz fmt lint package test-package clean

# Another major than the machine's: every target runs in the root that has it (see tests/support/pgroot.sh).
ifneq ($(PG),15)
ifndef TG_IN_ROOT
ROOTED_TARGETS := deps install install-release test test-unit test-docs test-pg test-e2e test-citus test-fuzz demo bench soak
$(ROOTED_TARGETS):
	tests/support/pgroot.sh $(PG) make $@
else
ROOTED_TARGETS :=
endif
else
ROOTED_TARGETS :=
endif

ifeq ($(ROOTED_TARGETS),)

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
	$(if $(filter 15,$(PG)),$(MAKE) test-upgrade)
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
	$(PGRX_TEST_ENV) cargo pgrx test pg$(PG)

## end-to-end tests (several connections, COMMIT, session scope, connection options, PyJWT interop)
test-e2e: install
	tests/support/with-cluster.sh $(E2E_DIR) $(E2E_PORT) $(VENV)/bin/python -m pytest -q --timeout=300 tests/e2e

## the Citus suite (tests/citus/): a coordinator and two workers on this machine. Runs where Citus is installed in
## the PostgreSQL under test, and says it was skipped elsewhere; not part of `make test` (no package registry here has
## Citus: DEVELOPERS.md says how to get it)
test-citus: install
	PG=$(PG) tests/citus/run.sh $(VENV)/bin/python -m pytest -q tests/citus

## the upgrade from 0.1.0 (built from the commit that released it): ALTER EXTENSION UPDATE keeps every row, key and
## label, keeps enforcing, and leaves the catalog equal to a fresh install's. PostgreSQL 15 (0.1.0 supported no other)
test-upgrade: deps
	tests/upgrade/run.sh

## rewrite the upgrade script from the install scripts and sql/upgrades/ (after a change to an SQL object)
upgrade-script: deps
	tests/upgrade/run.sh --write

## a short run of each fuzz target, so that the harnesses keep building and their seeds keep verifying
test-fuzz:
	$(MAKE) fuzz FUZZ_RUNS=20000

## cargo-fuzz needs nightly compiler flags: RUSTC_BOOTSTRAP=1 allows them on the stable toolchain;
## libFuzzer is C++, built with clang++ (installed by deps.sh; a fresh machine may have no c++)
fuzz: deps
	@cargo fuzz --version 2>/dev/null | grep -q ' 0\.13\.2' || cargo install cargo-fuzz --version 0.13.2 --locked --debug
	for t in token jwks ciphertext; do \
	  CXX=clang++ RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz -O $$t -- \
	    -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

soak: install-release
	tests/support/with-cluster.sh $(SOAK_DIR) $(SOAK_PORT) $(VENV)/bin/python tests/pooled/pgbouncer_load.py \
	  --transactions $(SOAK_TRANSACTIONS) --clients 32 --tenants 16 --pool-size 4

demo: install-release
	tests/support/with-cluster.sh $(DEMO_DIR) $(DEMO_PORT) $(VENV)/bin/python examples/demo.py

bench: install-release
	tests/support/with-cluster.sh $(BENCH_DIR) $(BENCH_PORT) $(VENV)/bin/python bench/run.py
	TG_DATA=$(BENCH_DIR) tests/support/with-cluster.sh $(BENCH_DIR) $(BENCH_PORT) $(VENV)/bin/python bench/zero_trust.py
	tests/support/with-cluster.sh $(BENCH_DIR) $(BENCH_PORT) $(VENV)/bin/python bench/pooled_tokens.py
	tests/support/with-cluster.sh $(BENCH_DIR) $(BENCH_PORT) $(VENV)/bin/python bench/tenant_stats.py
	PG=$(PG) CITUS_DIR=/tmp/tenant_guard-bench-citus tests/citus/run.sh $(VENV)/bin/python bench/citus.py

fmt:
	cargo fmt

lint: deps
	@cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1 || rustup component add clippy rustfmt
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --features tenant_guard/pg_test -- -D warnings

endif

## the Debian package postgresql-$(PG)-tenant-guard in target/package/ (PG=15 here; 17 and 18 built in their root)
package:
	packaging/deb.sh

## installs that package into a clean root of its Debian release, preloads it and runs the demo against it
test-package: package
	@$(VENV)/bin/python -c 'import psycopg, jwt' 2>/dev/null || PG=15 tests/support/deps.sh
	packaging/test-deb.sh

clean:
	cargo clean
	rm -rf .venv
	tests/support/cluster.sh stop $(E2E_DIR); tests/support/cluster.sh stop $(DEMO_DIR); tests/support/cluster.sh stop $(BENCH_DIR)
	tests/support/cluster.sh stop $(SOAK_DIR); rm -rf tests/fuzz/target tests/fuzz/artifacts
