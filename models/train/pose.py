"""A lane camera's pose, shared by the training scripts (`--pose`) and the pose class sets (class_sets.py).

A camera mounted crooked, or high and to one side of the lane, sees the plate rolled (turned in the image
plane); a camera beside the lane sees its character rows sloping while the strokes stay upright (a vertical
shear). Both are applied about a point (the plate's centre), and each labelled box becomes the bounding box
of its transformed corners: the axis-aligned box a detector gives a tilted plate.
"""
import math

from PIL import Image

MAX_ROLL = 15.0  # degrees either way (--pose)
MAX_SHEAR = 20.0  # degrees of row slope either way (--pose)


def affine(kind, deg, centre):
    """(forward point map, PIL's output-to-input AFFINE coefficients) of a roll or a row shear by `deg`
    degrees about `centre`."""
    cx, cy = centre
    if kind == "roll":
        a = math.radians(deg)
        c, s = math.cos(a), math.sin(a)
        return ((lambda px, py: (cx + (px - cx) * c - (py - cy) * s, cy + (px - cx) * s + (py - cy) * c)),
                (c, s, cx - c * cx - s * cy, -s, c, cy + s * cx - c * cy))
    if kind == "shear":
        k = math.tan(math.radians(deg))
        return (lambda px, py: (px, py + k * (px - cx))), (1.0, 0.0, 0.0, -k, 1.0, k * cx)
    raise ValueError(f"unknown pose {kind!r} (roll or shear)")


def apply(im, boxes, kind, deg, centre, resample=Image.BILINEAR, fill=(128, 128, 128)):
    """`im` (same size) and `boxes` (x, y, w, h) rolled or sheared by `deg` about `centre`."""
    fwd, inv = affine(kind, deg, centre)
    out = im.transform(im.size, Image.AFFINE, inv, resample, fillcolor=fill)

    def bound(b):
        x, y, w, h = b
        pts = [fwd(px, py) for px, py in ((x, y), (x + w, y), (x, y + h), (x + w, y + h))]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))

    return out, [bound(b) for b in boxes]


def random_pose(rng, im, boxes, centre):
    """Half the time a roll of up to MAX_ROLL degrees, else a row shear of up to MAX_SHEAR, about `centre`."""
    if rng.random() < 0.5:
        return apply(im, boxes, "roll", rng.uniform(-MAX_ROLL, MAX_ROLL), centre)
    return apply(im, boxes, "shear", rng.uniform(-MAX_SHEAR, MAX_SHEAR), centre)
