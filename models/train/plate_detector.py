"""Trains Gatehouse's plate detector and exports it to ONNX.

    python3 models/train/plate_detector.py --bench ../shared/datasets/openalpr-bench \
        --out models/plate_detector.onnx [--steps 2500] [--seed 7]

A small CenterNet-style network (about 0.4 M parameters): a strided CNN with a light top-down path to
stride 8, and three heads there: plate-centre heat map (sigmoid), log box size, and sub-cell offset,
concatenated into one output [1, 5, H/8, W/8] (`--stride 4`: one more top-down step, [1, 5, H/4, W/4]).
Input: BGR, (x/255 - 0.5)/0.5, any size that is a multiple of 32. Trained on the training split (models/train/split.py) of the end-to-end US, EU and BR frames with
their plate boxes, plus synthetic plates rendered with Debian's DejaVu fonts pasted onto those frames
(a quarter of them nearly square two-row plates, as on motorcycles and trailers);
heavy scale/crop/colour augmentation. `--text-negatives P` paints, on a share P of the samples, 1-3
unlabelled lines of vehicle text (phone, fleet and DOT numbers, trade words, web addresses; no border, in
other fonts and colours) beside the plate or anywhere, so that a van's phone number is not taken for its
plate (issue 21). `--real-plates P` pastes, for a share P of the pasted plates, a real whole-plate crop (the
training split of the bench's US crops, and with `--br-crops DIR` the cleaned Brazilian crops' training part)
instead of a rendered one (tried 2026-12-07, not in the committed command; models/train/README.md).
Prints the validation split's recall (IoU >= 0.4) at the end.
Seeded; runs on CPU (about 15 minutes on 2 cores for the committed model's 1600 steps).
"""
import argparse
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from split import endtoend_plates, is_val  # noqa: E402
import pose  # noqa: E402

STRIDE = 8  # --stride
DARK = 0.0  # --dark
SMALL = 0.0  # --small
TEXT = 0.0  # --text-negatives
REAL = 0.0  # --real-plates
POSE = 0.0  # --pose
REAL_PLATES = []  # paths of the real whole-plate crops pasted with --real-plates
PATCH = 320
FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
]

PLATE_COLOURS = [(240, 240, 235), (250, 250, 250), (230, 235, 245), (255, 230, 120), (210, 230, 210)]
INK_COLOURS = [(20, 20, 20), (30, 40, 120), (120, 20, 20), (20, 80, 30)]


def load_real_plates(bench, br_src):
    """The training parts of the real whole-plate crops: the benchmark's US crops (whole plates with their state
    graphics, split by models/train/split.py) and, with --br-crops, the cleaned Brazilian crops (br_crops.py)."""
    out = []
    d = os.path.join(bench, "crops", "us")
    with open(os.path.join(d, "labels.csv")) as f:
        for line in f:
            p = line.strip().split(",")
            if len(p) >= 3 and p[0].lower() != "image" and not is_val("us", p[0]):
                out.append(os.path.join(d, p[0]))
    if br_src:
        from br_crops import clean

        out += [it["path"] for it in clean(br_src) if it["label"] and it["split"] == "train"]
    return sorted(out)


def real_plate(rng, w, cache):
    """A real plate crop (PIL RGB) resized to width w (its aspect jittered by up to 15%), sometimes tilted a little."""
    path = rng.choice(REAL_PLATES)
    if ("real", path) not in cache:
        cache[("real", path)] = Image.open(path).convert("RGB")
    im = cache[("real", path)]
    h = max(4, int(w * im.height / im.width * rng.uniform(0.85, 1.15)))
    im = im.resize((w, h), Image.BILINEAR)
    if rng.random() < 0.3:
        im = im.rotate(rng.uniform(-6, 6), resample=Image.BILINEAR, expand=False, fillcolor=im.getpixel((0, 0)))
    return im


def load_frames(bench):
    frames = {"train": [], "val": []}
    for _, split, path, box, _ in endtoend_plates(bench):
        frames[split].append((path, box))
    return frames


def conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PlateNet(nn.Module):
    def __init__(self, stride=8):
        super().__init__()
        self.stride = stride
        self.s2 = conv(3, 16, 2)
        self.s4 = nn.Sequential(conv(16, 24, 2), conv(24, 24))
        self.s8 = nn.Sequential(conv(24, 48, 2), conv(48, 48))
        self.s16 = nn.Sequential(conv(48, 80, 2), conv(80, 80))
        self.s32 = nn.Sequential(conv(80, 112, 2), conv(112, 112))
        self.l16 = nn.Conv2d(80, 64, 1)
        self.l8 = nn.Conv2d(48, 64, 1)
        self.l4 = nn.Conv2d(24, 64, 1) if stride == 4 else None
        self.t32 = nn.Conv2d(112, 64, 1)
        self.head = nn.Sequential(conv(64, 48), nn.Conv2d(48, 5, 1))
        self.head[-1].bias.data[0] = -2.19  # prior 0.1 for the heat map

    def forward(self, x):
        c4 = self.s4(self.s2(x))
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p = self.t32(c32)
        p = F.interpolate(p, scale_factor=2.0, mode="nearest") + self.l16(c16)
        p = F.interpolate(p, scale_factor=2.0, mode="nearest") + self.l8(c8)
        if self.l4 is not None:
            p = F.interpolate(p, scale_factor=2.0, mode="nearest") + self.l4(c4)
        out = self.head(p)
        return torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:3], torch.sigmoid(out[:, 3:5])], dim=1)


def random_plate_text(rng):
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    digits = "0123456789"
    pattern = rng.choice(["LLLDDDD", "DLLLDDD", "LLDDDD", "DDDLLL", "LLLDDD", "LLDLLDD", "DDLLDDD"])
    return "".join(rng.choice(letters if c == "L" else digits) for c in pattern)


def blank_plate(rng, w, h):
    """An empty bordered plate w x h in a random plate colour: (image, its ImageDraw, the ink colour)."""
    bg = tuple(int(v) for v in rng.choice(PLATE_COLOURS))
    fg = tuple(int(v) for v in rng.choice(INK_COLOURS))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, w - 1, h - 1], outline=fg, width=max(1, h // 20))
    return im, d, fg


def render_plate(rng, w, text=None):
    """A plate image (PIL RGB) of width w with an optional state line and slogan; `text` or a random one."""
    h = max(8, int(w / rng.uniform(1.8, 4.6)))
    im, d, fg = blank_plate(rng, w, h)
    text = text or random_plate_text(rng)
    font = ImageFont.truetype(rng.choice(FONTS), max(6, int(h * rng.uniform(0.45, 0.6))))
    tw = d.textlength(text, font=font)
    if tw > w * 0.92:
        font = ImageFont.truetype(FONTS[1], max(6, int(h * 0.55 * w * 0.92 / tw)))
        tw = d.textlength(text, font=font)
    d.text(((w - tw) / 2, h * 0.22), text, fill=fg, font=font)
    if rng.random() < 0.7:
        small = ImageFont.truetype(FONTS[0], max(5, int(h * 0.16)))
        word = rng.choice(["CALIFORNIA", "TEXAS", "FLORIDA", "New York", "OHIO", "Illinois", "EMPIRE STATE", "dmv.gov"])
        sw = d.textlength(word, font=small)
        d.text(((w - sw) / 2, h * 0.04), word, fill=fg, font=small)
    return im


def render_two_row_plate(rng, w, rows=None):
    """A nearly square two-row plate (motorcycle, trailer, Brazilian two-row style) of width w: `rows` (top,
    bottom) or random ones, with an optional small state line above."""
    h = max(8, int(w / rng.uniform(1.0, 1.5)))
    im, d, fg = blank_plate(rng, w, h)
    if rows is None:
        letters, digits = "ABCDEFGHJKLMNPRSTUVWXYZ", "0123456789"
        top = "".join(rng.choice(letters) for _ in range(rng.randint(2, 3)))
        bottom = "".join(rng.choice(digits if rng.random() < 0.8 else letters) for _ in range(rng.randint(3, 5)))
        rows = (top, bottom)
    state = rng.random() < 0.3
    y0 = 0.16 if state else 0.08
    row_h = (0.94 - y0) / 2
    for i, text in enumerate(rows):
        font = ImageFont.truetype(rng.choice(FONTS), max(6, int(h * row_h * 0.8)))
        tw = d.textlength(text, font=font)
        if tw > w * 0.9:
            font = ImageFont.truetype(FONTS[1], max(6, int(h * row_h * 0.8 * w * 0.9 / tw)))
            tw = d.textlength(text, font=font)
        d.text(((w - tw) / 2, h * (y0 + i * row_h)), text, fill=fg, font=font)
    if state:
        small = ImageFont.truetype(FONTS[0], max(5, int(h * 0.1)))
        word = rng.choice(["MOTORCYCLE", "TRAILER", "TEXAS", "BRASIL", "OHIO"])
        d.text(((w - d.textlength(word, font=small)) / 2, h * 0.03), word, fill=fg, font=small)
    return im


TEXT_FONTS = [
    "/usr/share/fonts/truetype/dejavu/" + f
    for f in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf",
              "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSans-BoldOblique.ttf")
]
TEXT_WORDS = ["PLUMBING", "STORAGE", "DELIVERY", "ELECTRIC", "LANDSCAPING", "MOVING", "PEST CONTROL", "CATERING",
              "HEATING & AIR", "LOCKS", "SERVICE", "CONSTRUCTION", "FLOWERS", "ROOFING", "POOL CARE", "EXPRESS"]


def vehicle_text(rng):
    """A line of text a vehicle carries that is not its plate: phone numbers, web addresses, fleet and DOT
    numbers, trade words (issue 21: a van's phone number outranked its plate)."""
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    word = rng.choice(TEXT_WORDS)
    return rng.choice([
        f"{d(3)}-{d(4)}", f"{d(3)}-{d(3)}-{d(4)}", f"({d(3)}) {d(3)}-{d(4)}", f"1-800-{d(3)}-{d(4)}",
        f"{d(3)}.{d(3)}.{d(4)}", "www." + word.split()[0].lower() + ".com", word, word + " " + d(2),
        "USDOT " + d(7), "DOT " + d(6), "UNIT " + d(3), "No. " + d(3), "#" + d(4), d(3), d(4), d(5),
        "CALL " + f"{d(3)}-{d(4)}", word.title(),
    ])


def paint_text_negatives(rng, im, boxes):
    """Paints 1-3 unlabelled text lines (vehicle_text) on the frame, half of them beside or above a plate at
    about its character size, the rest anywhere; never over a plate. No border, unlike a plate."""
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(1, 3)):
        s = vehicle_text(rng)
        bx, by, bw, bh = rng.choice(boxes)
        char_h = max(6.0, bh * rng.uniform(0.3, 0.9) if rng.random() < 0.7 else rng.uniform(0.01, 0.06) * im.height)
        font = ImageFont.truetype(rng.choice(TEXT_FONTS), max(6, int(char_h / 0.72)))
        tw = d.textlength(s, font=font)
        if rng.random() < 0.5:
            where = rng.choice(["above", "above", "left", "right", "below"])
            if where == "above":
                tx, ty = bx + bw / 2 - tw / 2 + rng.uniform(-0.5, 0.5) * bw, by - bh * rng.uniform(0.8, 3.5) - char_h
            elif where == "below":
                tx, ty = bx + bw / 2 - tw / 2 + rng.uniform(-0.5, 0.5) * bw, by + bh * rng.uniform(1.2, 2.5)
            elif where == "left":
                tx, ty = bx - tw - bw * rng.uniform(0.2, 1.0), by + rng.uniform(-0.6, 0.6) * bh
            else:
                tx, ty = bx + bw + bw * rng.uniform(0.2, 1.0), by + rng.uniform(-0.6, 0.6) * bh
        else:
            tx, ty = rng.uniform(0, max(1, im.width - tw)), rng.uniform(0, max(1, im.height - char_h * 1.4))
        t = (tx - 2, ty - 2, tw + 4, char_h * 1.4 + 4)
        if any(iou(t, b) > 0 for b in boxes):
            continue
        if rng.random() < 0.25:  # a painted band behind the text, as on vans' liveries
            band = tuple(rng.randint(0, 255) for _ in range(3))
            d.rectangle([tx - char_h * 0.3, ty - char_h * 0.1, tx + tw + char_h * 0.3, ty + char_h * 1.3], fill=band)
            region_mean = sum(band) / 3
        else:
            region = np.asarray(im.crop((int(tx), int(ty), int(tx + tw) + 1, int(ty + char_h * 1.4) + 1)).convert("L"))
            region_mean = 128 if region.size == 0 else region.mean()
        if rng.random() < 0.3:
            ink = tuple(int(v) for v in rng.choice(INK_COLOURS + [(200, 40, 20), (230, 120, 20)]))
        else:
            ink = (20, 20, 20) if region_mean > 110 else (240, 240, 240)
        d.text((tx, ty), s, fill=ink, font=font)


def sample(rng, frames, cache):
    path, box = rng.choice(frames)
    if path not in cache:
        full = Image.open(path).convert("RGB")
        k = min(1.0, 1000 / max(full.width, full.height))  # decode once, keep at most 1000 px
        cache[path] = (full.resize((int(full.width * k), int(full.height * k)), Image.BILINEAR), k)
    im, k = cache[path]
    boxes = [tuple(v * k for v in box)]
    # synthetic plates pasted onto the frame (away from the real one)
    if rng.random() < 0.6:
        im = im.copy()
        for _ in range(rng.randint(1, 2)):
            pw = int(rng.uniform(0.04, 0.22) * im.width)
            if REAL and rng.random() < REAL:  # (no draw without --real-plates: the old command's random stream)
                plate = real_plate(rng, max(24, pw), cache)
            elif rng.random() < 0.25:  # two-row plates are smaller: 18-23 cm against 30-52 cm
                plate = render_two_row_plate(rng, max(24, int(pw * 0.6)))
            else:
                plate = render_plate(rng, max(24, pw))
            if rng.random() < 0.3:
                plate = plate.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
            x = rng.randint(0, max(0, im.width - plate.width))
            y = rng.randint(0, max(0, im.height - plate.height))
            b = (x, y, plate.width, plate.height)
            if any(iou(b, o) > 0 for o in boxes):
                continue
            im.paste(plate, (x, y))
            boxes.append(b)
    if TEXT and rng.random() < TEXT:  # (no draw without --text-negatives: the old command's random stream)
        im = im.copy()
        paint_text_negatives(rng, im, boxes)
    if POSE and rng.random() < POSE:  # (no draw without --pose: the old command's random stream)
        # a camera beside or above the lane: the frame rolled or its rows sheared about the real plate
        x, y, w, h = boxes[0]
        im, boxes = pose.random_pose(rng, im, boxes, (x + w / 2, y + h / 2))
        # a pasted plate far from the real one can be turned out of the frame
        boxes = [b for b in boxes if 0 <= b[0] + b[2] / 2 < im.width and 0 <= b[1] + b[3] / 2 < im.height]
    # scale so the long side matches the detector's working size, with jitter
    target = rng.uniform(420, 900)
    if SMALL and rng.random() < SMALL:  # distant cars: plates down to about 25 px at the working size
        target = rng.uniform(260, 420)
    s = target / max(im.width, im.height)
    im = im.resize((max(1, int(im.width * s)), max(1, int(im.height * s))), Image.BILINEAR)
    boxes = [(x * s, y * s, w * s, h * s) for x, y, w, h in boxes]
    # random crop around a plate most of the time
    W, H = im.size
    if rng.random() < 0.8:
        bx, by, bw, bh = rng.choice(boxes)
        cx = int(bx + bw / 2 - rng.uniform(0.1, 0.9) * PATCH)
        cy = int(by + bh / 2 - rng.uniform(0.1, 0.9) * PATCH)
    else:
        cx, cy = rng.randint(-40, max(0, W - PATCH) + 40), rng.randint(-40, max(0, H - PATCH) + 40)
    canvas = Image.new("RGB", (PATCH, PATCH), tuple(rng.randint(0, 255) for _ in range(3)))
    canvas.paste(im, (-cx, -cy))
    boxes = [(x - cx, y - cy, w, h) for x, y, w, h in boxes]
    arr = np.asarray(canvas).astype(np.float32)
    # colour jitter, grey, night-like contrast, noise
    arr = arr * rng.uniform(0.5, 1.4) + rng.uniform(-40, 40)
    if rng.random() < 0.2:
        arr = arr.mean(axis=2, keepdims=True).repeat(3, axis=2)
    if DARK and rng.random() < DARK:  # dusk under weak street light: darker and flatter than the jitter above
        arr = 255.0 * rng.uniform(0.15, 0.5) * (np.clip(arr, 0, 255) / 255.0) ** rng.uniform(1.2, 1.9)
    arr = arr + np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, rng.uniform(0, 8), arr.shape)
    arr = np.clip(arr, 0, 255)[:, :, ::-1]  # RGB -> BGR like OpenCV
    x = (arr / 255.0 - 0.5) / 0.5
    return x.transpose(2, 0, 1).copy(), [b for b in boxes if visible(b)]


def visible(b):
    x, y, w, h = b
    return w >= 6 and h >= 3 and x + w / 2 > 0 and y + h / 2 > 0 and x + w / 2 < PATCH and y + h / 2 < PATCH


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    u = aw * ah + bw * bh - inter
    return inter / u if u > 0 else 0.0


def targets(boxes, n):
    heat = np.zeros((1, n, n), np.float32)
    reg = np.zeros((4, n, n), np.float32)
    mask = np.zeros((1, n, n), np.float32)
    ys, xs = np.mgrid[0:n, 0:n]
    for x, y, w, h in boxes:
        cx, cy = (x + w / 2) / STRIDE, (y + h / 2) / STRIDE
        sx, sy = max(0.8, w / STRIDE / 6), max(0.8, h / STRIDE / 6)
        g = np.exp(-(((xs - cx) / sx) ** 2 + ((ys - cy) / sy) ** 2) / 2)
        heat[0] = np.maximum(heat[0], g)
        ix, iy = int(cx), int(cy)
        if 0 <= ix < n and 0 <= iy < n:
            heat[0, iy, ix] = 1.0
            reg[:, iy, ix] = [math.log(w / STRIDE), math.log(h / STRIDE), cx - ix, cy - iy]
            mask[0, iy, ix] = 1.0
    return heat, reg, mask


def focal(pred, gt):
    pred = pred.clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - gt) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def decode(out, stride, thresh=0.3, k=5):
    heat = out[0, 0]
    peaks = (heat == F.max_pool2d(heat[None, None], 3, 1, 1)[0, 0]) & (heat > thresh)
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    res = []
    for y, x in zip(ys.tolist(), xs.tolist()):
        w = math.exp(out[0, 1, y, x].item()) * stride
        h = math.exp(out[0, 2, y, x].item()) * stride
        cx = (x + out[0, 3, y, x].item()) * stride
        cy = (y + out[0, 4, y, x].item()) * stride
        res.append((heat[y, x].item(), (cx - w / 2, cy - h / 2, w, h)))
    res.sort(key=lambda r: -r[0])
    return res[:k]


def evaluate(model, frames, side=640):
    model.eval()
    hit = 0
    with torch.no_grad():
        for path, box in frames:
            im = Image.open(path).convert("RGB")
            s = side / max(im.width, im.height)
            w32 = max(32, int(round(im.width * s / 32)) * 32)
            h32 = max(32, int(round(im.height * s / 32)) * 32)
            sx, sy = w32 / im.width, h32 / im.height
            arr = np.asarray(im.resize((w32, h32), Image.BILINEAR)).astype(np.float32)[:, :, ::-1]
            x = torch.from_numpy(((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy())[None]
            out = model(x)
            dets = decode(out, x.shape[2] / out.shape[2])  # the model's stride, from its output size
            boxes = [(bx / sx, by / sy, bw / sx, bh / sy) for _, (bx, by, bw, bh) in dets]
            if any(iou(b, box) >= 0.4 for b in boxes):
                hit += 1
    model.train()
    return hit / max(1, len(frames))


def folded_convs(model):
    """The model's convolutions in the order an exported graph holds them, each with its batch norm or None."""
    seqs = [model.s2, model.s4[0], model.s4[1], model.s8[0], model.s8[1], model.s16[0], model.s16[1],
            model.s32[0], model.s32[1]]
    out = [(s[0], s[1]) for s in seqs]
    out += [(model.t32, None), (model.l16, None), (model.l8, None)]
    if model.l4 is not None:
        out.append((model.l4, None))
    out += [(model.head[0][0], model.head[0][1]), (model.head[1], None)]
    return out


def load_folded(model, path):
    """Loads an exported detector into `model`: each graph Conv's weights into the module of the same place;
    a folded batch norm becomes the identity plus the folded bias (running mean 0, variance 1), so the
    model computes what the file does as long as its batch norms stay in eval mode (freeze_bn)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(path).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    convs = [n for n in g.node if n.op_type == "Conv"]
    # the graph's convolutions, matched to the modules by their weight shapes in execution order
    mods = folded_convs(model)
    if len(convs) != len(mods):
        raise SystemExit(f"{path}: {len(convs)} convolutions, this detector has {len(mods)} (another --stride?)")
    by_shape = {}
    for conv, bn in mods:
        by_shape.setdefault(tuple(conv.weight.shape), []).append((conv, bn))
    for n in convs:
        w = np.array(init[n.input[1]])
        b = np.array(init[n.input[2]]) if len(n.input) > 2 else np.zeros(w.shape[0], np.float32)
        cands = by_shape.get(tuple(w.shape))
        if not cands:
            raise SystemExit(f"{path}: no convolution of shape {w.shape} here")
        conv, bn = cands.pop(0)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
            if bn is None:
                conv.bias.copy_(torch.from_numpy(b))
            else:
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
                bn.bias.copy_(torch.from_numpy(b))
    print(f"fine-tuning from {path} ({len(convs)} convolutions, batch norms frozen)", flush=True)


def freeze_bn(m):
    if isinstance(m, nn.BatchNorm2d):
        m.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--out", default="models/plate_detector.onnx")
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stride", type=int, choices=(4, 8), default=8,
                    help="output stride of the heat map; 4: one more upsampling step, the head on 4x the cells "
                         "(the detector before 2026-12-02)")
    ap.add_argument("--no-eval", action="store_true", help="skip the validation pass (smoke tests)")
    ap.add_argument("--dark", type=float, default=0.0,
                    help="share of samples darkened like dusk (gain 0.15-0.5, gamma 1.2-1.9) after the colour "
                         "jitter; 0 (default) leaves the samples and the random stream as before")
    ap.add_argument("--small", type=float, default=0.0,
                    help="share of samples scaled to a long side of 260-420 px instead of 420-900 (distant "
                         "plates); 0 (default) leaves the samples and the random stream as before")
    ap.add_argument("--text-negatives", type=float, default=0.0,
                    help="share of samples with 1-3 unlabelled lines of vehicle text (phone, fleet and DOT "
                         "numbers, trade words, web addresses) painted beside the plate or anywhere; 0 (default) "
                         "leaves the samples and the random stream as before")
    ap.add_argument("--real-plates", type=float, default=0.0,
                    help="share of the pasted plates that are real whole-plate crops (the training part of the "
                         "benchmark's US crops, and of the Brazilian crops with --br-crops) instead of rendered "
                         "ones; 0 (default) leaves the samples and the random stream as before")
    ap.add_argument("--pose", type=float, default=0.0,
                    help="share of samples rolled by up to 15 degrees or sheared by up to 20 about the real plate "
                         "(pose.py: a camera beside or above the lane), boxes becoming the tilted plates' bounding "
                         "boxes; 0 (default) leaves the samples and the random stream as before")
    ap.add_argument("--br-crops", help="openalpr-train-detector/br folder: its cleaned training crops join "
                                       "--real-plates (br_crops.py)")
    ap.add_argument("--init", help="fine-tune: start from this float detector (an .onnx this script exported, its "
                                   "batch norms folded into the convolutions; they stay frozen) instead of from scratch")
    ap.add_argument("--lr", type=float, default=3e-4,
                    help="with --init: the starting learning rate, cosine-annealed to 0 over --steps")
    args = ap.parse_args()
    global STRIDE, DARK, SMALL, TEXT, REAL, POSE
    STRIDE = args.stride
    DARK, SMALL, TEXT, REAL, POSE = args.dark, args.small, args.text_negatives, args.real_plates, args.pose
    if REAL:
        REAL_PLATES.extend(load_real_plates(args.bench, args.br_crops))
        print(f"real plates to paste: {len(REAL_PLATES)}", flush=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    frames = load_frames(args.bench)
    print(f"train frames {len(frames['train'])}, validation frames {len(frames['val'])}", flush=True)
    model = PlateNet(STRIDE)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}", flush=True)
    if args.init:
        load_folded(model, args.init)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps, pct_start=0.1)
    cache = {}
    n = PATCH // STRIDE
    t0 = time.time()
    for step in range(1, args.steps + 1):
        xs, hs, rs, ms = [], [], [], []
        for _ in range(args.batch):
            x, boxes = sample(rng, frames["train"], cache)
            h, r, m = targets(boxes, n)
            xs.append(x)
            hs.append(h)
            rs.append(r)
            ms.append(m)
        x = torch.from_numpy(np.stack(xs)).float()
        heat, reg, mask = (torch.from_numpy(np.stack(v)) for v in (hs, rs, ms))
        if args.init:
            model.apply(freeze_bn)
        out = model(x)
        l_heat = focal(out[:, :1], heat)
        m = mask.expand(-1, 2, -1, -1)
        npos = mask.sum().clamp(min=1)
        l_size = (F.l1_loss(out[:, 1:3] * m, reg[:, :2] * m, reduction="sum")) / npos
        l_off = (F.l1_loss(out[:, 3:5] * m, reg[:, 2:] * m, reduction="sum")) / npos
        loss = l_heat + 0.5 * l_size + l_off
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} (heat {l_heat.item():.3f} size {l_size.item():.3f}) "
                  f"{time.time() - t0:.0f}s", flush=True)
    if not args.no_eval:
        recall = evaluate(model, frames["val"])
        print(f"validation recall (IoU >= 0.4, long side 640): {recall:.3f} on {len(frames['val'])} frames", flush=True)
    model.eval()
    dummy = torch.zeros(1, 3, 352, 640)
    torch.onnx.export(model, dummy, args.out, input_names=["image"], output_names=["maps"],
                      dynamic_axes={"image": {2: "h", 3: "w"}, "maps": {2: "hs", 3: "ws"}}, opset_version=17,
                      dynamo=False)
    print(f"exported {args.out} ({os.path.getsize(args.out):,} bytes); CPU time {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
