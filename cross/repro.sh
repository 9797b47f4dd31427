#!/usr/bin/env bash
# Reproducibility check: builds the release binary twice from this tree, each time from an empty target
# folder (no build output shared), and packages each; then compares the sha256 of the stripped binaries
# and of the .deb files.
#   cross/repro.sh            prints both hashes and "reproducible" or the first difference; exit 1 if not
# Takes two full release builds (about 12 minutes on 2 cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Both builds run in the same folder (object-file paths feed LLVM's symbol suffixes), one after the other
# from nothing, as two packagers building the same commit at the same path would.
dir=target/repro
for side in a b; do
  rm -rf "$dir"
  echo "repro: build $side in $dir" >&2
  cargo build --release --locked --quiet --target-dir "$dir" --bin gatehouse
  mkdir -p "target/repro-$side"
  strip --strip-debug -o "target/repro-$side/gatehouse.stripped" "$dir/release/gatehouse"
  rm -rf "target/repro-$side/dist"
  DEB_COMPRESS=xz cross/deb.sh --bin "$dir/release/gatehouse" --out "target/repro-$side/dist" >/dev/null
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
