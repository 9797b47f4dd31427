"""Scores a model manifest on every recognition set at once, so one change is judged on all of them.

    python3 models/train/broad_eval.py --bench ../shared/datasets/openalpr-bench \
        --classes /tmp/classes --brcrops /tmp/brcrops [--tworow /tmp/tworow] [--models MANIFEST] [--passes]

The validation sets are small (29 US frames: one frame is 3.4 points), so a retrained model is judged on
the sum over all of them rather than on one: the bench's end-to-end validation frames (us, eu, br), its US
crops' validation part, the cleaned Brazilian crops' validation part (`br_crops.py --out BRCROPS`), the
class sets (`class_sets.py --out CLASSES`: scale, light, camera pose, vehicle text) and, when given, the synthetic
two-row set (`two_row_set.py --out TWOROW`). `--passes` adds the whole-pass benchmark (`gatehouse
eval-passes`) on the us, eu and br validation frames. Every figure comes from the release binary's `eval`
(`--json`); nothing here reads an image. Prints one line per set (exact reads / plates, plates found) and
the totals; `--json FILE` writes them for comparison.
"""
import argparse
import json
import os
import subprocess
import sys


def run(binary, args):
    out = subprocess.run([binary] + args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--classes", required=True, help="class_sets.py --out folder")
    ap.add_argument("--brcrops", required=True, help="br_crops.py --out folder")
    ap.add_argument("--tworow", help="two_row_set.py --out folder")
    ap.add_argument("--models", help="model manifest (default: the binary's)")
    ap.add_argument("--binary", default="target/release/gatehouse")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", action="store_true", help="also the whole-pass benchmark on us/eu/br validation")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--arg", action="append", default=[], help="a further argument for every eval (repeatable), "
                    "e.g. --arg=--spare-plates=0")
    args = ap.parse_args()
    common = ["--threads", str(args.threads), "--json"] + (["--models", args.models] if args.models else []) + args.arg
    rows = []

    def plain(name, path, extra):
        r = run(args.binary, ["eval", path] + extra + common)
        n = r["frames"]
        found = r.get("detection_recall")
        rows.append((name, round(r["exact_top1"] * n), n, None if found is None else round(found * n)))

    e2e = os.path.join(args.bench, "endtoend")
    for region in ("us", "eu", "br"):
        plain(f"e2e/{region} val", os.path.join(e2e, region), ["--split", "val"])
    plain("crops/us val", os.path.join(args.bench, "crops", "us"), ["--split", "val"])
    plain("brcrops val", os.path.join(args.brcrops, "val", "br"), ["--region", "br"])
    if args.tworow:
        plain("two-row", args.tworow, ["--region", "none"])
    r = run(args.binary, ["eval", args.classes] + common)
    for c in r["classes"]:
        rows.append((c["class"], c["exact"], c["frames"], c["found"]))
    passes = []
    if args.passes:
        for region in ("us", "eu", "br"):
            p = run(args.binary, ["eval-passes", os.path.join(e2e, region)] + common)
            outcome = [x["outcome"] for x in p["passes"]]
            passes.append((region, outcome.count("correct"), outcome.count("wrong"), len(outcome)))
    width = max(len(r[0]) for r in rows)
    for name, ok, n, found in rows:
        f = "" if found is None else f"  found {found}/{n}"
        print(f"{name:<{width}}  read {ok:>3}/{n:<3} {100 * ok / n:5.1f}%{f}")
    ok, n = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':<{width}}  read {ok:>4}/{n} {100 * ok / n:5.1f}%  found {sum(r[3] or 0 for r in rows)}")
    before = [r for r in rows if not r[0].startswith("pose/")]
    if len(before) < len(rows):
        # the sets the figures before the pose class (2026-12-07, eighth session) were summed over
        ok, n = sum(r[1] for r in before), sum(r[2] for r in before)
        print(f"{'without pose':<{width}}  read {ok:>4}/{n} {100 * ok / n:5.1f}%  found {sum(r[3] or 0 for r in before)}")
    for region, right, wrong, n in passes:
        print(f"passes {region}: right {right}/{n}, wrong plate decided {wrong}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "passes": passes}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
