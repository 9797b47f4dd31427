"""Makes the plate detector take its image as 2 x 2 pixel blocks (space-to-depth), an exact rewrite.

    python3 models/train/space_to_depth.py IN.onnx OUT.onnx

The detector's first layer is a 3 x 3, stride-2 convolution over the 3-channel image. ONNX Runtime's 8-bit
convolution is slow on 3 input channels at full resolution (a quarter of the quantized detector's time).
The same layer can read the image as 2 x 2 blocks: 12 channels at half the resolution (ONNX SpaceToDepth
order: channel (dy * 2 + dx) * 3 + c holds pixel (2y + dy, 2x + dx) of colour c), with a 2 x 2 stride-1
kernel padded one block at the top and left. Each 3 x 3 tap lands on one (block, offset) pair, the
remaining weights are zero, so every product and sum is the same: the quantized model's integer
arithmetic and scales are untouched and its outputs are bit for bit the old ones (checked before
writing). The daemon writes its input in that layout directly (manifest `input.space_to_depth = 2`), so the
rearrangement costs nothing at run time.

Works on the float model and on quantize.py's QDQ model (the int8 weights are rearranged; their
per-channel scales stay). quantize.py runs it on what it writes.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

BLOCK = 2
# 3 x 3 tap -> (2 x 2 tap, offset inside the 2-pixel block): tap 0 reads the previous block's second pixel
TAP = {0: (0, 1), 1: (1, 0), 2: (1, 1)}


def s2d(x):
    """[N, C, H, W] -> [N, 4C, H/2, W/2] in ONNX SpaceToDepth order (what the daemon feeds)."""
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 3, 5, 1, 2, 4)
    return np.ascontiguousarray(y.reshape(n, c * BLOCK * BLOCK, h // BLOCK, w // BLOCK))


def rearrange(w):
    """[O, C, 3, 3] weights -> [O, 4C, 2, 2]."""
    o, c = w.shape[:2]
    out = np.zeros((o, c * BLOCK * BLOCK, 2, 2), w.dtype)
    for ky in range(3):
        for kx in range(3):
            (ny, by), (nx, bx) = TAP[ky], TAP[kx]
            out[:, (by * BLOCK + bx) * c : (by * BLOCK + bx + 1) * c, ny, nx] = w[:, :, ky, kx]
    return out


def rewrite(model):
    """Rewrites `model` (onnx.ModelProto) in place; returns the new input's name."""
    g = model.graph
    image = g.input[0].name
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers = lambda name: [n for n in g.node if name in n.input]  # noqa: E731
    # The image reaches the first Conv directly (float) or through QuantizeLinear -> DequantizeLinear (QDQ).
    path = [image]
    conv = None
    for _ in range(3):
        users = consumers(path[-1])
        if len(users) != 1:
            break
        if users[0].op_type == "Conv":
            conv = users[0]
            break
        path.append(users[0].output[0])
    if conv is None:
        sys.exit("space_to_depth: the image does not feed one Conv; not a Gatehouse plate detector")
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    if (attrs.get("strides"), attrs.get("pads"), attrs.get("group", 1)) != ([2, 2], [1, 1, 1, 1], 1):
        sys.exit(f"space_to_depth: first Conv is not 3x3 / stride 2 / pad 1: {attrs}")
    # The weights: an initializer, or DequantizeLinear of an int8 initializer (QDQ).
    wname = conv.input[1]
    if wname not in inits:
        dq = producers[wname]
        wname = dq.input[0]
    w = numpy_helper.to_array(inits[wname])
    if w.shape[2:] != (3, 3):
        sys.exit(f"space_to_depth: first Conv kernel is {w.shape[2:]}, not 3x3")
    inits[wname].CopyFrom(numpy_helper.from_array(rearrange(w), wname))
    for a in list(conv.attribute):
        if a.name in ("kernel_shape", "strides", "pads"):
            conv.attribute.remove(a)
    conv.attribute.extend([
        helper.make_attribute("kernel_shape", [2, 2]),
        helper.make_attribute("strides", [1, 1]),
        helper.make_attribute("pads", [1, 1, 0, 0]),
    ])
    new = image + "_s2d"
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == image:
                n.input[i] = new
    old = g.input[0]
    elem = old.type.tensor_type.elem_type
    g.input.remove(old)
    g.input.insert(0, helper.make_tensor_value_info(new, elem, [1, 3 * BLOCK * BLOCK, "h2", "w2"]))
    # Shape annotations from the old layout no longer hold; ONNX Runtime infers them again.
    del g.value_info[:]
    return new


def run(path_or_bytes, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def convert(src, dst, samples):
    """Rewrites `src` into `dst` and checks that it gives the same outputs on `samples` ([1, 3, H, W])."""
    model = onnx.load(src)
    rewrite(model)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    worst = 0.0
    for x in samples:
        a, b = run(src, x), run(data, s2d(x))
        worst = max(worst, float(np.abs(a - b).max()))
    if worst > 1e-5:
        sys.exit(f"space_to_depth: rewritten model differs by {worst}; not written")
    with open(dst, "wb") as f:
        f.write(data)
    return worst


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rng = np.random.default_rng(7)
    samples = [rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32) for h, w in [(352, 640), (480, 640), (64, 96)]]
    worst = convert(sys.argv[1], sys.argv[2], samples)
    print(f"wrote {sys.argv[2]}: input as 2x2 blocks, largest output difference {worst}")


if __name__ == "__main__":
    main()
