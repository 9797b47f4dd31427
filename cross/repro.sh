#!/usr/bin/env bash
# Reproducibility check: builds the release binary twice from this tree, in two target folders (so no
# build output is shared), and packages each; then compares the sha256 of the stripped binaries and of the
# .deb files. Paths that differ between the two builds (the target folders) are remapped, as a packager
# building in a fresh folder would.
#   cross/repro.sh            prints both hashes and "reproducible" or the first difference; exit 1 if not
# Takes two full release builds (about 12 minutes on 2 cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
for side in a b; do
  dir=target/repro-$side
  rm -rf "$dir"
  echo "repro: building in $dir" >&2
  RUSTFLAGS="--remap-path-prefix=$root/$dir=/build/target --remap-path-prefix=$root=/build/src" \
    cargo build --release --locked --quiet --target-dir "$dir" --bin gatehouse
  out=$dir/dist
  DEB_COMPRESS=xz cross/deb.sh --bin "$dir/release/gatehouse" --out "$out" >/dev/null
  strip --strip-debug -o "$dir/gatehouse.stripped" "$dir/release/gatehouse"
done
status=0
for what in gatehouse.stripped "dist/gatehouse_*_$(dpkg --print-architecture).deb"; do
  a=$(sha256sum target/repro-a/$what | cut -d' ' -f1)
  b=$(sha256sum target/repro-b/$what | cut -d' ' -f1)
  if [ "$a" = "$b" ]; then
    echo "repro: $what identical ($a)"
  else
    echo "repro: $what DIFFERS ($a vs $b)"
    status=1
  fi
done
[ $status = 0 ] && echo "repro: reproducible"
exit $status
