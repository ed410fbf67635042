#!/usr/bin/env bash
# Builds the Debian package of messiah for PostgreSQL 15, the way pgrx extensions ship their
# releases: `cargo pgrx package` (release build) wrapped with dpkg-deb. The package holds the
# library, both extensions' control files and every SQL script (install and upgrade
# scripts), and depends on postgresql-15. Every server that holds tenant databases needs it.
#   scripts/package.sh            build target/package/postgresql-15-messiah_<version>_<arch>.deb
#   scripts/package.sh --install  build it, install it with dpkg -i, and check that dpkg -L
#                                 lists every file (what `make install` does)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ARCH=$(dpkg --print-architecture)
NAME=postgresql-15-messiah
OUT=target/package
STAGE=$OUT/root
DEB=$OUT/${NAME}_${VERSION}_${ARCH}.deb

rm -rf "$STAGE" && mkdir -p "$STAGE"
cargo pgrx package --profile release --pg-config "$PG_CONFIG" --out-dir "$STAGE" >"$OUT.log" 2>&1 || { cat "$OUT.log"; exit 1; }
EXT=$STAGE$("$PG_CONFIG" --sharedir)/extension
LIB=$STAGE$("$PG_CONFIG" --pkglibdir)
# messiah_tenant, the tenant-side extension (its functions are in the same library), and the
# hand-written upgrade scripts
sed "s/@VERSION@/$VERSION/" messiah_tenant.control.in >"$EXT/messiah_tenant.control"
cp sql/messiah_tenant.sql "$EXT/messiah_tenant--$VERSION.sql"
for f in sql/messiah--*--*.sql sql/messiah_tenant--*--*.sql; do
    [ -e "$f" ] && cp "$f" "$EXT/"
done
mkdir -p "$STAGE/DEBIAN"
cat >"$STAGE/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: messiah developers <messiah@localhost>
Depends: postgresql-15
Section: database
Priority: optional
Description: multi-tenant SaaS control plane inside PostgreSQL 15
 messiah: a tenant catalog, a database per tenant created by one SQL call, typed custom
 fields enforced by triggers, routing into tenant databases on any registered server,
 caches, health, metrics and fleet operations. Install it on the admin server and on every
 server that holds tenant databases; add messiah to shared_preload_libraries.
EOF
dpkg-deb --root-owner-group -Zgzip --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"

if [ "${1:-}" = "--install" ]; then
    dpkg -i "$DEB" >"$OUT.dpkg.log" 2>&1 || { cat "$OUT.dpkg.log"; exit 1; }
    listed=$(dpkg -L "$NAME")
    (cd "$STAGE" && find . -type f ! -path './DEBIAN/*' | sed 's|^\.||') | while read -r f; do
        grep -qxF "$f" <<<"$listed" || { echo "package: dpkg -L $NAME does not list $f" >&2; exit 1; }
        cmp -s "$STAGE$f" "$f" || { echo "package: $f differs from the package's" >&2; exit 1; }
    done
fi
