#!/usr/bin/env bash
# Installs what building and testing messiah needs, only what is missing (idempotent):
# Debian packages, cargo-pgrx 0.18.1, and `cargo pgrx init` for the system PostgreSQL 15.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
pkgs=(postgresql-15 postgresql-contrib postgresql-server-dev-15 libclang-dev clang sudo python3 bc
      prometheus-postgres-exporter)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.1'; then
    echo "deps: installing cargo-pgrx 0.18.1 (about 4-6 minutes)"
    cargo install cargo-pgrx --version 0.18.1 --locked
fi
if ! grep -qs '^pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg15 "$PG_CONFIG"
fi
# The OpenAPI test validates messiah_openapi() with a well-kept validator.
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
    echo "deps: installing openapi-spec-validator (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator
fi
