"""Averages the weights of readers fine-tuned from the same base by the same command with different seeds
(a "uniform model soup", Wortsman et al., ICML 2022) into one ONNX file of the same graph and cost.

    python3 models/train/soup.py --out models/plate_reader.onnx A.onnx B.onnx C.onnx

Readers fine-tuned from one pretrained recogniser stay in one basin of the loss, so the average of their
weights is a reader too, and one whose errors vary less from seed to seed than any single run's (issue 21:
right and wrong whole-pass decisions moved by up to 16 and 18 of 174 between seeds of one command). The
inputs must be exports of plate_reader.py (the same fused graph): every node and every non-float tensor must
match, or the script stops and names the first difference. Float initializers are averaged in float64 and
stored as float32. Deterministic: the same inputs in any order give the same file.
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def graph_signature(model):
    """The graph without its float weights: nodes (type, inputs, outputs, attributes) and initializer names."""
    g = model.graph
    nodes = [(n.op_type, tuple(n.input), tuple(n.output), tuple(a.SerializeToString() for a in n.attribute))
             for n in g.node]
    return nodes, [i.name for i in g.initializer], [(i.name, i.type.SerializeToString()) for i in g.input]


def soup(paths):
    models = [onnx.load(p) for p in paths]
    first = graph_signature(models[0])
    for p, m in zip(paths[1:], models[1:]):
        sig = graph_signature(m)
        for what, a, b in zip(("nodes", "initializers", "inputs"), first, sig):
            if a != b:
                sys.exit(f"{p}: its {what} differ from {paths[0]}'s; only exports of the same graph can be averaged")
    out = models[0]
    for k, init in enumerate(out.graph.initializer):
        arrays = [numpy_helper.to_array(m.graph.initializer[k]) for m in models]
        if arrays[0].dtype.kind == "f":
            mean = np.mean(np.stack([a.astype(np.float64) for a in arrays]), axis=0).astype(arrays[0].dtype)
            init.CopyFrom(numpy_helper.from_array(mean, init.name))
        elif any(not np.array_equal(arrays[0], a) for a in arrays[1:]):
            sys.exit(f"initializer {init.name} ({arrays[0].dtype}) differs between the inputs")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("readers", nargs="+", help="plate_reader.py exports, same command, different seeds")
    args = ap.parse_args()
    if len(args.readers) < 2:
        sys.exit("give at least two readers to average")
    # sorted: the mean is the same in any order, and so is which file's non-weight fields are kept
    paths = sorted(args.readers, key=lambda p: open(p, "rb").read())
    model = soup(paths)
    onnx.checker.check_model(model)
    onnx.save(model, args.out)
    print(f"averaged {len(paths)} readers into {args.out}", flush=True)


if __name__ == "__main__":
    main()
