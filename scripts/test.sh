#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
# set-up (idempotent), formatting, lints, unit and integration tests on real parts, then the aarch64
# cross build and its demo under emulation.
# Tests that need ../shared/datasets/openalpr-bench skip with a message when it is absent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
# Training tools for the models/train smoke test (CPU wheels from PyPI; quick when already installed), in a
# virtual environment of the project's: Debian 12's own python3 refuses `pip install` outside one (PEP 668).
# It sees the interpreter's packages (--system-site-packages), and the tests' `python3` is its.
[ -x target/train-venv/bin/python3 ] || python3 -m venv --system-site-packages target/train-venv
export PATH="$root/target/train-venv/bin:$PATH"
python3 -m pip install --quiet --disable-pip-version-check -r models/train/requirements.txt
# qemu-x86_64 for the test that runs this build on an emulated CPU without VNNI (the int8 detector's choice).
if [ "$(uname -m)" = x86_64 ] && [ "$(id -u)" = 0 ] && ! command -v qemu-x86_64-static >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi
# Supply chain: licenses, bans and sources (advisories need a network this machine does not have).
command -v cargo-deny >/dev/null 2>&1 || cargo install --quiet --locked cargo-deny --version 0.20.2
cargo deny --log-level error check licenses bans sources
cargo fmt --check
cargo clippy --release --locked --all-targets -- -D warnings
# The fault tests among them write the fault table's rows (its short form: a one-minute soak).
rm -f target/fault-table.jsonl
cargo test --release --locked
# The cloud-link tests again over MQTT 3.1.1, the configured fallback (the run above used MQTT 5).
GATEHOUSE_FAULT_TABLE=/dev/null GATEHOUSE_TEST_MQTT=3.1.1 cargo test --release --locked --test tests cloud_link
# The fault table from the rows above; fails on any lost committed event or wrong open.
scripts/faults.sh --print
# The aarch64 build (binary and .deb) and its decisions under qemu against the x86-64 build's. Set
# GATEHOUSE_SKIP_CROSS=1 to leave it out on a developer machine; CI always runs it.
if [ "${GATEHOUSE_SKIP_CROSS:-0}" != 1 ]; then
  cross/build-aarch64.sh
  cross/qemu-demo.sh
fi
