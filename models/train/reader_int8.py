"""Runs the plate reader's heavy 1 x 1 convolutions in 8-bit integers, quantized per plate as it is read.

    python3 models/train/reader_int8.py --bench ../shared/datasets/openalpr-bench \
        --model models/plate_reader.onnx --out models/plate_reader.int8.onnx

Nine tenths of the reader's time is its 1 x 1 convolutions (PP-OCRv4's PPLCNetV3 backbone: 240 and 480
channels over a 40-step strip). Static quantization, with activation ranges fixed from calibration plates,
cost the reader 3-14 points of exact reads (models/train/README.md): a plate read at night or through glare
has activations far from the calibration's. Here the ranges are not fixed: ONNX Runtime's dynamic
quantization measures each activation's range on the plate being read, and the weights are quantized per
output channel. What the script does:

1. Rewrites every 1 x 1 convolution (stride 1, one group) as Transpose -> MatMul -> Add -> Transpose, which is
   exact up to float rounding (it checks: the same reads, and no output probability more than 1e-3
   apart, on real plates). ONNX Runtime quantizes a
   MatMul dynamically into its integer kernels (VNNI on x86-64, the dot-product instructions on ARM); a
   dynamically quantized convolution would run as the slow ConvInteger.
2. Measures each layer's sensitivity alone: only that layer in int8, the mean log-probability the float
   reader's best path loses per plate, over training-split plates as the daemon reads them (the labelled
   box with its margin; each plate once as photographed and once dimmed, noised and contrast-stretched as at
   dusk). A layer that loses more than --max-loss nats stays float.
3. Quantizes the others (weights int8 per output channel, activations uint8 per tensor, per plate), and
   prints the float and int8 readers' single-thread time per plate and how often their reads agree.

Deterministic: the same reader and bench give the same file. Nothing is trained.
"""
import argparse
import os
import random
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plate_reader import dim_and_stretch, greedy, load_samples, to_input, val_crop  # noqa: E402


def to_matmuls(model):
    """Every 1 x 1, stride-1, one-group Conv with constant weights as Transpose, MatMul, Add, Transpose
    (NCHW -> NHWC, x W^T + b, back). Returns the MatMuls' names."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, mms = [], []
    for n in g.node:
        w = inits.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        attrs = {a.name: a for a in n.attribute}
        one_by_one = (w is not None and list(w.dims[2:]) == [1, 1]
                      and attrs.get("group", helper.make_attribute("group", 1)).i == 1
                      and all(s == 1 for s in getattr(attrs.get("strides"), "ints", [1, 1]))
                      and all(p == 0 for p in getattr(attrs.get("pads"), "ints", [0]))
                      and all(d == 1 for d in getattr(attrs.get("dilations"), "ints", [1, 1])))
        if not one_by_one:
            nodes.append(n)
            continue
        wt = numpy_helper.to_array(w)
        o, c = wt.shape[:2]
        base = n.name or n.output[0]
        g.initializer.append(numpy_helper.from_array(wt.reshape(o, c).T.copy(), base + "_mmw"))
        nodes.append(helper.make_node("Transpose", [n.input[0]], [base + "_nhwc"], perm=[0, 2, 3, 1],
                                      name=base + "_T1"))
        nodes.append(helper.make_node("MatMul", [base + "_nhwc", base + "_mmw"], [base + "_mm"], name=base + "_MM"))
        mms.append(base + "_MM")
        last = base + "_mm"
        if len(n.input) > 2 and n.input[2]:
            nodes.append(helper.make_node("Add", [last, n.input[2]], [base + "_add"], name=base + "_A"))
            last = base + "_add"
        nodes.append(helper.make_node("Transpose", [last], [n.output[0]], perm=[0, 3, 1, 2], name=base + "_T2"))
    used = {i for n in nodes for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(keep)
    return mms


def quantize(src, out, layers):
    quantize_dynamic(src, out, op_types_to_quantize=["MatMul"], nodes_to_quantize=layers,
                     weight_type=QuantType.QInt8, per_channel=True, extra_options={"MatMulConstBOnly": True})


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def probs(path, x, threads=2):
    s = session(path, threads)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 32]})[0] for i in range(0, len(x), 32)])


def loss(ref, p):
    """Mean log-probability, per plate, that `p` loses on the reference's best path."""
    best = ref.argmax(-1)[..., None]
    lr = np.log(np.take_along_axis(ref, best, -1)[..., 0] + 1e-9).sum(-1)
    lp = np.log(np.take_along_axis(p, best, -1)[..., 0] + 1e-9).sum(-1)
    return float((lr - lp).mean())


def ms_per_plate(path, runs):
    s = session(path, 1)
    name = s.get_inputs()[0].name
    x = np.zeros((1, 3, 48, 160), np.float32)
    for _ in range(3):
        s.run(None, {name: x})
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, {name: x})
        t.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(t))


def plates(bench, n, seed):
    """Training-split plates as the reader gets them, each as photographed and dimmed: [2n, 3, 48, 160]."""
    samples = [s for s in load_samples(bench) if s[0] == "train"]
    rng = random.Random(seed)
    rng.shuffle(samples)
    cache, xs = {}, []
    for s in samples[:n]:
        crop = val_crop(s, cache)
        xs.append(to_input(crop))
        xs.append(dim_and_stretch(rng, np.asarray(crop.resize((160, 48), Image.BILINEAR), dtype=np.float32)))
    return np.stack(xs).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--model", default="models/plate_reader.onnx")
    ap.add_argument("--out", default="models/plate_reader.int8.onnx")
    ap.add_argument("--plates", type=int, default=300, help="training-split plates for the sensitivity pass")
    ap.add_argument("--max-loss", type=float, default=0.2,
                    help="a layer that alone loses more nats per plate than this stays float")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-eval", action="store_true", help="skip the timing (smoke tests)")
    args = ap.parse_args()

    x = plates(args.bench, args.plates, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        rewritten = os.path.join(tmp, "matmul.onnx")
        model = onnx.load(args.model)
        layers = to_matmuls(model)
        onnx.save(model, rewritten)
        ref = probs(args.model, x)
        same = probs(rewritten, x)
        diff = float(np.abs(same - ref).max())
        if diff > 1e-3 or greedy(same) != greedy(ref):
            sys.exit(f"reader_int8: the 1 x 1 convolutions rewritten as MatMul differ by {diff} (> 1e-3) "
                     "or read differently")
        print(f"{len(layers)} 1 x 1 convolutions as MatMul (largest difference on {len(x)} plates: {diff:.1e})")
        keep = []
        for i, layer in enumerate(layers):
            one = os.path.join(tmp, f"one{i}.onnx")
            quantize(rewritten, one, [layer])
            nats = loss(ref, probs(one, x))
            w = next(t for t in model.graph.initializer if t.name == layer[:-3] + "_mmw")
            print(f"  {layer:<32} {w.dims[0]:>4} -> {w.dims[1]:<4} alone in int8 loses {nats:.3f} nats/plate"
                  + ("" if nats <= args.max_loss else "  (stays float)"))
            if nats <= args.max_loss:
                keep.append(layer)
        quantize(rewritten, args.out, keep)
    out = probs(args.out, x)
    agree = np.mean([a == b for a, b in zip(greedy(ref), greedy(out))])
    print(f"int8: {len(keep)} of {len(layers)} layers; on the {len(x)} plates it loses {loss(ref, out):.3f} nats/plate "
          f"and reads {100 * agree:.1f}% of them as the float reader does")
    if not args.no_eval:
        print(f"one thread, per plate: float {ms_per_plate(args.model, 50):.2f} ms, int8 {ms_per_plate(args.out, 50):.2f} ms")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
