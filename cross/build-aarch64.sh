#!/usr/bin/env bash
# Builds Gatehouse for 64-bit ARM edge boxes (aarch64: Debian arm64, Raspberry Pi OS 64-bit) on plain
# Debian 12 amd64, with no rustup target and no Docker (installers who use cross-rs: see Cross.toml).
#   cross/build-aarch64.sh              the binary and the .deb (dist/gatehouse_*_arm64.deb)
#   cross/build-aarch64.sh --no-deb     the binary only
#   cross/build-aarch64.sh --deps-only  toolchain, sysroot and ONNX Runtime only (for a container image)
# Each step is skipped when its result is already there:
#   1. Debian's Rust (rustc-web 1.96, cargo-web) with the arm64 standard library, the aarch64 gcc, qemu;
#   2. an arm64 sysroot (target/sysroot-arm64) with OpenCV 4.6 and glibc: the arm64 .debs are downloaded
#      with a private apt state (arm64 OpenCV cannot be installed beside the amd64 one) and unpacked;
#   3. the aarch64 ONNX Runtime from its PyPI wheel, sha256 pinned (vendor/onnxruntime-arm64/);
#   4. cargo build --release --locked --target aarch64-unknown-linux-gnu (target dir target/aarch64);
#   5. cross/deb.sh --arch arm64.
# Output: target/aarch64/aarch64-unknown-linux-gnu/release/gatehouse. Run it here under emulation with
# cross/qemu-demo.sh. Debian packages and PyPI are the only sources used.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

deb=1
deps_only=0
for a in "$@"; do
  case "$a" in
    --no-deb) deb=0 ;;
    --deps-only) deps_only=1 ;;
    *) echo "build-aarch64.sh: unknown argument $a (see the header of $0)" >&2; exit 64 ;;
  esac
done

ORT_VERSION=1.31.1
ORT_WHEEL_SHA256=da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3 # manylinux_2_28_aarch64, cp311
TARGET=aarch64-unknown-linux-gnu
S=$root/target/sysroot-arm64
# What the sysroot holds: OpenCV's modules that the daemon links, and the C/C++ runtime to link against.
SYSROOT_PACKAGES=(libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev
  libc6-dev libstdc++-12-dev libgcc-12-dev libssl-dev)
log() { echo "build-aarch64: $*" >&2; }

# 1. Toolchain.
apt_packages=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
  libc6-dev-arm64-cross qemu-user-static clang libclang-dev pkg-config)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  log "adding the arm64 architecture to apt"
  dpkg --add-architecture arm64
  apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# 2. Sysroot.
stamp="$S/.gatehouse-sysroot"
want_stamp="${SYSROOT_PACKAGES[*]}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want_stamp" ]; then
  log "making the arm64 sysroot in $S"
  debs="$root/target/sysroot-arm64.debs"
  state=$(mktemp -d)
  trap 'rm -rf "$state"' EXIT
  : > "$state/status"
  mkdir -p "$debs/partial"
  # An empty dpkg status: apt resolves the whole arm64 closure and only downloads it.
  apt-get -o DPkg::Lock::Timeout=600 -o Debug::NoLocking=1 -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
    -o Dir::State::status="$state/status" -o Dir::Cache::archives="$debs" \
    install --download-only -y -qq --no-install-recommends "${SYSROOT_PACKAGES[@]}" >/dev/null
  rm -rf "$S"
  mkdir -p "$S"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$S"; done
  # Debian 12 keeps some libraries in /lib: merge it into /usr/lib as on a merged-/usr system.
  if [ -d "$S/lib" ] && [ ! -L "$S/lib" ]; then
    cp -a "$S/lib/." "$S/usr/lib/"
    rm -rf "$S/lib"
    ln -s usr/lib "$S/lib"
  fi
  # Absolute symlinks would point into the build machine's own /usr: make them relative.
  python3 - "$S" <<'PY'
import os, sys
S = sys.argv[1]
for dp, dn, fn in os.walk(S):
    for name in dn + fn:
        p = os.path.join(dp, name)
        if os.path.islink(p) and os.readlink(p).startswith("/"):
            t = os.readlink(p)
            os.unlink(p)
            os.symlink(os.path.relpath(S + t, dp), p)
PY
  # BLAS and LAPACK are chosen by update-alternatives on a real system.
  (cd "$S/usr/lib/aarch64-linux-gnu" && ln -sf blas/libblas.so.3 libblas.so.3 && ln -sf lapack/liblapack.so.3 liblapack.so.3)
  echo "$want_stamp" > "$stamp"
fi

# OpenSSL's headers for SQLCipher (libcrypto): Debian splits them between /usr/include/openssl and the
# multiarch folder, which the cross compiler does not search; one folder holds both.
ossl="$S/opt/openssl/include/openssl"
if [ ! -f "$ossl/configuration.h" ]; then
  mkdir -p "$ossl"
  cp -a "$S/usr/include/openssl/." "$ossl/"
  cp -a "$S/usr/include/aarch64-linux-gnu/openssl/." "$ossl/"
fi

# 3. ONNX Runtime for aarch64.
ortdir=vendor/onnxruntime-arm64
if [ ! -f "$ortdir/libonnxruntime.so.$ORT_VERSION" ]; then
  cache="${GATEHOUSE_CACHE:-$root/vendor/cache}"
  mkdir -p "$cache" "$ortdir"
  whl="$cache/onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_aarch64.whl"
  if [ ! -f "$whl" ] || [ "$(sha256sum "$whl" | cut -d' ' -f1)" != "$ORT_WHEEL_SHA256" ]; then
    rm -f "$whl"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
      --python-version 3.11 -d "$cache" "onnxruntime==$ORT_VERSION" >&2
  fi
  got=$(sha256sum "$whl" | cut -d' ' -f1)
  [ "$got" = "$ORT_WHEEL_SHA256" ] || { log "$whl has sha256 $got, expected $ORT_WHEEL_SHA256; refusing it"; exit 1; }
  python3 - "$whl" "$ortdir/libonnxruntime.so.$ORT_VERSION" "$ORT_VERSION" <<'PY'
import sys, zipfile
whl, out, ver = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("capi/libonnxruntime.so." + ver))
    with z.open(name) as src, open(out, "wb") as dst:
        dst.write(src.read())
PY
  log "ONNX Runtime $ORT_VERSION (aarch64) -> $ortdir"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" "$ortdir/libonnxruntime.so.1"
[ "$deps_only" = 1 ] && exit 0

# 4. The build: Debian's cargo and rustc (they know the arm64 std), the aarch64 gcc as linker against the
# sysroot, OpenCV from the sysroot (its pkg-config files would name the build machine's paths).
export PATH=/usr/bin:$PATH
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$S -C link-arg=-Wl,-rpath-link,$S/usr/lib/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export OPENCV_LINK_LIBS=opencv_videoio,opencv_imgcodecs,opencv_imgproc,opencv_core
export OPENCV_LINK_PATHS=$S/usr/lib/aarch64-linux-gnu
export OPENCV_INCLUDE_PATHS=$S/usr/include/opencv4,$S/usr/include/aarch64-linux-gnu/opencv4
# SQLCipher (libsqlite3-sys) links the box's libcrypto (libssl3): Debian's security updates reach it.
export OPENSSL_INCLUDE_DIR=$S/opt/openssl/include
export OPENSSL_LIB_DIR=$S/usr/lib/aarch64-linux-gnu
log "$(cargo --version), target $TARGET"
cargo build --release --locked --target "$TARGET" --target-dir target/aarch64 --bin gatehouse
bin=target/aarch64/$TARGET/release/gatehouse
log "built $bin ($(du -h "$bin" | cut -f1))"

# 5. The package.
if [ "$deb" = 1 ]; then
  STRIP=aarch64-linux-gnu-strip cross/deb.sh --bin "$bin" --arch arm64 --ort "$ortdir/libonnxruntime.so.1" --out dist
fi
