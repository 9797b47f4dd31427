"""The project's own train/validation split of the benchmark's developers' half.

A frame is in the validation split when the first 8 hex digits of sha1("<set>/<image>") are divisible by 5
(about 20%). `gatehouse eval --split val` uses the same rule (src/eval.rs), so reported figures never come
from images a model was trained on.
"""
import hashlib


def endtoend_plates(bench):
    """(set, split, image path, (x, y, w, h), text) for every labelled end-to-end frame, us then eu then br."""
    import os

    for s in ("us", "eu", "br"):
        d = os.path.join(bench, "endtoend", s)
        with open(os.path.join(d, "labels.tsv")) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) < 6:
                    continue
                box = tuple(int(v) for v in p[1:5])
                yield s, "val" if is_val(s, p[0]) else "train", os.path.join(d, p[0]), box, p[5]


def is_val(set_name: str, image: str) -> bool:
    h = hashlib.sha1(f"{set_name}/{image}".encode()).hexdigest()
    return int(h[:8], 16) % 5 == 0
