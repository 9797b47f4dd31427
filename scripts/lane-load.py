#!/usr/bin/env python3
"""What a lane costs at the gate: the daemon on two 1080p H.264 RTSP cameras (GStreamer's RTSP server on
loopback, scripts/rtsp-serve.py), with every frame read and with motion gating ([lanes.motion]), on an
empty lane and with cars passing. Prints, per run: the daemon's CPU per lane (user + system time over the
measured window, % of one core), frames captured / dropped (newest frame wins) / skipped as still /
recognised, the mean frame age at recognition, decisions, and the time from a frame's capture to the relay
pulsing (p50 / p99 over every opening, from the daemon's "relay pulsed" log lines); then the ratios of
motion-gated to every-frame CPU, measured in this one run.

    python3 scripts/lane-load.py [--fps 15] [--seconds 30] [--lanes 2] [--manifest M]

Needs a release build (cargo build --release), scripts/setup.sh's packages, and the models.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "gatehouse")
PLATES = ["HXP4729", "MWK3974", "TRV8633", "JCY4712"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def lane_video(dir, name, plates, seconds, gap, fps, trim=None):
    """A demo video (still road) scaled to 1080p with a camera's sensor noise, in H.264 at 4 Mbit/s (no
    B-frames, a key frame a second, as IP cameras send)."""
    avi = os.path.join(dir, name + ".avi")
    run(BIN, "demo", "video", avi, "--plates", ",".join(plates), "--seconds", str(seconds), "--gap", str(gap),
        "--still-road")
    mkv = os.path.join(dir, name + ".mkv")
    cut = ["-t", str(trim)] if trim else []
    run("ffmpeg", "-v", "error", "-y", "-i", avi, *cut, "-vf", f"fps={fps},scale=1920:1080:flags=bicubic,noise=alls=3:allf=t",
        "-c:v", "libx264", "-preset", "veryfast", "-g", str(fps), "-bf", "0", "-b:v", "4M", "-maxrate", "4M",
        "-bufsize", "8M", "-pix_fmt", "yuv420p", mkv)
    return mkv


def serve(video, port):
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "scripts", "rtsp-serve.py"), video,
                          "--port", str(port), "--loop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        sys.exit(f"lane-load: the RTSP server did not start: {line}{p.stderr.read()}")
    return p


MANIFEST = os.path.join(ROOT, "models", "manifest.toml")


def config(dir, url, lanes, motion, metrics_port):
    data = os.path.join(dir, "data")
    text = f"""
[site]
name = "lane load"
timezone = "UTC"
data_dir = "{data}"

[recognize]
manifest = "{MANIFEST}"
onnxruntime = "{ROOT}/vendor/onnxruntime/libonnxruntime.so.1"
detector_max_side = 640

[track]
pass_gap_ms = 1000
same_vehicle_s = 5

[metrics]
listen = "127.0.0.1:{metrics_port}"

[logging]
plates = true
"""
    for i in range(lanes):
        text += f"""
[relays.gate{i}]
kind = "simulated"
pulse_ms = 500
cooldown_ms = 1000

[[lanes]]
name = "lane{i}"
source = "{url}"
relay = "gate{i}"
roi = {{ x = 0.0, y = 0.15, width = 1.0, height = 0.85 }}
"""
        if motion:
            text += "[lanes.motion]\nmin_changed = 0.002\nhold_ms = 2000\nidle_read_ms = 2000\n"
    path = os.path.join(dir, "gatehouse.toml")
    with open(path, "w") as f:
        f.write(text)
    for plate in PLATES:
        run(BIN, "allowlist", "--config", path, "add", plate)
    return path


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(gatehouse_[a-z_]+)\{lane="([^"]+)"(?:,le="[^"]+")?\} ([0-9.e+-]+)$', line)
        if m and "_bucket" not in m.group(1):
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def measure(video, lanes, motion, seconds, warmup):
    with tempfile.TemporaryDirectory() as dir:
        port, metrics_port = free_port(), free_port()
        server = serve(video, port)
        cfg = config(dir, f"rtsp://127.0.0.1:{port}/lane", lanes, motion, metrics_port)
        log_path = os.path.join(dir, "daemon.log")
        with open(log_path, "w") as log:
            daemon = subprocess.Popen([BIN, "run", "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(warmup)
            before, cpu0, t0 = scrape(metrics_port), cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(seconds)
            after, cpu1, t1 = scrape(metrics_port), cpu_seconds(daemon.pid), time.monotonic()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            server.terminate()
            server.wait(timeout=10)
        delta = lambda name: sum(after.get((name, f"lane{i}"), 0) - before.get((name, f"lane{i}"), 0)
                                 for i in range(lanes))
        with open(log_path) as f:
            log = f.read()
        relay = [float(x) for x in re.findall(r'capture_to_relay_ms="?([0-9.]+)', log)]
        age_n = delta("gatehouse_frame_age_seconds_count")
        return {
            "cpu_per_lane": (cpu1 - cpu0) / (t1 - t0) / lanes * 100,
            "frames": delta("gatehouse_frames_total"),
            "dropped": delta("gatehouse_frames_dropped_total"),
            "still": delta("gatehouse_frames_still_total"),
            "read": delta("gatehouse_frames_recognized_total") - delta("gatehouse_frames_still_total"),
            "age_ms": delta("gatehouse_frame_age_seconds_sum") / age_n * 1e3 if age_n else float("nan"),
            "rec_ms": (delta("gatehouse_recognition_seconds_sum") / delta("gatehouse_recognition_seconds_count") * 1e3
                       if delta("gatehouse_recognition_seconds_count") else float("nan")),
            "decisions": len(re.findall(r" INFO decision lane=", log)),
            "relay": relay,
        }


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main():
    global MANIFEST
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=30, help="measured window per run")
    ap.add_argument("--warmup", type=float, default=6, help="seconds before the window (models load, streams start)")
    ap.add_argument("--lanes", type=int, default=2)
    ap.add_argument("--manifest", default=MANIFEST, help="model manifest (default: the shipped one)")
    args = ap.parse_args()
    MANIFEST = os.path.abspath(args.manifest)
    if not os.access(BIN, os.X_OK):
        sys.exit("lane-load: build first: cargo build --release")
    for tool in ("ffmpeg", "/usr/bin/python3"):
        if not shutil.which(tool):
            sys.exit(f"lane-load: {tool} missing: run scripts/setup.sh")
    with tempfile.TemporaryDirectory() as dir:
        # An empty lane (the road, no vehicle), and cars: 3 s in view, 3 s apart.
        empty = lane_video(dir, "empty", PLATES[:1], 1, 12, args.fps, trim=11)
        traffic = lane_video(dir, "traffic", PLATES, 3, 3, args.fps)
        print(f"{args.lanes} lanes, 1920x1080 H.264 at {args.fps} fps over RTSP (loopback), "
              f"{args.seconds:.0f} s measured per run after {args.warmup:.0f} s, {os.cpu_count()} CPUs")
        print("| lane video | frames read | CPU per lane (% of a core) | captured | dropped | still | read "
              "| recognition (ms, mean) | frame age (ms) | decisions | capture to relay p50 / p99 (ms, n) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        results = {}
        for name, video in (("empty lane", empty), ("cars every 6 s", traffic)):
            for motion in (False, True):
                r = measure(video, args.lanes, motion, args.seconds, args.warmup)
                results[(name, motion)] = r
                relay = (f"{pct(r['relay'], 50):.0f} / {pct(r['relay'], 99):.0f} ({len(r['relay'])})"
                         if r["relay"] else "-")
                print(f"| {name} | {'on motion' if motion else 'every frame'} | {r['cpu_per_lane']:.1f} "
                      f"| {r['frames']:.0f} | {r['dropped']:.0f} | {r['still']:.0f} | {r['read']:.0f} "
                      f"| {r['rec_ms']:.1f} | {r['age_ms']:.0f} | {r['decisions']} | {relay} |", flush=True)
        for name in ("empty lane", "cars every 6 s"):
            off, on = results[(name, False)], results[(name, True)]
            print(f"{name}: motion-gated / every-frame CPU per lane = {on['cpu_per_lane'] / off['cpu_per_lane']:.2f}")


if __name__ == "__main__":
    main()
