#!/usr/bin/env bash
# Builds the Debian package an installer flashes or installs:
#   cross/deb.sh [--bin PATH] [--arch amd64|arm64] [--ort PATH] [--out DIR]
# Defaults: target/release/gatehouse, the build machine's architecture, vendor/onnxruntime/libonnxruntime.so.1
# (scripts/setup.sh fetches it), dist/. Models: every file models/manifest.toml names.
# DEB_COMPRESS (xz, gzip, zstd, none) picks the compressor; tests use gzip for speed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bin=target/release/gatehouse
arch=$(dpkg --print-architecture)
ort=vendor/onnxruntime/libonnxruntime.so.1
out=dist
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --ort) ort=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "deb.sh: unknown argument $1 (see the header of $0)" >&2; exit 64 ;;
  esac
done
for f in "$bin" "$ort" models/manifest.toml; do
  [ -f "$f" ] || { echo "deb.sh: $f is missing (build first; scripts/setup.sh fetches the runtime and models)" >&2; exit 66; }
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
p=$stage/pkg
install -D -m 0755 "$bin" "$p/usr/bin/gatehouse"
# Debug info stays in the build tree (target/); STRIP names the target's strip for cross builds.
"${STRIP:-strip}" --strip-debug "$p/usr/bin/gatehouse"
install -D -m 0644 "$ort" "$p/usr/lib/gatehouse/libonnxruntime.so.1"
# Every model file the manifest names, with the manifest and the license notices.
install -d -m 0755 "$p/usr/share/gatehouse/models"
install -m 0644 models/manifest.toml models/LICENSE* "$p/usr/share/gatehouse/models/"
for f in $(sed -n 's/^file = "\(.*\)"/\1/p' models/manifest.toml); do
  [ -f "models/$f" ] || { echo "deb.sh: models/$f is missing (run scripts/setup.sh)" >&2; exit 66; }
  install -m 0644 "models/$f" "$p/usr/share/gatehouse/models/"
done
install -D -m 0644 config/retention/us-states.toml "$p/usr/share/gatehouse/retention/us-states.toml"
install -D -m 0644 systemd/gatehouse.service "$p/lib/systemd/system/gatehouse.service"
install -D -m 0644 systemd/gatehouse-credentials.service "$p/lib/systemd/system/gatehouse-credentials.service"
install -D -m 0755 systemd/seal-master-key.sh "$p/usr/lib/gatehouse/seal-master-key"
install -D -m 0644 systemd/60-gatehouse.rules "$p/lib/udev/rules.d/60-gatehouse.rules"
install -D -m 0644 systemd/gatehouse.sysusers "$p/usr/lib/sysusers.d/gatehouse.conf"
install -D -m 0644 README.md "$p/usr/share/doc/gatehouse/README.md"
install -D -m 0644 docs/operations.md "$p/usr/share/doc/gatehouse/operations.md"
install -D -m 0644 docs/recognition.md "$p/usr/share/doc/gatehouse/recognition.md"
install -m 0644 docs/protocol.md config/gatehouse.toml "$p/usr/share/doc/gatehouse/"
# The site config: the reference, pointed at the installed models. Readable by the service group only.
install -d -m 0750 "$p/etc/gatehouse"
sed -e 's|^manifest = .*|manifest = "/usr/share/gatehouse/models/manifest.toml"|' \
    -e 's|^trusted_keys = .*|trusted_keys = { "cloud-2026a" = "/etc/gatehouse/keys/cloud-2026a.pub" }|' \
    config/gatehouse.toml > "$p/etc/gatehouse/gatehouse.toml"
chmod 0640 "$p/etc/gatehouse/gatehouse.toml"
install -D -m 0644 config/keys/cloud-2026a.pub "$p/etc/gatehouse/keys/cloud-2026a.pub"
cat > "$p/usr/share/doc/gatehouse/copyright" <<'COPY'
Gatehouse: Apache-2.0. ONNX Runtime (/usr/lib/gatehouse): MIT. The plate detector model is the project's
own (Apache-2.0). The plate reader model is fine-tuned from PaddleOCR's PP-OCRv4 recogniser (Apache-2.0),
see /usr/share/gatehouse/models/LICENSE-PP-OCRv4.txt.
COPY

install -d "$p/DEBIAN"
cat > "$p/DEBIAN/control" <<CTRL
Package: gatehouse
Version: $version
Architecture: $arch
Maintainer: Gatehouse engineers <gatehouse@localhost>
Section: misc
Priority: optional
Depends: libopencv-videoio406, libopencv-imgcodecs406, libopencv-imgproc406, libopencv-core406, libssl3, libc6, libgcc-s1, systemd
Description: entrance gate daemon for gated communities (license-plate camera)
 Reads plates from the lane cameras with its own ONNX models, checks them against a
 signed, cloud-synced allowlist kept in SQLite, drives the gate relay over GPIO and
 uploads every gate event with store-and-forward. Plates only: no faces, no biometrics.
CTRL
echo /etc/gatehouse/gatehouse.toml > "$p/DEBIAN/conffiles"
echo /etc/gatehouse/keys/cloud-2026a.pub >> "$p/DEBIAN/conffiles"
cat > "$p/DEBIAN/postinst" <<'POST'
#!/bin/sh
# Creates the service user, gives its group the config, enables (does not start) the service: the site
# config must be filled in first (`gatehouse check-config /etc/gatehouse/gatehouse.toml`).
# Honours DPKG_ROOT, so it also works for installs into an image (dpkg --root --force-script-chrootless).
set -e
if [ "$1" = configure ]; then
  R="${DPKG_ROOT:-}"
  systemd-sysusers --root="${R:-/}" "$R/usr/lib/sysusers.d/gatehouse.conf"
  gid=$(awk -F: '$1 == "gatehouse" { print $3 }' "$R/etc/group")
  uid=$(awk -F: '$1 == "gatehouse" { print $3 }' "$R/etc/passwd")
  chown "0:$gid" "$R/etc/gatehouse" "$R/etc/gatehouse/gatehouse.toml"
  install -d -m 0750 -o "$uid" -g "$gid" "$R/var/lib/gatehouse"
  if [ -z "$R" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    systemctl enable gatehouse.service || true
    udevadm control --reload-rules 2>/dev/null || true
    echo "gatehouse: installed and enabled. Edit /etc/gatehouse/gatehouse.toml, check it with"
    echo "  gatehouse check-config /etc/gatehouse/gatehouse.toml, then: systemctl start gatehouse"
  fi
fi
exit 0
POST
cat > "$p/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  # Stopping puts the relay in its configured safe state.
  systemctl stop gatehouse.service || true
  systemctl disable gatehouse.service || true
fi
exit 0
PRERM
cat > "$p/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
# Purge keeps /var/lib/gatehouse: it may hold events under legal hold. Remove it deliberately.
set -e
if [ "$1" = purge ]; then
  echo "gatehouse: /var/lib/gatehouse (events, crops, audit log) was kept; delete it deliberately."
fi
exit 0
POSTRM
chmod 0755 "$p/DEBIAN/postinst" "$p/DEBIAN/prerm" "$p/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/gatehouse_${version}_${arch}.deb"
# Reproducible: every file dated SOURCE_DATE_EPOCH (default: the last commit's time), which dpkg-deb also
# uses for the archive members; dpkg-deb sorts the entries itself.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
find "$p" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$p" "$deb" >/dev/null
echo "$deb"
