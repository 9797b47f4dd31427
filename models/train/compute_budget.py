#!/usr/bin/env python3
"""Multiply-accumulates and parameter bytes of Gatehouse's models, counted from the ONNX graphs.

    python3 models/train/compute_budget.py [--frame 640x352] [--plates 2] [--extra 224x128,128x64]

For each model of models/manifest.toml's pair (the plate detector and the plate reader; --detector and
--reader name other files) it fixes the input
size (the detector's from --frame, after its 2 x 2 pixel blocks; the reader's one 48 x 160 plate), takes
every tensor's shape from one ONNX Runtime run on zeros, and counts:
- Conv (also in QDQ form: the weight behind a DequantizeLinear): output elements x (input channels / group)
  x kernel height x kernel width;
- MatMul, MatMulInteger and Gemm: batch x M x K x N (the reader's MatMulInteger nodes are its 1 x 1
  convolutions in 8 bits, models/train/reader_int8.py: the per-frame line counts them as int8);
and the bytes of every initializer (int8 weights count one byte each). Element-wise work (activations,
adds, resizes) is left out: it is small next to the convolutions and is memory-bound, not MAC-bound.
The per-frame total is the detector once at --frame, once more at each --extra size (the manifest's coarse
and close passes: 224 x 128 and 128 x 64 for a 16:9 camera), plus the reader `--plates` times. A manifest
with a tilted-plate detector gets one more line: on a frame whose boxes read no clear plate it runs once at
--frame, and its boxes are read too. Nothing is timed here: the
figures are properties of the files, and the README's ARM estimate divides them by an assumed throughput.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]


def run_shapes(model: onnx.ModelProto, dims: dict) -> dict:
    """The shape of every tensor, from one ONNX Runtime run on zeros with every node output exposed
    (exact where static shape inference stops at Shape/Reshape chains)."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in known:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                known.add(o)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [dims.get(d, d) if isinstance(d, str) else d for d in i.shape]
        dtype = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}[i.type]
        feeds[i.name] = np.zeros(shape, dtype=dtype)
    names = [o.name for o in sess.get_outputs()]
    out = {name: list(v.shape) for name, v in zip(names, sess.run(names, feeds))}
    for init in model.graph.initializer:
        out[init.name] = list(init.dims)
    return out


def count(model: onnx.ModelProto, dims: dict) -> tuple[int, int, dict]:
    """(MACs, parameter bytes, MACs by op type) with the symbolic input dimensions set to `dims`."""
    shp = run_shapes(model, dims)
    inits = {i.name: i for i in model.graph.initializer}
    # A QDQ weight: the DequantizeLinear output stands for its int8 initializer.
    dq_source = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}

    def shape_of(name):
        if name in shp and shp[name] and None not in shp[name]:
            return shp[name]
        src = dq_source.get(name)
        if src is not None and src in shp:
            return shp[src]
        if name in consts:
            t = numpy_helper.to_array(consts[name].attribute[0].t)
            return list(t.shape)
        return None

    by_op: dict = {}
    total = 0
    for n in model.graph.node:
        macs = 0
        if n.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            w = n.input[3] if n.op_type == "QLinearConv" else n.input[1]
            y = n.output[0]
            ws, ys = shape_of(w), shape_of(y)
            if ws is None or ys is None:
                sys.exit(f"compute_budget: no shape for {n.name or n.op_type} ({w} / {y})")
            # ws = [Cout, Cin/group, kH, kW]; ys = [N, Cout, H, W]
            macs = int(np.prod(ys)) * int(np.prod(ws[1:]))
        elif n.op_type in ("MatMul", "Gemm", "MatMulInteger"):
            a, b = shape_of(n.input[0]), shape_of(n.input[1])
            y = shape_of(n.output[0])
            if a is None or b is None or y is None:
                sys.exit(f"compute_budget: no shape for {n.name or n.op_type}")
            k = a[-1] if not (n.op_type == "Gemm" and any(at.name == "transA" and at.i for at in n.attribute)) else a[-2]
            macs = int(np.prod(y)) * int(k)
        if macs:
            by_op[n.op_type] = by_op.get(n.op_type, 0) + macs
            total += macs
    params = 0
    for init in inits.values():
        arr = numpy_helper.to_array(init)
        params += arr.nbytes
    for c in consts.values():
        params += numpy_helper.to_array(c.attribute[0].t).nbytes
    return total, params, by_op


def manifest_file(role: str) -> str | None:
    """The file models/manifest.toml names first for `role` (None when it has no such entry)."""
    import tomllib

    with open(ROOT / "models/manifest.toml", "rb") as f:
        models = tomllib.load(f)["model"]
    return next((str(ROOT / "models" / m["file"]) for m in models if m["role"] == role), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frame", default="640x352", help="detector input, width x height (default 640x352)")
    ap.add_argument("--plates", type=int, default=2, help="reader passes per frame (default 2: max_plates)")
    ap.add_argument("--extra", default="224x128,128x64",
                    help="further detector passes, width x height, comma-separated (default: the coarse pass at "
                         "224 and the close pass at 128 of a 16:9 frame; empty: none)")
    ap.add_argument("--detector", help="detector ONNX (default: the manifest's plate-detector)")
    ap.add_argument("--reader", help="reader ONNX (default: the manifest's recognizer)")
    ap.add_argument("--tilted", help="tilted-plate detector ONNX (default: the manifest's, if any; it runs only on a "
                                     "frame whose plate-detector boxes read no clear plate, at --frame)")
    args = ap.parse_args()
    args.detector = args.detector or manifest_file("plate-detector")
    args.reader = args.reader or manifest_file("recognizer")
    args.tilted = args.tilted or manifest_file("tilted-plate-detector")
    w, h = (int(x) for x in args.frame.lower().split("x"))

    det = onnx.load(args.detector)
    in_dims = [d.dim_value or d.dim_param for d in det.graph.input[0].type.tensor_type.shape.dim]
    blocks = 2 if in_dims[1] == 12 else 1
    names = [d for d in in_dims if isinstance(d, str)]
    d_macs, d_params, d_ops = count(det, dict(zip(names, (h // blocks, w // blocks))))
    extra = []
    for size in filter(None, args.extra.split(",")):
        ew, eh = (int(x) for x in size.lower().split("x"))
        extra.append((ew, eh, count(det, dict(zip(names, (eh // blocks, ew // blocks))))[0]))
    det_total = d_macs + sum(m for _, _, m in extra)

    rd = onnx.load(args.reader)
    rnames = [d.dim_param for d in rd.graph.input[0].type.tensor_type.shape.dim if d.dim_param]
    r_macs, r_params, r_ops = count(rd, {n: 1 for n in rnames})

    per_frame = det_total + args.plates * r_macs
    r_int8 = r_ops.get("MatMulInteger", 0)
    print(f"{'model':<42} {'MACs':>14} {'params':>12}  by op")
    print(f"{Path(args.detector).name + f' ({w}x{h})':<42} {d_macs / 1e6:>11.1f} M {d_params / 1e6:>9.2f} MB  "
          + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in d_ops.items()))
    for ew, eh, m in extra:
        print(f"{Path(args.detector).name + f' ({ew}x{eh})':<42} {m / 1e6:>11.1f} M")
    print(f"{Path(args.reader).name + ' (one 48x160 plate)':<42} {r_macs / 1e6:>11.1f} M {r_params / 1e6:>9.2f} MB  "
          + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in r_ops.items()))
    print(f"per frame (detector x {1 + len(extra)} passes + {args.plates} reader passes): {per_frame / 1e6:.1f} M MACs "
          f"(int8 detector {det_total / 1e6:.1f} M; reader {args.plates * r_macs / 1e6:.1f} M: "
          f"int8 {args.plates * r_int8 / 1e6:.1f} M, fp32 {args.plates * (r_macs - r_int8) / 1e6:.1f} M)")
    if args.tilted:
        td = onnx.load(args.tilted)
        t_dims = [d.dim_value or d.dim_param for d in td.graph.input[0].type.tensor_type.shape.dim]
        t_blocks = 2 if t_dims[1] == 12 else 1
        t_names = [d for d in t_dims if isinstance(d, str)]
        t_macs, t_params, _ = count(td, dict(zip(t_names, (h // t_blocks, w // t_blocks))))
        print(f"{Path(args.tilted).name + f' ({w}x{h})':<42} {t_macs / 1e6:>11.1f} M {t_params / 1e6:>9.2f} MB  "
              f"only on a frame with no clear plate read: that frame up to "
              f"{(per_frame + t_macs + args.plates * r_macs) / 1e6:.1f} M MACs ({args.plates} more reader passes)")


if __name__ == "__main__":
    main()
