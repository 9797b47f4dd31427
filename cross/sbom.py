#!/usr/bin/env python3
"""Writes the software bill of materials (CycloneDX 1.5 JSON) of what ships in the package:
every Rust crate linked into `gatehouse` for the target (from `cargo metadata --locked`, with the
Cargo.lock checksum and declared license), the ONNX Runtime library and the models (sha256 from
models/manifest.toml and scripts/fetch-models.sh). Usage: cross/sbom.py [--target TRIPLE] [--out FILE]
Offline: cargo metadata reads only the local registry cache; no network is used."""

import argparse
import datetime
import hashlib
import json
import pathlib
import re
import subprocess
import sys
import tomllib
import uuid

root = pathlib.Path(__file__).resolve().parent.parent


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", help="Rust target triple (default: the host)")
    ap.add_argument("--out", default=str(root / "dist" / "gatehouse.cdx.json"))
    a = ap.parse_args()

    cmd = ["cargo", "metadata", "--format-version", "1", "--locked", "--offline"]
    if a.target:
        cmd += ["--filter-platform", a.target]
    meta = json.loads(subprocess.run(cmd, cwd=root, check=True, capture_output=True).stdout)
    lock = tomllib.loads((root / "Cargo.lock").read_text())
    checksums = {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    me = meta["resolve"]["root"]

    # What the shipped binary links: normal dependencies, transitively (not dev- or build-only ones).
    linked, todo = set(), [me]
    while todo:
        nid = todo.pop()
        for d in nodes[nid]["deps"]:
            if any(k["kind"] is None for k in d["dep_kinds"]) and d["pkg"] not in linked:
                linked.add(d["pkg"])
                todo.append(d["pkg"])

    def ref(p):
        return f"pkg:cargo/{p['name']}@{p['version']}"

    components = []
    for pid in sorted(linked, key=lambda i: (packages[i]["name"], packages[i]["version"])):
        p = packages[pid]
        c = {"type": "library", "bom-ref": ref(p), "name": p["name"], "version": p["version"], "purl": ref(p)}
        if p.get("license"):
            c["licenses"] = [{"expression": p["license"]}]
        sum_ = checksums.get((p["name"], p["version"]))
        if sum_:
            c["hashes"] = [{"alg": "SHA-256", "content": sum_}]
        components.append(c)

    fetch = (root / "scripts" / "fetch-models.sh").read_text()
    ort_version = re.search(r'^ORT_VERSION=(\S+)', fetch, re.M).group(1)
    ort = root / "vendor" / "onnxruntime" / "libonnxruntime.so.1"
    c = {"type": "library", "bom-ref": "onnxruntime", "name": "onnxruntime", "version": ort_version,
         "purl": f"pkg:pypi/onnxruntime@{ort_version}", "licenses": [{"license": {"id": "MIT"}}],
         "description": "libonnxruntime.so from the PyPI wheel, installed as /usr/lib/gatehouse/libonnxruntime.so.1"}
    if ort.exists():
        c["hashes"] = [{"alg": "SHA-256", "content": sha256(ort)}]
    components.append(c)
    manifest = tomllib.loads((root / "models" / "manifest.toml").read_text())
    for m in manifest.get("model", []):
        components.append({
            "type": "machine-learning-model", "bom-ref": f"model:{m['file']}", "name": m["file"],
            "version": m["sha256"][:12], "description": f"{m.get('role', '')}: {m.get('license', '')}",
            "hashes": [{"alg": "SHA-256", "content": m["sha256"]}],
        })

    app = packages[me]
    bom = {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "metadata": {
            "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "component": {"type": "application", "bom-ref": ref(app), "name": app["name"],
                          "version": app["version"], "purl": ref(app),
                          "licenses": [{"expression": app.get("license") or "Apache-2.0"}]},
            "properties": [{"name": "target", "value": a.target or "host"}],
        },
        "components": components,
        "dependencies": [{"ref": ref(app), "dependsOn": [ref(packages[i]) for i in sorted(linked)]}],
    }
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bom, indent=1) + "\n")
    print(f"{out}: {len(components)} components ({len(linked)} crates)", file=sys.stderr)


if __name__ == "__main__":
    main()
