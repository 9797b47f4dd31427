#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running demo gate:
# installs what is needed, builds, renders the demo video, loads the demo allowlist, runs the daemon.
# Stop it with Ctrl-C: the relay goes to its safe state and queued events are committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
cargo build --release --locked
bin=target/release/gatehouse
mkdir -p var/demo
[ -f var/demo/demo.avi ] || "$bin" demo video var/demo/demo.avi
"$bin" check-config config/demo.toml
"$bin" allowlist --config config/demo.toml import config/demo-allowlist.csv
exec "$bin" run --config config/demo.toml
