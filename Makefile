# messiah: see README.md. Every target installs what it needs (scripts/deps.sh) first.
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
CLUSTER := scripts/cluster.sh
PGRX_TEST_DATA := /tmp/messiah-pgrx-test

.PHONY: deps install tenant-extension cluster stop demo test lint unit regress integration bench clean

deps:
	@scripts/deps.sh

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
EXTDIR = $(shell $(PG_CONFIG) --sharedir)/extension

# Builds messiah (release: the build users get) and installs it into the system PostgreSQL
# 15 (we are root): the messiah extension, and messiah_tenant, the tenant-side extension that
# every tenant database carries (same library).
install: deps
	@cargo pgrx install --release --pg-config $(PG_CONFIG) >/tmp/messiah-install.log 2>&1 \
	  || { cat /tmp/messiah-install.log; exit 1; }
	@$(MAKE) -s tenant-extension

# The tenant-side extension's control and script files (no build: its functions are in the
# library `make install` builds).
tenant-extension:
	@sed 's/@VERSION@/$(VERSION)/' messiah_tenant.control.in > $(EXTDIR)/messiah_tenant.control
	@cp sql/messiah_tenant.sql $(EXTDIR)/messiah_tenant--$(VERSION).sql

cluster: install
	@$(CLUSTER) start

stop:
	@$(CLUSTER) stop

demo: deps
	@scripts/demo.sh

lint: deps
	cargo fmt --check
	cargo clippy --all-targets --features "pg15 pg_test integration" -- -D warnings

# Unit tests (pure Rust) and #[pg_test]s, in pgrx's own throwaway cluster.
unit: deps tenant-extension
	rm -rf $(PGRX_TEST_DATA)
	cargo pgrx test pg15 --runas postgres --pgdata $(PGRX_TEST_DATA)

# SQL suites (pg_regress, expected output in pg_test/expected) against a fresh cluster.
regress: install
	@$(CLUSTER) start --fresh >/dev/null
	scripts/regress.sh

# Multi-session, multi-database tests in tests/ against a fresh cluster.
integration: install
	@$(CLUSTER) start --fresh >/dev/null
	MESSIAH_TEST_HOST=/tmp/messiah-cluster MESSIAH_TEST_PORT=28815 \
	  cargo test --features integration --test integration -- --test-threads=4

test: lint unit regress integration
	@echo "make test: all suites passed"

bench: deps
	@scripts/bench.sh

clean:
	-@$(CLUSTER) stop
	rm -rf /tmp/messiah-cluster $(PGRX_TEST_DATA)
	cargo clean
