"""Cleans and splits the real Brazilian plate crops of openalpr-train-detector (issue 21).

    python3 models/train/br_crops.py --src ../shared/datasets/openalpr-train-detector/br --out /tmp/brcrops \
        [--review models/train/br_review.tsv] [--reads EVAL_OUTPUT]

The dataset (`labels.csv`: `file,region,plate`, 745 crops of 364 plates) is labelled from the photos' file
names, which are sometimes wrong: a crop may show another vehicle's plate, and a name may disagree with the
plate (O against Q, for instance). The rule, applied in this order:

(a) Format. A Brazilian plate is LLLNNNN (old grey and red plates) or LLLNLNN (Mercosul). A label that
    matches neither is fixed when exactly one look-alike substitution at one position (O/Q/D <-> 0,
    I <-> 1, B <-> 8, S <-> 5, Z <-> 2, G <-> 6) makes it match (one resulting text, not several), and is
    dropped otherwise ("bad format"). (All 745 labels of the 2026-12-04 copy already match a format.)
(b) Review. Every crop that the committed reader (models/plate_reader.onnx, `gatehouse eval DIR --region br`,
    2026-12-04) reads differently from its label was looked at by eye, judged from the image alone (the
    reader's read is never taken unless the image clearly shows it), and the decision recorded in
    `br_review.tsv` (file, action keep|fix|drop, label, reason):
    - keep: the image agrees with the label, or cannot tell it apart from a look-alike (e.g. D/O/Q on a
      blurred plate, or a bolt under an O that looks like the tail of a Q): the label stands;
    - fix: the image clearly shows a character other than the label's, and the plate is otherwise the
      label's (one character differs, or the same characters are in another order, e.g. 6571 -> 6157): the
      label becomes what the image shows;
    - drop "other vehicle": the image clearly shows a different registration (two or more characters
      differ), i.e. another vehicle's plate from the same photo, or a misnamed photo;
    - drop "unreadable": a person could not read the whole plate from the crop (no plate, glare, noise).
    Crops where reader and label agree are kept as they are (not reviewed). This script only applies the
    review file; it never runs the reader. `--reads` takes a saved `gatehouse eval ... --region br` output
    and lists the misreads the review file does not cover (a reader change may need new review lines).

Split by plate text, never by file, so all crops of one plate fall on the same side: a crop is in the
validation part when int(sha1("brcrops/" + PLATE).hexdigest()[:8], 16) % 5 == 0 (about 20%, the spirit of
split.py), PLATE being its cleaned label (the raw label for a dropped crop).

Writes, in the crops format of `gatehouse eval` (`image,region,plate`, absolute image paths; each folder is
named `br` so that eval applies the Brazilian format prior):
- OUTDIR/train/br/labels.csv: the training part, cleaned;
- OUTDIR/val/br/labels.csv: the validation part, cleaned;
- OUTDIR/val-raw/br/labels.csv: the validation plates' crops with their raw labels, nothing dropped.
Prints the counts (kept, fixed, dropped per reason, per split). Deterministic: same input, same files.
"""
import argparse
import csv
import hashlib
import os
import re
import sys
from collections import Counter

FORMATS = (re.compile(r"[A-Z]{3}[0-9]{4}"), re.compile(r"[A-Z]{3}[0-9][A-Z][0-9]{2}"))
LOOKALIKE_GROUPS = ("OQD0", "I1", "B8", "S5", "Z2", "G6")
REVIEW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "br_review.tsv")


def normalize(text):
    return "".join(c for c in text.upper() if c.isascii() and c.isalnum())


def is_plate(text):
    return any(f.fullmatch(text) for f in FORMATS)


def format_fix(label):
    """Rule (a): (label, None) when it matches a format, (fixed, "format") when exactly one look-alike
    substitution at one position makes it match, else (None, "bad format")."""
    if is_plate(label):
        return label, None
    found = set()
    for i, c in enumerate(label):
        for group in LOOKALIKE_GROUPS:
            if c in group:
                for alt in group:
                    t = label[:i] + alt + label[i + 1:]
                    if alt != c and is_plate(t):
                        found.add(t)
    if len(found) == 1:
        return found.pop(), "format"
    return None, "bad format"


def is_val(plate):
    return int(hashlib.sha1(f"brcrops/{plate}".encode()).hexdigest()[:8], 16) % 5 == 0


def load_labels(src):
    """[(file, raw plate)] from SRC/labels.csv (`file,region,plate`, a header line allowed), sorted by file."""
    out = []
    with open(os.path.join(src, "labels.csv"), newline="") as f:
        for row in csv.reader(f):
            if len(row) < 3 or row[0].strip().lower() in ("file", "image"):
                continue
            out.append((row[0].strip(), row[2].strip()))
    return sorted(out)


def load_review(path):
    """{file: (action, label, reason)} from the review TSV (lines starting with # are comments)."""
    out = {}
    with open(path, newline="") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            p = line.split("\t")
            if p[0] == "file":
                continue
            if len(p) != 4 or p[1] not in ("keep", "fix", "drop"):
                sys.exit(f"{path}:{n}: expected file, keep|fix|drop, label, reason (tab-separated)")
            if p[0] in out:
                sys.exit(f"{path}:{n}: {p[0]} reviewed twice")
            out[p[0]] = (p[1], normalize(p[2]), p[3])
    return out


def drop_kind(reason):
    """The reason's category for the counts: its text before any parenthesis."""
    return reason.split("(")[0].strip().rstrip(";") or "dropped"


def clean(src, review_path=REVIEW):
    """The rule applied to SRC: one dict per crop, sorted by file, with file, path (absolute), raw (label as
    given), label (cleaned; None when dropped), how ("kept", "fixed (format)", "fixed (review)" or
    "dropped: REASON") and split ("train" or "val")."""
    review = load_review(review_path)
    labels = load_labels(src)
    known = {f for f, _ in labels}
    unknown = sorted(set(review) - known)
    if unknown:
        sys.exit(f"{review_path}: files not in {src}/labels.csv: {', '.join(unknown[:5])}")
    out = []
    for file, raw in labels:
        norm = normalize(raw)
        label, why = format_fix(norm)
        how = "kept" if why is None else ("fixed (format)" if label else "dropped: bad format")
        if file in review:
            action, rlabel, reason = review[file]
            if action != "fix" and rlabel not in (norm, label):
                sys.exit(f"{review_path}: {file} is recorded with label {rlabel}, the dataset says {raw}")
            if action == "fix":
                if not is_plate(rlabel):
                    sys.exit(f"{review_path}: {file}: fixed label {rlabel} is not a Brazilian plate")
                label, how = rlabel, "fixed (review)"
            elif action == "drop":
                label, how = None, f"dropped: {drop_kind(reason)}"
        key = label if label is not None else norm
        out.append({"file": file, "path": os.path.abspath(os.path.join(src, file)), "raw": raw, "label": label,
                    "how": how, "split": "val" if is_val(key) else "train"})
    return out


def write_set(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("image,region,plate\n")
        for image, plate in rows:
            f.write(f"{image},br,{plate}\n")


def check_reads(items, reads_path, review_path):
    """Lists the misreads in a saved `gatehouse eval` output that the review file does not cover."""
    reviewed = load_review(review_path)
    files = {it["file"] for it in items}
    missing = []
    with open(reads_path) as f:
        for line in f:
            m = re.match(r"miss (\S+): truth (\S*) read (\S*)", line.strip())
            if m:
                name = os.path.basename(m.group(1))
                if name in files and name not in reviewed:
                    missing.append(f"{name} (label {m.group(2)}, read {m.group(3) or '-'})")
    print(f"misreads in {reads_path} not in the review file: {len(missing)}")
    for s in missing:
        print(f"  {s}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="the dataset folder (holding labels.csv and the crops)")
    ap.add_argument("--out", required=True, help="output folder for train/br, val/br and val-raw/br")
    ap.add_argument("--review", default=REVIEW, help="review decisions (default: models/train/br_review.tsv)")
    ap.add_argument("--reads", help="saved output of gatehouse eval SRC --region br: list unreviewed misreads")
    args = ap.parse_args()
    items = clean(args.src, args.review)
    write_set(os.path.join(args.out, "train", "br", "labels.csv"),
              [(it["path"], it["label"]) for it in items if it["split"] == "train" and it["label"]])
    write_set(os.path.join(args.out, "val", "br", "labels.csv"),
              [(it["path"], it["label"]) for it in items if it["split"] == "val" and it["label"]])
    write_set(os.path.join(args.out, "val-raw", "br", "labels.csv"),
              [(it["path"], normalize(it["raw"])) for it in items if it["split"] == "val"])
    for split in ("train", "val", "all"):
        part = [it for it in items if split == "all" or it["split"] == split]
        c = Counter(it["how"] for it in part)
        plates = len({it["label"] for it in part if it["label"]})
        kept = sum(1 for it in part if it["label"])
        detail = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
        print(f"{split}: {len(part)} crops -> {kept} kept ({plates} plates); {detail}")
    if args.reads:
        check_reads(items, args.reads, args.review)
    print(f"wrote {args.out}/train/br, {args.out}/val/br, {args.out}/val-raw/br")


if __name__ == "__main__":
    main()
