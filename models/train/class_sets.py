"""Writes the per-class evaluation sets of issue 21 from the validation frames of the benchmark.

    python3 models/train/class_sets.py --bench ../shared/datasets/openalpr-bench --out /tmp/classes
    gatehouse eval /tmp/classes            # one row per class folder

Every set is made from the validation split (models/train/split.py) of the end-to-end us/eu/br frames, one
output frame per labelled plate, so no model saw these photos in training. Everything is seeded by the
image's name: the same command writes the same files. Each leaf folder is named for its region (us, eu, br)
so `gatehouse eval` applies that region's format prior, and holds labels.tsv (IMAGE X Y W H PLATE).

- scale/<bucket>/<region>: the frame re-framed as a 1280 x 720 camera image in which the plate is a given
  width: 80, 120 and 180 px, then 20%, 30%, 45% and 60% of the frame's width (256 to 768 px: the car stopped
  at the gate). The plate's centre lands at a seeded place in the middle of the frame; where the new view
  reaches past the photo, the photo's edge pixels are repeated (no second copy of the plate).
- light/dusk/<region>: colour kept, the whole frame dimmed (gamma 1.5, gain 0.3) with sensor noise
  (sigma 5) and JPEG quality 80, as a colour camera sees a plate under weak street light.
- light/ir/<region>: what a monochrome gate camera with an infrared illuminator sees: luminance only; the
  scene dimmed (gamma 1.6, gain 0.3); the plate made retro-reflective (its own 5th..95th luminance
  percentiles stretched so the background is near white and the characters stay dark, edges feathered);
  a glare halo around it (the bright plate blurred by a third of its height, added at 40%); on half the
  frames two headlight blooms beside it; then a slight blur (sigma 0.7), noise (sigma 6), JPEG quality 75.
- pose/<kind><degrees>/<region>: the frame as a camera mounted crooked or beside the lane sees it, turned
  about the plate's centre (pose.py): roll10 and roll15 rotate it by 10 and 15 degrees, shear10 and shear20
  slope its rows by 10 and 20 degrees with the strokes kept upright; the direction is seeded per image, the
  corners the turn uncovers are grey, and the label box is the turned plate's bounding box (the box a
  detector draws around a tilted plate).
- text/real/<region>: the validation frames, untouched, that have text near the plate: lines found by the
  PP-OCRv4 text detector (models/ch_PP-OCRv4_det_infer.onnx, probability > 0.3) that do not touch the
  plate's box (grown by 10%), are at least 0.4 of the plate's height tall and at least twice as wide as
  tall, and whose centre is within 2.5 plate widths of the plate's centre in x and in y (fleet and phone
  numbers, dealer frames, signs). `text_real.tsv` beside it lists each frame's lines.
- text/painted/<region>: every validation frame with a fleet or phone number painted on the body next to
  the plate (above it or beside it, 0.7 to 1.2 times the plate's character height, dark or light ink,
  plate-like strings such as "4471", "FLEET 2714" or "555-0134"), so a reader that ranks any text line
  like a plate reads it instead.
"""
import argparse
import hashlib
import os
import random
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from split import endtoend_plates  # noqa: E402
import pose  # noqa: E402

OUT_W, OUT_H = 1280, 720
SCALE_BUCKETS = [("080px", 80), ("120px", 120), ("180px", 180), ("20pct", 256), ("30pct", 384), ("45pct", 576),
                 ("60pct", 768)]
POSE_BUCKETS = [("roll10", "roll", 10), ("roll15", "roll", 15), ("shear10", "shear", 10), ("shear20", "shear", 20)]
FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
]


def seeded(*parts):
    return random.Random(int(hashlib.sha1("/".join(str(p) for p in parts).encode()).hexdigest()[:12], 16))


class Writer:
    """One leaf folder: frames and labels.tsv."""

    def __init__(self, root, *path):
        self.dir = os.path.join(root, *path)
        os.makedirs(self.dir, exist_ok=True)
        self.lines = []

    def add(self, name, im, box, text, quality=92):
        im.save(os.path.join(self.dir, name), quality=quality)
        x, y, w, h = (int(round(v)) for v in box)
        self.lines.append(f"{name}\t{x}\t{y}\t{w}\t{h}\t{text}\n")

    def close(self):
        with open(os.path.join(self.dir, "labels.tsv"), "w") as f:
            f.writelines(self.lines)
        return len(self.lines)


def reframe(arr, box, plate_px, rng):
    """A 1280 x 720 view of `arr` in which the plate box is `plate_px` wide (edge pixels repeated outside)."""
    x, y, w, h = box
    k = plate_px / w
    win_w, win_h = OUT_W / k, OUT_H / k
    fx = plate_px / OUT_W
    u = rng.uniform(max(0.3, fx / 2 + 0.03), min(0.7, 1 - fx / 2 - 0.03)) if fx < 0.9 else 0.5
    fy = plate_px * h / w / OUT_H
    v = rng.uniform(max(0.4, fy / 2 + 0.03), min(0.75, 1 - fy / 2 - 0.03))
    left = x + w / 2 - u * win_w
    top = y + h / 2 - v * win_h
    # pad with edge pixels so the window never leaves the array
    pad = int(max(0, -left, -top, left + win_w - arr.shape[1], top + win_h - arr.shape[0])) + 2
    padded = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    im = Image.fromarray(padded)
    l, t = left + pad, top + pad
    out = im.transform((OUT_W, OUT_H), Image.EXTENT, (l, t, l + win_w, t + win_h), Image.BICUBIC)
    return out, ((x - left) * k, (y - top) * k, w * k, h * k)


def noise(arr, sigma, rng):
    return arr + np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, sigma, arr.shape)


def dusk(arr, rng):
    a = arr.astype(np.float32) / 255.0
    a = (a ** 1.5) * 0.3 * 255.0
    return Image.fromarray(np.clip(noise(a, 5.0, rng), 0, 255).astype(np.uint8))


def infrared(arr, box, rng):
    x, y, w, h = (int(v) for v in box)
    g = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    scene = ((g / 255.0) ** 1.6) * 0.3 * 255.0
    p = g[y:y + h, x:x + w]
    lo, hi = np.percentile(p, 5), np.percentile(p, 95)
    stretched = np.clip((p - lo) / max(1.0, hi - lo), 0, 1)
    bright = 55.0 + 195.0 * stretched ** 0.7
    # feathered mask so the plate's edge is soft, as a lit plate's is
    mask = np.zeros_like(g)
    mask[y:y + h, x:x + w] = 1.0
    f = max(1.0, h * 0.08)
    mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(f)),
                      np.float32) / 255.0
    full = scene.copy()
    full[y:y + h, x:x + w] = bright
    out = scene * (1 - mask) + full * mask
    # glare halo: the lit plate spills light around it
    lit = np.zeros_like(g)
    lit[y:y + h, x:x + w] = bright
    halo = np.asarray(Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(max(2.0, h / 3))), np.float32)
    out = out + 0.4 * halo * (1 - mask)
    if rng.random() < 0.5:  # headlights, blooming in the IR image
        yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]]
        for side in (-1, 1):
            cx = x + w / 2 + side * w * rng.uniform(1.6, 2.6)
            cy = y + h / 2 - h * rng.uniform(0.5, 2.0)
            r = w * rng.uniform(0.25, 0.45)
            out = out + 230.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
    a = np.clip(noise(np.asarray(img, np.float32), 6.0, rng), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([a, a, a], axis=2))


def vehicle_string(rng):
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    return rng.choice([
        d(4), "#" + d(3), "FLEET " + d(4), f"{d(3)}-{d(4)}", f"({d(3)}) {d(3)}-{d(4)}", "UNIT " + d(3),
        "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2)) + " " + d(3),
    ])


def paint_text(im, box, rng):
    """Paints a fleet or phone number on the body next to the plate; returns the string."""
    x, y, w, h = box
    d = ImageDraw.Draw(im)
    s = vehicle_string(rng)
    char_h = h * 0.55 * rng.uniform(0.7, 1.2)
    font = ImageFont.truetype(rng.choice(FONTS), max(8, int(char_h / 0.72)))
    tw = d.textlength(s, font=font)
    where = rng.choice(["above", "left", "right"])
    if where == "above":
        tx, ty = x + w / 2 - tw / 2 + rng.uniform(-0.3, 0.3) * w, y - h * rng.uniform(1.3, 2.5) - char_h
    elif where == "left":
        tx, ty = x - tw - w * rng.uniform(0.3, 0.9), y + rng.uniform(-0.5, 0.5) * h
    else:
        tx, ty = x + w + w * rng.uniform(0.3, 0.9), y + rng.uniform(-0.5, 0.5) * h
    region = np.asarray(im.crop((int(tx), int(ty), int(tx + tw) + 1, int(ty + char_h * 1.4) + 1)).convert("L"))
    ink = (20, 20, 20) if region.size == 0 or region.mean() > 110 else (235, 235, 235)
    d.text((tx, ty), s, fill=ink, font=font)
    return s


def text_lines(sess, arr):
    """PP-OCRv4 text-detector lines (x, y, w, h) in the frame's pixels."""
    H, W = arr.shape[:2]
    k = min(1.0, 960 / max(H, W))
    nh, nw = max(32, int(round(H * k / 32)) * 32), max(32, int(round(W * k / 32)) * 32)
    im = Image.fromarray(arr).resize((nw, nh), Image.BILINEAR)
    x = np.asarray(im, np.float32)[:, :, ::-1] / 255.0  # BGR, as PaddleOCR reads images
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    prob = sess.run(None, {sess.get_inputs()[0].name: x.transpose(2, 0, 1)[None].astype(np.float32)})[0][0, 0]
    mask = prob > 0.3
    # connected components on a 2 x 2 pooled mask (breadth-first, 4-neighbours)
    ph, pw = mask.shape[0] // 2, mask.shape[1] // 2
    m = mask[:ph * 2, :pw * 2].reshape(ph, 2, pw, 2).any(axis=(1, 3))
    seen = np.zeros_like(m)
    lines = []
    for sy, sx in zip(*np.nonzero(m)):
        if seen[sy, sx]:
            continue
        stack, ys, xs = [(sy, sx)], [], []
        seen[sy, sx] = True
        while stack:
            cy, cx = stack.pop()
            ys.append(cy)
            xs.append(cx)
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < ph and 0 <= nx < pw and m[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if len(ys) < 3:
            continue
        # DB maps shrink the text; grow the box back by about half its height (the unclip ratio 1.5)
        x0, x1, y0, y1 = min(xs) * 2, (max(xs) + 1) * 2, min(ys) * 2, (max(ys) + 1) * 2
        g = (y1 - y0) * 0.5
        x0, x1, y0, y1 = x0 - g, x1 + g, y0 - g, y1 + g
        lines.append((x0 / k, y0 / k, (x1 - x0) / k, (y1 - y0) / k))
    return lines


def touches(a, b):
    return not (a[0] + a[2] < b[0] or b[0] + b[2] < a[0] or a[1] + a[3] < b[1] or b[1] + b[3] < a[1])


def near_text(lines, box):
    x, y, w, h = box
    grown = (x - 0.1 * w, y - 0.1 * h, 1.2 * w, 1.2 * h)
    cx, cy = x + w / 2, y + h / 2
    keep = []
    for lx, ly, lw, lh in lines:
        if touches((lx, ly, lw, lh), grown) or lh < 0.4 * h or lw < 2 * lh:
            continue
        if abs(lx + lw / 2 - cx) <= 2.5 * w and abs(ly + lh / 2 - cy) <= 2.5 * w:
            keep.append((lx, ly, lw, lh))
    return keep


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text-detector", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                            "ch_PP-OCRv4_det_infer.onnx"))
    ap.add_argument("--only", choices=["scale", "light", "pose", "text"], action="append",
                    help="write only these classes (repeatable; default all)")
    args = ap.parse_args()
    only = set(args.only or ["scale", "light", "pose", "text"])
    sess = None
    if "text" in only:
        import onnxruntime as ort

        o = ort.SessionOptions()
        o.intra_op_num_threads = 2
        sess = ort.InferenceSession(args.text_detector, o, providers=["CPUExecutionProvider"])
    writers = {}

    def writer(*path):
        if path not in writers:
            writers[path] = Writer(args.out, *path)
        return writers[path]

    found = []
    for n, (s, split, path, box, text) in enumerate(endtoend_plates(args.bench)):
        if split != "val":
            continue
        arr = np.asarray(Image.open(path).convert("RGB"))
        stem = os.path.splitext(os.path.basename(path))[0]
        name = f"{stem}-{n}.jpg"
        if "scale" in only:
            for bucket, px in SCALE_BUCKETS:
                im, b = reframe(arr, box, px, seeded("scale", bucket, name))
                writer("scale", bucket, s).add(name, im, b, text)
        if "light" in only:
            writer("light", "dusk", s).add(name, dusk(arr, seeded("dusk", name)), box, text, quality=80)
            writer("light", "ir", s).add(name, infrared(arr, box, seeded("ir", name)), box, text, quality=75)
        if "pose" in only:
            x, y, w, h = box
            for bucket, kind, deg in POSE_BUCKETS:
                sign = seeded("pose", bucket, name).choice([-1, 1])
                im, (b,) = pose.apply(Image.fromarray(arr), [box], kind, sign * deg, (x + w / 2, y + h / 2),
                                      resample=Image.BICUBIC)
                writer("pose", bucket, s).add(name, im, b, text)
        if "text" in only:
            lines = near_text(text_lines(sess, arr), box)
            if lines:
                writer("text", "real", s).add(name, Image.fromarray(arr), box, text, quality=95)
                found.append((f"{s}/{name}", lines))
            im = Image.fromarray(arr.copy())
            paint_text(im, box, seeded("paint", name))
            writer("text", "painted", s).add(name, im, box, text)
    for path, w in sorted(writers.items()):
        print(f"{'/'.join(path)}: {w.close()} frames")
    if "text" in only:
        with open(os.path.join(args.out, "text", "text_real.tsv"), "w") as f:
            f.write("# frame\tlines near the plate (x,y,w,h in the frame's pixels)\n")
            for p, lines in found:
                f.write(p + "\t" + " ".join(",".join(str(int(v)) for v in ln) for ln in lines) + "\n")


if __name__ == "__main__":
    main()
