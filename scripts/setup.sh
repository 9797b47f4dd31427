#!/usr/bin/env bash
# Installs everything Gatehouse needs on Debian 12 (as root): system packages, the ONNX Runtime shared
# library and the models. Idempotent: each step is skipped when its result is already in place.
#   scripts/setup.sh            everything
# Only the package registries are used (Debian, PyPI, crates.io); every download is pinned by sha256.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

APT_PACKAGES=(clang libclang-dev libopencv-dev pkg-config ffmpeg libsqlite3-dev ca-certificates python3-pip python3-venv
  mosquitto openssl libssl-dev curl chromium chromium-driver faketime
  # GStreamer's RTSP server and its Python bindings: the RTSP camera test serves a lane video with them
  # and a lane may read it through a GStreamer pipeline (gst: sources; avdec_h264 is in libav)
  gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup, or Debian's cargo-web) first" >&2
  exit 1
fi

"$root/scripts/fetch-models.sh"
echo "setup: ok"
