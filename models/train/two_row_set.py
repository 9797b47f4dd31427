"""Writes a synthetic evaluation set of two-row plates for `gatehouse eval`.

    python3 models/train/two_row_set.py --bench ../shared/datasets/openalpr-bench --out /tmp/two_row
    gatehouse eval /tmp/two_row --region none

The benchmark has no two-row (motorcycle, trailer, Brazilian two-row) plates, so this set puts one into
each validation-split frame (models/train/split.py) of the end-to-end us/eu/br sets: the real plate is
painted over with the colour around it and a rendered two-row plate (plate_detector.render_two_row_plate,
its own seed, so not a plate the detector trained on) is pasted in its place, about 0.5-0.7 of the car
plate's width as on a real motorcycle. Writes the frames and labels.tsv (IMAGE X Y W H PLATE).
"""
import argparse
import os
import random
import sys

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plate_detector import render_two_row_plate  # noqa: E402
from split import endtoend_plates  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    lines = []
    for s, split, path, (x, y, w, h), _ in endtoend_plates(args.bench):
        if split != "val":
            continue
        im = Image.open(path).convert("RGB")
        arr = np.asarray(im)
        ring = arr[max(0, y - 4):y + h + 4, max(0, x - 4):x + w + 4].reshape(-1, 3)
        im.paste(tuple(int(v) for v in ring.mean(0)), (x, y, x + w, y + h))
        letters, digits = "ABCDEFGHJKLMNPRSTUVWXYZ", "123456789"  # no O/0 or I/1 doubt in the truth
        top = "".join(rng.choice(letters) for _ in range(rng.randint(2, 3)))
        bottom = "".join(rng.choice(digits) for _ in range(rng.randint(3, 4)))
        plate = render_two_row_plate(rng, max(24, int(w * rng.uniform(0.5, 0.7))), (top, bottom))
        if rng.random() < 0.3:
            plate = plate.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        px = x + (w - plate.width) // 2
        py = max(0, y + h - plate.height)
        im.paste(plate, (px, py))
        name = f"{s}-{os.path.splitext(os.path.basename(path))[0]}.jpg"
        im.save(os.path.join(args.out, name), quality=92)
        lines.append(f"{name}\t{px}\t{py}\t{plate.width}\t{plate.height}\t{top}{bottom}\n")
    with open(os.path.join(args.out, "labels.tsv"), "w") as f:
        f.writelines(lines)
    print(f"wrote {len(lines)} frames to {args.out}")


if __name__ == "__main__":
    main()
