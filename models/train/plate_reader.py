"""Fine-tunes Gatehouse's plate reader (whole-plate CTC recogniser) and exports it to ONNX.

    python3 models/train/plate_reader.py --bench ../shared/datasets/openalpr-bench \
        --base models/ch_PP-OCRv4_rec_infer.onnx --out models/plate_reader.onnx [--steps 900] [--seed 7]

The reader takes a whole plate (the plate detector's box with a margin), resized to 48 x 160 BGR, and
returns [N, T, 38] class probabilities (T = 20 time steps, 40 with `--time-steps 40`: widen_time): 0 = blank,
1-10 = 0-9, 11-36 = A-Z, 37 = space (never a target).
It is the PP-OCRv4 mobile recogniser (Apache-2.0, from the rapidocr-onnxruntime wheel that
scripts/fetch-models.sh pins) converted to PyTorch with onnx2torch, its 6,625-class output layer cut down to
the plate alphabet (keeping the pretrained weights of those classes), then fine-tuned on:
- the training split (models/train/split.py) of crops/us (whole crops) and of the end-to-end us/eu/br frames
  (plate box with a random margin, like the detector's box plus the daemon's margin),
- synthetic plates rendered with Debian's DejaVu fonts (see plate_detector.render_plate), and
- with `--br-crops DIR`, the training part of the real Brazilian crops of openalpr-train-detector (below),
with geometric, blur, resolution, colour and noise augmentation. The network learns to read the
registration and ignore state names, slogans, stickers and frames, so no text detector runs at read time.
Prints exact-match accuracy on the validation split before and after. Seeded; CPU only.

`--br-crops DIR` (issue 21; DIR is the dataset folder, never copied): the crops are cleaned and split by plate
text as models/train/br_crops.py does (its written rule and the review file models/train/br_review.tsv); the
training part's crops are tight, so their edge pixels are repeated outward before the usual random margins;
`--br-share` of each batch (default 0.2, taken from the real-plate part; synthetic stays `--synthetic`) comes
from them, and the cleaned validation part is scored with the other sets ("brcrop", each crop read whole).
Without the option the samples and the random stream are exactly those of the command without it.

`--det-margins P` (issue 21): a share P of the end-to-end plates is cut as the daemon cuts a detector's box
rather than with uniform margins: the labelled box's edges are moved by the errors the committed detector
makes on the training frames (DET_EDGE: mean and spread of each edge, measured 2026-12-06 with
`gatehouse recognize` on the 212 training-split frames), then the daemon's margin is added (a tenth of the
box's width each side, a quarter of its height). The reader's exact read had changed with a few pixels of box
movement (models/train/README.md, "Detector: dusk and distant plates"); this trains it on the boxes it
gets. Without the option the random stream is unchanged.

`--camera P` (issue 21): a share P of the real plates is given what a gate camera's stream adds after the
plate's resolution: motion blur along the approach and the stream's compression (`camera`). Without the
option the random stream is unchanged.

`--emblems P` (tried 2026-12-07, not in the committed command): a share P of the synthetic plates have a
coloured emblem between two characters, as many US plates do (`emblem_plate`). Without the option the
random stream is unchanged.

`--extra-fonts` (2026-12-07): the synthetic plates are drawn in 14 more bold typefaces (EXTRA_FONTS: narrow,
condensed, monospaced and slab ones from Debian's font packages) beside DejaVu's three, so the reader sees
more shapes of O and 0, 1 and I, B and 8 than one family's. Tried on two seeds, not adopted (within seed
noise end to end; docs/recognition.md). The packages are named in EXTRA_FONTS and not installed by
scripts/setup.sh, as the committed reader does not use them; a missing file stops the script with the
packages to install.

`--ema D` and `--hard P` (tried 2026-12-07, not in the committed command): `--ema` exports a moving average
of the weights (decay D per step, `Ema`) and the last weights beside it as OUT.last.onnx; `--hard` draws a
share P of the bench's real plates by their recent training loss (`HardPlates`). Neither changes the
random stream when off (`--ema` never draws from it).
"""
import argparse
import io
import math
import os
import random
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_fuse import fuse_file  # noqa: E402
from plate_detector import FONTS, blank_plate, render_plate  # noqa: E402
from split import endtoend_plates, is_val  # noqa: E402
import pose  # noqa: E402

H, W = 48, 160
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
POSE = 0.0  # --pose

# `--extra-fonts`: (file, Debian package). Upright bold faces a plate could be set in (no coding fonts: their
# slashed or dotted zeros are not a plate's).
EXTRA_FONTS = [
    ("/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf", "fonts-liberation"),
    ("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf", "fonts-liberation"),
    ("/usr/share/fonts/truetype/liberation/LiberationMono-Bold.ttf", "fonts-liberation"),
    ("/usr/share/fonts/opentype/urw-base35/NimbusSansNarrow-Bold.otf", "fonts-urw-base35"),
    ("/usr/share/fonts/opentype/urw-base35/NimbusSans-Bold.otf", "fonts-urw-base35"),
    ("/usr/share/fonts/opentype/urw-base35/NimbusMonoPS-Bold.otf", "fonts-urw-base35"),
    ("/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Bold.ttf", "fonts-roboto-unhinted"),
    ("/usr/share/fonts/truetype/roboto/unhinted/RobotoTTF/Roboto-Bold.ttf", "fonts-roboto-unhinted"),
    ("/usr/share/fonts/truetype/freefont/FreeSansBold.ttf", "fonts-freefont-ttf"),
    ("/usr/share/fonts/truetype/freefont/FreeMonoBold.ttf", "fonts-freefont-ttf"),
    ("/usr/share/fonts/truetype/open-sans/OpenSans-CondBold.ttf", "fonts-open-sans"),
    ("/usr/share/fonts/truetype/open-sans/OpenSans-Bold.ttf", "fonts-open-sans"),
    ("/usr/share/fonts/opentype/b612/B612-Bold.otf", "fonts-b612"),
    ("/usr/share/fonts/opentype/league-spartan/LeagueSpartan-Bold.otf", "fonts-league-spartan"),
]


def add_extra_fonts():
    """Appends EXTRA_FONTS to the synthetic plates' fonts (in place: plate_detector.render_plate and
    emblem_plate draw from the same list; its first two entries, used for small text and long plates, stay)."""
    missing = sorted({pkg for path, pkg in EXTRA_FONTS if not os.path.exists(path)})
    if missing:
        raise SystemExit(f"--extra-fonts: font files missing; install them with apt-get install {' '.join(missing)}")
    FONTS.extend(path for path, _ in EXTRA_FONTS if path not in FONTS)


# ---------------------------------------------------------------- base model

def load_base(path):
    """PP-OCRv4 rec as a torch module whose output is logits over blank + ALPHABET + space."""
    import onnx2torch.node_converters.batch_norm as bn
    from onnx2torch import convert

    bn._BN_CLASS_FROM_SPATIAL_RANK.setdefault(-2, nn.BatchNorm2d)  # shapes unknown after reshapes
    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}
    chars = meta["character"].split("\n")
    classes = [0] + [1 + chars.index(c) for c in ALPHABET] + [len(chars) + 1]
    nodes = []
    for n in m.graph.node:
        if n.op_type == "Constant" and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            m.graph.initializer.append(t)
        else:
            nodes.append(n)
    # the output layer: MatMul(x, W) + b -> Softmax; keep the plate classes' columns, drop the Softmax
    softmax = nodes[-1]
    add = nodes[-2]
    matmul = nodes[-3]
    if (softmax.op_type, add.op_type, matmul.op_type) != ("Softmax", "Add", "MatMul"):
        sys.exit("unexpected base model: it must end in MatMul, Add, Softmax")
    inits = {t.name: t for t in m.graph.initializer}
    for name, axis in ((matmul.input[1], 1), (add.input[1], 0)):
        a = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array(np.take(a, classes, axis=axis).copy(), name))
    del m.graph.node[:]
    m.graph.node.extend(nodes[:-1])
    out = m.graph.output[0]
    out.name = add.output[0]
    out.type.tensor_type.shape.dim[-1].dim_value = len(classes)
    d = m.graph.input[0].type.tensor_type.shape.dim
    d[2].ClearField("dim_param")
    d[2].dim_value = H
    net = convert(onnx.shape_inference.infer_shapes(m))
    # weights stored as constants come back as buffers: make them trainable
    for mod in net.modules():
        for name, buf in list(mod._buffers.items()):
            if buf is None or not buf.is_floating_point() or buf.numel() < 2:
                continue
            if name in ("running_mean", "running_var"):
                continue
            del mod._buffers[name]
            mod.register_parameter(name, nn.Parameter(buf.clone()))
    return net


def widen_time(net, steps):
    """Gives the reader `steps` CTC time steps (20 or 40) at the same 160 px input width. The backbone
    leaves 40 columns (4 px of input each); PP-OCRv4's neck averages them in pairs (AveragePool, kernel and
    stride 3 x 2) into 20 steps, 2.2 per character of a seven-character plate. `--time-steps 40` pools the
    height only (3 x 1), so each column is a step: the neck (SVTR) then mixes 40 tokens, as PP-OCRv4 does at
    its own 320 px width, and the backbone, nearly all of the cost, is unchanged."""
    if steps == 20:
        return net
    if steps != 40:
        raise SystemExit(f"--time-steps must be 20 or 40, not {steps}")
    pools = [(name, mod) for name, mod in net.named_modules()
             if isinstance(mod, nn.AvgPool2d) and list(mod.kernel_size) == [3, 2] and list(mod.stride) == [3, 2]]
    if len(pools) != 1:
        raise SystemExit(f"--time-steps 40: expected one 3 x 2 AveragePool in the base model, found {len(pools)}")
    setattr(net, pools[0][0], nn.AvgPool2d((3, 1), (3, 1)))
    return net


class Reader(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)


# ---------------------------------------------------------------- data

def load_samples(bench):
    """(split, kind, path, box or None, text) for every labelled plate of the developers' half."""
    out = []
    d = os.path.join(bench, "crops", "us")
    with open(os.path.join(d, "labels.csv")) as f:
        for line in f:
            p = line.strip().split(",")
            if len(p) < 3 or p[0].lower() == "image":
                continue
            text = "".join(c for c in p[2].upper() if c in ALPHABET)
            out.append(("val" if is_val("us", p[0]) else "train", "crop", os.path.join(d, p[0]), None, text))
    for s, split, path, box, label in endtoend_plates(bench):
        out.append((split, s, path, box, "".join(c for c in label.upper() if c in ALPHABET)))
    return out


def load_br_crops(src):
    """(split, "brcrop", path, None, text) for the cleaned crops of openalpr-train-detector/br (br_crops.py)."""
    from br_crops import clean

    return [(it["split"], "brcrop", it["path"], None, it["label"]) for it in clean(src) if it["label"]]


def region(sample, cache):
    """The image around the plate (PIL RGB) and the plate's box in it; decoded once."""
    _, kind, path, box, _ = sample
    if path not in cache:
        im = Image.open(path).convert("RGB")
        if kind == "brcrop":
            # a tight crop: repeat its edge pixels outward so random margins show the plate's surroundings'
            # colours rather than black; the box is the crop itself
            px, py = int(0.2 * im.width) + 1, int(0.45 * im.height) + 1
            arr = np.pad(np.asarray(im), ((py, py), (px, px), (0, 0)), mode="edge")
            cache[path] = (Image.fromarray(arr), (px, py, im.width, im.height))
        elif box is None:
            cache[path] = (im, (0, 0, im.width, im.height))
        else:
            x, y, w, h = box
            x0, y0 = max(0, int(x - w)), max(0, int(y - 1.5 * h))
            x1, y1 = min(im.width, int(x + 2 * w)), min(im.height, int(y + 2.5 * h))
            cache[path] = (im.crop((x0, y0, x1, y1)), (x - x0, y - y0, w, h))
    return cache[path]


def to_input(im):
    """PIL RGB plate image -> normalised BGR CHW at H x W (as the daemon feeds it)."""
    arr = np.asarray(im.resize((W, H), Image.BILINEAR), dtype=np.float32)[:, :, ::-1]
    return ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).astype(np.float32)


def val_crop(sample, cache):
    """The crop the daemon would read: the whole crop, or the plate box with a 10% / 25% margin."""
    im, (x, y, w, h) = region(sample, cache)
    if sample[1] == "brcrop":
        return im.crop((x, y, x + w, y + h))  # the crop as given, as gatehouse eval reads it
    if sample[3] is None:
        return im
    mx, my = w / 10, h / 4
    return im.crop((max(0, x - mx), max(0, y - my), min(im.width, x + w + mx), min(im.height, y + h + my)))


# The plate detector's box against the labelled one, as fractions of the labelled box's width / height
# (each edge; positive is right / down): mean and spread measured with the committed detector on the 212
# training-split end-to-end frames (2026-12-06; `--det-margins`).
DET_EDGE = {"left": (0.0, 0.065), "right": (0.02, 0.065), "top": (0.01, 0.07), "bottom": (0.05, 0.078)}


def det_crop(rng, box):
    """The crop the daemon reads around a detector box: the labelled box moved edge by edge as the detector's
    boxes are (DET_EDGE), then the daemon's margin (a tenth of the width each side, a quarter of the height)."""
    x, y, w, h = box
    e = {k: max(-0.25, min(0.25, rng.gauss(m, sd))) for k, (m, sd) in DET_EDGE.items()}
    dl, dr = x + w * e["left"], x + w + w * e["right"]
    dt, db = y + h * e["top"], y + h + h * e["bottom"]
    mx, my = (dr - dl) / 10, (db - dt) / 4
    return dl - mx, dr + mx, dt - my, db + my


def stretch(arr, max_gain=8.0):
    """The daemon's per-plate contrast stretch (src/recognize/detect.rs, contrast_stretch; manifest
    input.auto_contrast): the 1st..99th percentile of luminance onto 0..255, the gain at most `max_gain`."""
    lum = np.floor(arr.sum(axis=2) / 3)
    lo, hi = np.percentile(lum, 1, method="inverted_cdf"), np.percentile(lum, 99, method="inverted_cdf")
    gain = min(255.0 / max(hi - lo, 1.0), max_gain)
    if hi - lo < 1 or gain <= 1:
        return arr
    return np.clip((arr - lo) * gain, 0, 255)


def dim_and_stretch(rng, arr):
    """A plate at dusk or under weak light as the reader gets it: dimmed (gain 0.1-0.6, gamma 1.0-2.2),
    sensor noise (sigma 1.5-7) on 8-bit values, then the daemon's contrast stretch, which brings the plate
    back into range and the noise up with it. (`--dim`; ranges wider than the dusk class set's.)"""
    arr = 255.0 * rng.uniform(0.1, 0.6) * (np.clip(arr, 0, 255) / 255.0) ** rng.uniform(1.0, 2.2)
    arr = arr + np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, rng.uniform(1.5, 7), arr.shape)
    arr = stretch(np.round(np.clip(arr, 0, 255)))
    if rng.random() < 0.3:
        arr = arr.mean(axis=2, keepdims=True).repeat(3, axis=2)
    arr = arr[:, :, ::-1]
    return ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).astype(np.float32)


def camera(rng, crop):
    """The plate as a gate camera's stream gives it (`--camera`): motion blur along the approach (a box
    kernel of 2-6 taps at the plate's size, vertical; one in four diagonal for a car still turning in),
    then the stream's compression (JPEG, quality 35-85; each 8 x 8 block at the plate's size)."""
    arr = np.asarray(crop, dtype=np.float32)
    n = rng.randint(2, 6)
    kernel = np.zeros((n, n), dtype=np.float32)
    if rng.random() < 0.25:
        kernel[np.arange(n), np.arange(n)[:: rng.choice([1, -1])]] = 1.0 / n
    else:
        kernel[:, n // 2] = 1.0 / n
    pad = ((n // 2, n - 1 - n // 2), (n // 2, n - 1 - n // 2), (0, 0))
    src = np.pad(arr, pad, mode="edge")
    out = np.zeros_like(arr)
    for dy, dx in zip(*np.nonzero(kernel)):
        out += kernel[dy, dx] * src[dy:dy + arr.shape[0], dx:dx + arr.shape[1]]
    buf = io.BytesIO()
    Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=rng.randint(35, 85))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def augment(rng, im, box, det_like=False, dim=False, cam=False):
    """A random view of the plate at `box` in `im`: margins, skew, resolution, blur, colour, noise.
    `det_like`: the margins of a detector box (det_crop) rather than uniform ones; `dim`: darkened and
    stretched as the daemon stretches a dim plate (dim_and_stretch) instead of the colour jitter; `cam`:
    motion blur and stream compression (camera) after the resolution step."""
    if POSE and rng.random() < POSE:  # (no draw without --pose: the old command's random stream)
        im, (box,) = pose.random_pose(rng, im, [box], (box[0] + box[2] / 2, box[1] + box[3] / 2))
    x, y, w, h = box
    if rng.random() < 0.15:
        # small rotation / shear around the plate (perspective-like)
        ang = rng.uniform(-5, 5)
        im = im.rotate(ang, resample=Image.BILINEAR, center=(x + w / 2, y + h / 2), fillcolor=(128, 128, 128))
    if det_like:
        l, r, t, b = det_crop(rng, box)
    else:
        l = x - w * rng.uniform(-0.03, 0.16)
        r = x + w + w * rng.uniform(-0.03, 0.16)
        t = y - h * rng.uniform(-0.05, 0.4)
        b = y + h + h * rng.uniform(-0.05, 0.4)
    crop = im.crop((int(l), int(t), int(math.ceil(r)), int(math.ceil(b))))
    # the plate as a small camera sees it: down to 40-200 px wide, then back up
    target_w = rng.uniform(40, 220)
    if crop.width > target_w and rng.random() < 0.6:
        k = target_w / crop.width
        crop = crop.resize((max(8, int(crop.width * k)), max(4, int(crop.height * k))), Image.BILINEAR)
    if cam:
        crop = camera(rng, crop)
    if rng.random() < 0.2:
        crop = crop.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    arr = np.asarray(crop.resize((W, H), Image.BILINEAR), dtype=np.float32)
    if dim:
        return dim_and_stretch(rng, arr)
    arr = arr * rng.uniform(0.55, 1.35) + rng.uniform(-45, 45)
    if rng.random() < 0.2:
        arr = arr.mean(axis=2, keepdims=True).repeat(3, axis=2)
    if rng.random() < 0.05:
        arr = 255.0 - arr  # retro-reflective plates under IR can invert contrast
    arr = arr + np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, rng.uniform(0, 9), arr.shape)
    arr = np.clip(arr, 0, 255)[:, :, ::-1]
    return ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).astype(np.float32)


def plate_text(rng):
    """Registrations in US, EU and Brazilian (old and Mercosul) styles, vanity ones included."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    digits = "0123456789"
    pattern = rng.choice(["LLLDDDD", "DLLLDDD", "LLDDDD", "DDDLLL", "LLLDDD", "LLDLLDD", "DDLLDDD", "LLDDDLL",
                          "LLLDLDD", "LLLDDDD", "DLLDDD", "LLLLDD", "DDDDLL", "LLDDLLL"])
    if rng.random() < 0.1:
        pattern = "".join(rng.choice("LD") for _ in range(rng.randint(2, 8)))
    return "".join(rng.choice(letters if c == "L" else digits) for c in pattern)


# coloured, never the ink's near-black: a dark blob between characters must not teach the reader to skip a glyph
EMBLEM_COLOURS = [(200, 40, 30), (230, 120, 20), (30, 60, 160), (40, 120, 50), (150, 90, 50), (180, 170, 40),
                  (110, 160, 210)]


def emblem_plate(rng, w, text):
    """A plate whose registration is split by an emblem between two characters, as many US plates are (a
    state outline, an orange, a keystone, a seal; `--emblems`): the two parts drawn with a gap of 0.5-1.1
    character widths holding a filled shape that may touch the characters beside it."""
    from PIL import ImageFont

    h = max(8, int(w / rng.uniform(1.8, 2.6)))
    im, d, fg = blank_plate(rng, w, h)
    k = rng.randint(2, len(text) - 2) if len(text) >= 4 else 1
    font = ImageFont.truetype(rng.choice(FONTS), max(6, int(h * rng.uniform(0.45, 0.6))))
    gap = d.textlength("0", font=font) * rng.uniform(0.5, 1.1)
    left, right = text[:k], text[k:]
    path = font.path
    tw = d.textlength(left, font=font) + gap + d.textlength(right, font=font)
    while tw > w * 0.94 and font.size > 6:
        gap *= 0.9
        font = ImageFont.truetype(path, max(6, int(font.size * 0.9)))
        tw = d.textlength(left, font=font) + gap + d.textlength(right, font=font)
    x0, y0 = (w - tw) / 2, h * 0.22
    d.text((x0, y0), left, fill=fg, font=font)
    gx = x0 + d.textlength(left, font=font)
    d.text((gx + gap, y0), right, fill=fg, font=font)
    # the emblem: a little wider than the gap (it may touch its neighbours), about a character tall
    ew, eh = gap * rng.uniform(0.9, 1.4), font.size * rng.uniform(0.6, 1.1)
    cx, cy = gx + gap / 2, y0 + font.size * rng.uniform(0.45, 0.65)
    colour = rng.choice(EMBLEM_COLOURS)
    box = [cx - ew / 2, cy - eh / 2, cx + ew / 2, cy + eh / 2]
    shape = rng.random()
    if shape < 0.4:
        d.ellipse(box, fill=colour)
    elif shape < 0.7:
        pts = [(cx + ew / 2 * math.cos(a) * rng.uniform(0.6, 1.0), cy + eh / 2 * math.sin(a) * rng.uniform(0.6, 1.0))
               for a in np.linspace(0, 2 * math.pi, rng.randint(5, 9), endpoint=False)]
        d.polygon(pts, fill=colour)
    else:
        d.rectangle(box, fill=colour, outline=fg)
    if rng.random() < 0.6:
        small = ImageFont.truetype(FONTS[0], max(5, int(h * 0.16)))
        word = rng.choice(["TEXAS", "FLORIDA", "Pennsylvania", "MICHIGAN", "OREGON", "New Jersey", "IDAHO"])
        d.text(((w - d.textlength(word, font=small)) / 2, h * 0.04), word, fill=fg, font=small)
    return im


def synthetic(rng, emblems=0.0):
    """A rendered plate with its text, placed on a random background with a margin (a share `emblems` of
    them split by an emblem, emblem_plate)."""
    text = plate_text(rng)
    # (no extra draw without --emblems: the old command keeps its random stream)
    if emblems and len(text) >= 4 and rng.random() < emblems:
        plate = emblem_plate(rng, rng.randint(90, 260), text)
    else:
        plate = render_plate(rng, rng.randint(90, 260), text)
    bg = Image.new("RGB", (int(plate.width * 1.5), int(plate.height * 2.0)), tuple(rng.randint(0, 255) for _ in range(3)))
    x, y = (bg.width - plate.width) // 2, (bg.height - plate.height) // 2
    bg.paste(plate, (x, y))
    return augment(rng, bg, (x, y, plate.width, plate.height)), text


def encode(texts):
    flat = [1 + ALPHABET.index(c) for t in texts for c in t]
    return torch.tensor(flat, dtype=torch.long), torch.tensor([len(t) for t in texts], dtype=torch.long)


def greedy(probs):
    """Best path: [N, T, C] -> strings."""
    out = []
    for row in probs.argmax(-1).tolist():
        s, prev = [], 0
        for k in row:
            if k != prev and 0 < k <= len(ALPHABET):
                s.append(ALPHABET[k - 1])
            prev = k
        out.append("".join(s))
    return out


class HardPlates:
    """Draws the bench's real training plates by their recent training loss (`--hard`): each plate's loss
    per character, smoothed over its draws, unseen plates at the largest loss seen. A plate is drawn at
    most CAP times as often as the average one, so a mislabelled plate (the EU set's O-for-0) cannot take
    over the batches."""

    CAP = 4.0

    def __init__(self, n):
        self.loss = [None] * n

    def update(self, drawn, each):
        for pos, i in drawn:
            v = float(each[pos])
            self.loss[i] = v if self.loss[i] is None else 0.5 * self.loss[i] + 0.5 * v

    def pick(self, rng):
        seen = [v for v in self.loss if v is not None]
        top = max(seen) if seen else 1.0
        w = [top if v is None else v for v in self.loss]
        mean = sum(w) / len(w) or 1.0
        w = [min(v, self.CAP * mean) + 0.01 * mean for v in w]
        return rng.choices(range(len(w)), weights=w)[0]


class Ema:
    """An exponential moving average of a model's floating-point weights and batch-norm statistics (`--ema`).
    The converted graph also keeps integer tensors in its state (reshape targets, batch-norm step counts):
    those are copied, never averaged (torch's own EMA helper rounds them down, breaking the reshapes)."""

    def __init__(self, model, decay):
        import copy

        self.decay = decay
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        for a, b in zip(self.module.state_dict().values(), model.state_dict().values()):
            if a.is_floating_point():
                a.lerp_(b, 1.0 - self.decay)
            else:
                a.copy_(b)


def evaluate(model, val, cache):
    model.eval()
    per = {}
    with torch.no_grad():
        for i in range(0, len(val), 32):
            chunk = val[i:i + 32]
            x = torch.from_numpy(np.stack([to_input(val_crop(s, cache)) for s in chunk]))
            for s, read in zip(chunk, greedy(model(x))):
                ok, n = per.get(s[1], (0, 0))
                per[s[1]] = (ok + (read == s[4]), n + 1)
    model.train()
    return {k: ok / n for k, (ok, n) in per.items()}


def fmt(acc):
    return " ".join(f"{k} {v:.3f}" for k, v in sorted(acc.items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--base", default="models/ch_PP-OCRv4_rec_infer.onnx")
    ap.add_argument("--out", default="models/plate_reader.onnx")
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--synthetic", type=float, default=0.3, help="share of synthetic plates in a batch")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-eval", action="store_true", help="skip the validation passes (smoke tests)")
    ap.add_argument("--br-crops", help="openalpr-train-detector/br folder: add its cleaned training crops (br_crops.py)")
    ap.add_argument("--br-share", type=float, default=0.2, help="share of Brazilian crops in a batch (--br-crops)")
    ap.add_argument("--det-margins", type=float, default=0.0,
                    help="share of end-to-end plates cut as the daemon cuts a detector box (the labelled box "
                         "moved by the detector's measured edge errors, then its margin) instead of with uniform "
                         "margins; 0 (default) leaves the samples and the random stream as before")
    ap.add_argument("--dim", type=float, default=0.0,
                    help="share of real plates darkened with sensor noise and then contrast-stretched as the "
                         "daemon does (dim_and_stretch); 0 (default) leaves the random stream as before")
    ap.add_argument("--camera", type=float, default=0.0,
                    help="share of real plates given a gate camera's motion blur and stream compression "
                         "(camera); 0 (default) leaves the random stream as before")
    ap.add_argument("--extra-fonts", action="store_true",
                    help="draw synthetic plates in EXTRA_FONTS too (Debian font packages named there)")
    ap.add_argument("--emblems", type=float, default=0.0,
                    help="share of synthetic plates whose registration is split by an emblem (emblem_plate); 0 "
                         "(default) leaves the random stream as before")
    ap.add_argument("--time-steps", type=int, default=20, choices=(20, 40),
                    help="CTC time steps of the exported reader at 160 px (widen_time); 20 (default) is "
                         "PP-OCRv4's pooling, 40 pools the height only")
    ap.add_argument("--hard", type=float, default=0.0,
                    help="share of the bench's real plates drawn by their recent training loss instead of "
                         "uniformly (HardPlates: the plates the reader still gets wrong come back more often, "
                         "at most HardPlates.CAP times the average); 0 (default) leaves the random stream as before")
    ap.add_argument("--pose", type=float, default=0.0,
                    help="share of plates (real and synthetic) rolled by up to 15 degrees or their rows sheared by "
                         "up to 20 (pose.py: a camera beside or above the lane), cut around the tilted plate's "
                         "bounding box; 0 (default) leaves the random stream as before")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="export an exponential moving average of the weights (batch-norm statistics too) with "
                         "this decay per step, e.g. 0.995, and the last weights beside it as OUT.last.onnx; "
                         "0 (default) exports the last weights. Draws nothing from the random stream")
    args = ap.parse_args()
    global POSE
    POSE = args.pose
    if not 0.0 <= args.ema < 1.0:
        ap.error("--ema takes a decay in [0, 1)")
    if not 0.0 <= args.hard <= 1.0:
        ap.error("--hard takes a share in [0, 1]")
    if args.extra_fonts:
        add_extra_fonts()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    samples = [s for s in load_samples(args.bench) if 1 <= len(s[4]) <= 10]
    train = [s for s in samples if s[0] == "train"]
    val = [s for s in samples if s[0] == "val"]
    print(f"train plates {len(train)}, validation plates {len(val)}", flush=True)
    br_train = []
    if args.br_crops:
        br = load_br_crops(args.br_crops)
        br_train = [s for s in br if s[0] == "train"]
        val += [s for s in br if s[0] == "val"]
        print(f"Brazilian crops: train {len(br_train)}, validation {len(br) - len(br_train)}", flush=True)
    model = Reader(widen_time(load_base(args.base), args.time_steps))
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}", flush=True)
    cache = {}
    if not args.no_eval:
        print(f"before: {fmt(evaluate(model, val, cache))}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(2, args.steps), pct_start=0.08)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    ema = Ema(model, args.ema) if args.ema else None
    hard = HardPlates(len(train)) if args.hard else None
    ctc_each = nn.CTCLoss(blank=0, zero_infinity=True, reduction="none")
    t0 = time.time()
    model.train()
    for step in range(1, args.steps + 1):
        xs, texts, drawn = [], [], []
        for _ in range(args.batch):
            if rng.random() < args.synthetic:
                x, text = synthetic(rng, args.emblems)
            else:
                # (no extra draw without --br-crops: the old command keeps its random stream)
                if br_train and rng.random() < args.br_share / (1 - args.synthetic):
                    s = rng.choice(br_train)
                elif hard is not None:
                    i = hard.pick(rng) if rng.random() < args.hard else rng.randrange(len(train))
                    s = train[i]
                    drawn.append((len(xs), i))
                else:
                    s = rng.choice(train)
                im, box = region(s, cache)
                # (no extra draw without --det-margins either)
                det_like = bool(args.det_margins) and s[3] is not None and rng.random() < args.det_margins
                dim = bool(args.dim) and rng.random() < args.dim
                cam = bool(args.camera) and rng.random() < args.camera
                x, text = augment(rng, im, box, det_like, dim, cam), s[4]
            xs.append(x)
            texts.append(text)
        logits = model.net(torch.from_numpy(np.stack(xs)))
        logp = F.log_softmax(logits, dim=-1).permute(1, 0, 2)
        targets, lengths = encode(texts)
        steps_in = torch.full((len(xs),), logp.shape[0], dtype=torch.long)
        if hard is None:
            loss = ctc(logp, targets, steps_in, lengths)
        else:
            # the same mean as CTCLoss's, with each plate's own loss kept for HardPlates
            each = ctc_each(logp, targets, steps_in, lengths) / lengths.clamp(min=1)
            loss = each.mean()
            hard.update(drawn, each.detach())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(model)
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
        if not args.no_eval and step % 300 == 0 and step < args.steps:
            print(f"step {step}: {fmt(evaluate(model, val, cache))}", flush=True)
    if not args.no_eval:
        print(f"after: {fmt(evaluate(model, val, cache))} ({len(val)} validation plates)", flush=True)
    if ema is not None:
        last = os.path.splitext(args.out)[0] + ".last.onnx"
        export(model, last, t0)
        model = ema.module
        if not args.no_eval:
            print(f"averaged (--ema {args.ema}): {fmt(evaluate(model, val, cache))}", flush=True)
    export(model, args.out, t0)


def export(model, out, t0):
    model.eval()
    torch.onnx.export(model, torch.zeros(1, 3, H, W), out, input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "n"}, "probs": {0: "n"}}, opset_version=17, dynamo=False)
    fuse_file(out, out)  # same arithmetic in fewer operators (15-20% faster on one core)
    print(f"exported {out} ({os.path.getsize(out):,} bytes); CPU time {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
