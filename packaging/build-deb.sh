#!/usr/bin/env bash
# Builds the Debian package pgsluice_<version>_<arch>.deb with dpkg-deb (no cargo-deb):
#   /usr/bin/pgsluice                       the binary (debug info stripped when strip exists)
#   /lib/systemd/system/pgsluice-*.service  the units from systemd/
#   /etc/pgsluice/pgsluice.toml             the example configuration (a conffile)
#   /usr/share/doc/pgsluice/                docs/*.md, copyright
#   /usr/share/pgsluice/monitoring/         Prometheus alert rules and the Grafana dashboard
# and maintainer scripts that create the `pgsluice` system user (packaging/debian/).
#
# Usage: packaging/build-deb.sh [--binary PATH] [--out DIR] [--compress xz|gzip|none]
# Without --binary it runs `cargo build --release --locked` and packages target/release/pgsluice.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out="target/debian"
compress="xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --compress) compress="$2"; shift 2 ;;
    *) echo "build-deb.sh: unknown argument $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --locked
  binary="target/release/pgsluice"
fi
[ -x "$binary" ] || { echo "build-deb.sh: $binary is not an executable" >&2; exit 2; }
command -v dpkg-deb >/dev/null || { echo "build-deb.sh: dpkg-deb is missing (Debian package dpkg)" >&2; exit 2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

install -D -m 0755 "$binary" "$stage/usr/bin/pgsluice"
if command -v strip >/dev/null; then
  strip --strip-debug "$stage/usr/bin/pgsluice"
fi
for unit in systemd/*.service; do
  install -D -m 0644 "$unit" "$stage/lib/systemd/system/$(basename "$unit")"
done
install -D -m 0640 config/pgsluice.toml "$stage/etc/pgsluice/pgsluice.toml"
for doc in README.md docs/*.md; do
  install -D -m 0644 "$doc" "$stage/usr/share/doc/pgsluice/$(basename "$doc")"
done
install -D -m 0644 packaging/debian/copyright "$stage/usr/share/doc/pgsluice/copyright"
install -D -m 0644 config/pgsluice.toml "$stage/usr/share/doc/pgsluice/examples/pgsluice.toml"
install -D -m 0644 monitoring/alerts.yml "$stage/usr/share/pgsluice/monitoring/alerts.yml"
install -D -m 0644 monitoring/alerts_test.yml "$stage/usr/share/pgsluice/monitoring/alerts_test.yml"
install -D -m 0644 monitoring/grafana/pgsluice.json \
  "$stage/usr/share/pgsluice/monitoring/grafana/pgsluice.json"

# The newest glibc symbol version the binary needs, when objdump can tell.
libc="libc6"
if command -v objdump >/dev/null; then
  glibc=$(objdump -T "$stage/usr/bin/pgsluice" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' \
    | sort -uV | tail -n 1)
  [ -n "$glibc" ] && libc="libc6 (>= $glibc)"
fi

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: pgsluice
Version: $version
Architecture: $arch
Maintainer: pgsluice developers <pgsluice@localhost>
Installed-Size: $size
Depends: $libc, libgcc-s1, passwd
Recommends: postgresql-client
Suggests: etcd-server, prometheus
Section: database
Priority: optional
Description: PostgreSQL connection pooler and replication manager
 pgsluice pools client connections to PostgreSQL (session, transaction and
 statement pooling) and manages a primary with streaming standbys: confirmed
 automatic failover with fencing, switchover without client errors, warm
 candidates. One binary: pgsluice pooler, pgsluice agent and the DBA
 command line. Edit /etc/pgsluice/pgsluice.toml, then
 systemctl start pgsluice-pooler (and pgsluice-agent).
CONTROL
echo "/etc/pgsluice/pgsluice.toml" > "$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done

mkdir -p "$out"
deb="$out/pgsluice_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$deb" >/dev/null
echo "$deb"
