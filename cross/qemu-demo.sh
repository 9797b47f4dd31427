#!/usr/bin/env bash
# Runs the aarch64 build under qemu-aarch64 on a rendered lane video and compares its gate decisions with
# the x86-64 build's on the same video, config and allowlist. Exits non-zero when they differ.
#   cross/qemu-demo.sh [--arm BIN] [--x86 BIN]
# Defaults: target/aarch64/aarch64-unknown-linux-gnu/release/gatehouse (cross/build-aarch64.sh) and
# target/release/gatehouse. Needs root for `unshare -m`: ONNX Runtime reads /proc/cpuinfo, which under
# user-mode qemu describes the x86 host and makes it crash, so an aarch64 cpuinfo is bind-mounted over it
# in a private mount namespace (the host's own /proc is untouched).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

arm=target/aarch64/aarch64-unknown-linux-gnu/release/gatehouse
x86=target/release/gatehouse
while [ $# -gt 0 ]; do
  case "$1" in
    --arm) arm=$2; shift 2 ;;
    --x86) x86=$2; shift 2 ;;
    *) echo "qemu-demo.sh: unknown argument $1 (see the header of $0)" >&2; exit 64 ;;
  esac
done
S=$root/target/sysroot-arm64
for f in "$arm" "$x86" "$S/lib/ld-linux-aarch64.so.1" vendor/onnxruntime-arm64/libonnxruntime.so.1 \
  vendor/onnxruntime/libonnxruntime.so.1; do
  [ -e "$f" ] || { echo "qemu-demo: $f is missing (cross/build-aarch64.sh, scripts/setup.sh, cargo build --release)" >&2; exit 66; }
done
command -v qemu-aarch64-static >/dev/null || { echo "qemu-demo: qemu-aarch64-static missing (apt-get install qemu-user-static)" >&2; exit 66; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Emulation is slow (ONNX Runtime's NEON kernels under qemu: 5-20 s a frame, ~100x native), so the lane
# replays the video (`replay = true`: every frame recognised, timed by the video's own clock) and both
# builds see exactly the same frames at the same video times. One frame a second keeps it short.
"$x86" demo video "$work/lane.avi" --plates HXP4729,MWK3974,TRV8633 --fps 1 --seconds 3 --gap 2 >/dev/null
cat > "$work/allow.csv" <<'CSV'
plate,kind,host,unit,valid_from,valid_until
HXP4729,resident,Ana Diaz,12B,,
TRV8633,blocked,,,,
CSV
config() { # name onnxruntime-library
  cat > "$work/$1.toml" <<EOF
[site]
name = "qemu comparison"
timezone = "UTC"
data_dir = "$work/$1"

[recognize]
manifest = "$root/models/manifest.toml"
onnxruntime = "$root/$2"
detector_max_side = 640

[relays.main]
kind = "simulated"
log = "$work/$1/relay.jsonl"

[[lanes]]
name = "entry"
source = "$work/lane.avi"
relay = "main"
roi = { x = 0.0, y = 0.15, width = 1.0, height = 0.85 }
at_end = "stop"
replay = true
EOF
}
# The CPUs the aarch64 build is run as: a Cortex-A76 (the target the README's estimate is for: dot
# products, no SVE or SME) and a Cortex-A72 (no dot products, as in a Raspberry Pi 4: ONNX Runtime's other
# int8 kernels). QEMU_CPU names one instead. Under qemu's `max` CPU, which has SME, ONNX Runtime 1.31 picks
# other int8 kernels and the int8 reader read no plate (2026-12-07); the lane's start-up check
# (src/recognize/self_check.rs) then falls back to the manifest's float reader, which reads right, and the
# run's warnings below say so. QEMU_CPU=max shows that.
cpus=${QEMU_CPU:-cortex-a76 cortex-a72}
config x86 vendor/onnxruntime/libonnxruntime.so.1
for cpu in $cpus; do config "arm-$cpu" vendor/onnxruntime-arm64/libonnxruntime.so.1; done

cpuinfo() { # cpu: an aarch64 /proc/cpuinfo for it (ONNX Runtime picks its kernels from it)
  local features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
  local variant=0x3 part=0xd0b
  if [ "$1" = cortex-a72 ]; then features="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"; variant=0x0; part=0xd08; fi
  cat > "$work/cpuinfo-$1" <<CPU
processor	: 0
BogoMIPS	: 50.00
Features	: $features
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: $variant
CPU part	: $part
CPU revision	: 1

CPU
}
# Runs the aarch64 binary with the given arguments under qemu as $cpu, with its cpuinfo.
arm_run() {
  unshare -m sh -c 's=$1; c=$2; shift 2; mount --bind "$0" /proc/cpuinfo && exec qemu-aarch64-static -cpu "$c" -L "$s" "$@"' \
    "$work/cpuinfo-$cpu" "$S" "$cpu" "$arm" "$@"
}

decisions() { # name runner...
  local name=$1; shift
  "$@" allowlist -c "$work/$name.toml" import "$work/allow.csv" >/dev/null
  local t0=$SECONDS
  "$@" run -c "$work/$name.toml" > "$work/$name.log" 2>&1 || { cat "$work/$name.log" >&2; return 1; }
  echo "qemu-demo: $name run took $((SECONDS - t0)) s" >&2
  "$@" events -c "$work/$name.toml" list --json --limit 100 --purpose "aarch64 emulation check" \
    | python3 -c 'import json,sys; [print(e["plate"], e["action"], e["reason_code"]) for e in sorted((json.loads(l) for l in sys.stdin if l.strip()), key=lambda e: e["at"])]'
}

echo "qemu-demo: $(file -b "$arm" | cut -d, -f1-2)" >&2
# The models each side loads (the x86-64 build picks its plate detector by CPU: without VNNI the unsigned one).
echo "qemu-demo: x86-64 $("$x86" --version | tail -1)" >&2
decisions x86 "$x86" > "$work/x86.txt"
echo "x86-64 decisions:"; sed 's/^/  /' "$work/x86.txt"
if ! [ -s "$work/x86.txt" ]; then
  echo "qemu-demo: the x86-64 run decided nothing" >&2; exit 1
fi
for cpu in $cpus; do
  cpuinfo "$cpu"
  decisions "arm-$cpu" arm_run > "$work/arm-$cpu.txt"
  echo "aarch64 (qemu, $cpu) decisions:"; sed 's/^/  /' "$work/arm-$cpu.txt"
  # Its warnings (e.g. a reader that failed the start-up check and the fallback the lane reads with).
  grep -E ' (WARN|ERROR) ' "$work/arm-$cpu.log" | cut -c1-400 | sed 's/^/  /' >&2 || true
  if diff -u "$work/x86.txt" "$work/arm-$cpu.txt"; then
    echo "qemu-demo: same decisions on aarch64 ($cpu) as on x86-64"
  else
    echo "qemu-demo: the aarch64 decisions ($cpu) differ" >&2
    tail -20 "$work/arm-$cpu.log" >&2
    exit 1
  fi
done
