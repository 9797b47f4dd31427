"""Makes the quantized plate detector take its input as 8-bit integers: an exact rewrite.

    python3 models/train/uint8_input.py IN.int8.onnx OUT.int8.onnx

quantize.py's model takes floats ((x/255 - 0.5)/0.5 per pixel) and its first node, QuantizeLinear, turns
them into 8-bit integers for the integer convolutions: the daemon wrote 4 bytes per value and ONNX Runtime
read them back to write 1. This rewrite removes that node: the model takes the 8-bit values themselves
(ONNX type uint8, same shape), and records the input's scale and zero point in the model's metadata
(`gatehouse.input_scale`, `gatehouse.input_zero_point`). The daemon reads them at load and quantizes each
pixel value through a 256-entry table while it lays out the input, with QuantizeLinear's own formula
(saturate(round_half_even(x / scale) + zero_point), x computed exactly as for the float input), so the
integers, and every output, are bit for bit the same. The script checks that on random inputs against the
float-input model run by ONNX Runtime and refuses to write a model that differs.

Only for a model whose input feeds one QuantizeLinear (quantize.py's QDQ output, after space_to_depth.py or
not). quantize.py runs it on what it writes.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from space_to_depth import run  # noqa: E402

SCALE_KEY = "gatehouse.input_scale"
ZERO_POINT_KEY = "gatehouse.input_zero_point"


def rewrite(model):
    """Rewrites `model` (onnx.ModelProto) in place; returns (scale, zero_point) of the new uint8 input."""
    g = model.graph
    image = g.input[0].name
    users = [n for n in g.node if image in n.input]
    if len(users) != 1 or users[0].op_type != "QuantizeLinear":
        sys.exit("uint8_input: the input does not feed one QuantizeLinear; run it on quantize.py's model")
    q = users[0]
    inits = {i.name: i for i in g.initializer}
    if len(q.input) < 3 or q.input[1] not in inits or q.input[2] not in inits:
        sys.exit("uint8_input: QuantizeLinear has no constant scale and zero point")
    scale = numpy_helper.to_array(inits[q.input[1]])
    zp = numpy_helper.to_array(inits[q.input[2]])
    if scale.size != 1 or zp.size != 1 or zp.dtype != np.uint8:
        sys.exit(f"uint8_input: expected one uint8 zero point and one scale, got {zp.dtype} {zp.shape}, {scale.shape}")
    new = image + "_u8"
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == q.output[0]:
                n.input[i] = new
    g.node.remove(q)
    old = g.input[0]
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    g.input.remove(old)
    g.input.insert(0, helper.make_tensor_value_info(new, TensorProto.UINT8, dims))
    scale_f = float(np.float32(scale.reshape(())))
    zp_i = int(zp.reshape(()))
    for key, value in ((SCALE_KEY, repr(scale_f)), (ZERO_POINT_KEY, str(zp_i))):
        for p in list(model.metadata_props):
            if p.key == key:
                model.metadata_props.remove(p)
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return scale_f, zp_i


def quantize(x, scale, zp):
    """ONNX QuantizeLinear to uint8 as ONNX Runtime computes it (f32 division, round half to even)."""
    q = np.rint(x.astype(np.float32) / np.float32(scale))
    return (np.clip(q, -zp, 255 - zp) + zp).astype(np.uint8)


def pixels_to_float(v):
    """What the daemon feeds the float model for 8-bit pixels v: v * (1 / (255 * 0.5)) + (-0.5 / 0.5) in f32."""
    mul = np.float32(1.0) / (np.float32(255.0) * np.float32(0.5))
    return v.astype(np.float32) * mul + np.float32(-1.0)


def convert(src, dst, shapes):
    """Rewrites `src` into `dst`; checks equal outputs on random pixels of each [N, C, H, W] in `shapes`."""
    model = onnx.load(src)
    scale, zp = rewrite(model)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    rng = np.random.default_rng(7)
    worst = 0.0
    # every pixel value occurs, at least in the first sample
    for shape in shapes:
        v = rng.integers(0, 256, shape, dtype=np.uint8)
        v.reshape(-1)[:256] = np.arange(256, dtype=np.uint8)
        a, b = run(src, pixels_to_float(v)), run(data, quantize(pixels_to_float(v), scale, zp))
        worst = max(worst, float(np.abs(a - b).max()))
    if worst != 0.0:
        sys.exit(f"uint8_input: rewritten model differs by {worst}; not written")
    with open(dst, "wb") as f:
        f.write(data)
    return scale, zp


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    channels = onnx.load(sys.argv[1]).graph.input[0].type.tensor_type.shape.dim[1].dim_value or 3
    b = 2 if channels == 12 else 1
    shapes = [(1, channels, h // b, w // b) for h, w in [(352, 640), (480, 640), (64, 96)]]
    scale, zp = convert(sys.argv[1], sys.argv[2], shapes)
    print(f"wrote {sys.argv[2]}: uint8 input, scale {scale!r}, zero point {zp}; outputs identical")


if __name__ == "__main__":
    main()
