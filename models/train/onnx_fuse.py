"""Rewrites an exported reader into fewer, fused ONNX operators; the arithmetic is unchanged.

    python3 models/train/onnx_fuse.py IN.onnx OUT.onnx

PP-OCRv4's recogniser, once through onnx2torch and back, spells every hard-swish as four element-wise
nodes (x * clip(x + 3, 0, 6) / 6) and follows many convolutions with a learnable scalar scale and shift
(Mul, Add). ONNX Runtime fuses neither, and on one core those element-wise passes cost about a third of
the reader's time. This pass:
- replaces Add(x, 3) -> Clip(0, 6) -> Mul(x, .) -> Div(., 6) with one HardSwish(x);
- folds a constant scalar or per-channel Mul and then Add straight after a Conv into the Conv's weights
  and bias;
- folds a constant scalar Mul and then Add straight before a Conv into that Conv: the scale always (zero
  padding stays zero), the shift only into a Conv without padding (each output gains shift x the sum of
  its weights), which covers the scale/shift after every depthwise convolution, read by a 1 x 1 one;
- drops Identity nodes that only forward a constant;
- turns each remaining constant scalar Mul -> Add (or lone Add) on an image-shaped tensor into one 1 x 1
  depthwise Conv with that scale and shift. Those sit before padded depthwise convolutions, where the
  shift cannot fold exactly; as element-wise nodes they forced ONNX Runtime to convert its blocked
  convolution layout back and forth around them (ReorderOutput / ReorderInput), as a convolution they stay
  in the blocked layout (about 7% of the reader's time).
It checks the result against the input model on random inputs and refuses to write it if they differ.
plate_reader.py runs it on every export.
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def fuse(model):
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    # Identity of a constant: use the constant itself
    alias = {}
    graph_outputs = {o.name for o in g.output}
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in consts and n.output[0] not in graph_outputs:
            alias[n.output[0]] = n.input[0]
            consts[n.output[0]] = consts[n.input[0]]
    nodes = [n for n in g.node if n.output[0] not in alias]
    for n in nodes:
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]

    def users(name):
        return [n for n in nodes if name in n.input]

    def single_user(name):
        u = users(name)
        return u[0] if len(u) == 1 and name not in graph_outputs else None

    def const_is(name, value):
        v = consts.get(name)
        return v is not None and v.size == 1 and abs(float(v.ravel()[0]) - value) < 1e-6

    def other(n, x):
        return n.input[1] if n.input[0] == x else n.input[0]

    fused = folded = 0
    # hard-swish
    for add in list(nodes):
        if add.op_type != "Add" or add not in nodes:
            continue
        x = next((i for i in add.input if i not in consts), None)
        if x is None or not const_is(other(add, x), 3.0):
            continue
        clip = single_user(add.output[0])
        if clip is None or clip.op_type != "Clip" or len(clip.input) != 3:
            continue
        if not (const_is(clip.input[1], 0.0) and const_is(clip.input[2], 6.0)):
            continue
        mul = single_user(clip.output[0])
        if mul is None or mul.op_type != "Mul" or other(mul, clip.output[0]) != x:
            continue
        div = single_user(mul.output[0])
        if div is None or div.op_type != "Div" or div.input[0] != mul.output[0] or not const_is(div.input[1], 6.0):
            continue
        hs = helper.make_node("HardSwish", [x], [div.output[0]], name=f"{div.name}_hardswish")
        at = nodes.index(add)
        for n in (add, clip, mul, div):
            nodes.remove(n)
        nodes.insert(at, hs)
        fused += 1
    new_inits = []

    def set_params(conv, w, b, tag):
        """Gives `conv` new weights and bias (kept in `consts` for the next pass)."""
        wn, bn = f"{conv.name}_w_{tag}", f"{conv.name}_b_{tag}"
        new_inits.extend([numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)])
        consts[wn], consts[bn] = w, b
        x_in = conv.input[0]
        del conv.input[:]
        conv.input.extend([x_in, wn, bn])

    # Conv -> Mul(const) -> Add(const): into the Conv
    for conv in list(nodes):
        if conv.op_type != "Conv" or conv.input[1] not in consts:
            continue
        w = consts[conv.input[1]].astype(np.float32)
        b = consts[conv.input[2]].astype(np.float32) if len(conv.input) > 2 else np.zeros(w.shape[0], np.float32)
        cout = w.shape[0]
        changed = False
        while True:
            nxt = single_user(conv.output[0])
            if nxt is None or nxt.op_type not in ("Mul", "Add"):
                break
            c = other(nxt, conv.output[0])
            v = consts.get(c)
            # a scalar, or one value per output channel shaped to broadcast over N, C, H, W as [.., C, 1, 1]
            per_channel = v is not None and v.ndim >= 3 and v.shape[-3:] == (cout, 1, 1) and v.size == cout
            if v is None or not (v.size == 1 or per_channel):
                break
            v = v.astype(np.float32).ravel()
            if nxt.op_type == "Mul":
                w = w * (v if v.size == 1 else v.reshape(cout, 1, 1, 1))
                b = b * v
            else:
                b = b + v
            conv.output[0] = nxt.output[0]
            nodes.remove(nxt)
            changed = True
            folded += 1
        if changed:
            set_params(conv, w, b, "folded")
    # Mul(const scalar) -> Add(const scalar) -> Conv: into the Conv after it. A scale always folds (zero
    # padding stays zero); a shift only into a Conv without padding (a 1 x 1 one), where each output gains
    # shift * the sum of its weights.
    producer = {o: n for n in nodes for o in n.output}
    for conv in list(nodes):
        if conv.op_type != "Conv" or conv.input[1] not in consts or conv.input[0] in graph_outputs:
            continue
        pads = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [])
        auto = next((a.s for a in conv.attribute if a.name == "auto_pad"), b"NOTSET")
        unpadded = not any(pads) and auto in (b"NOTSET", b"VALID")
        w = consts[conv.input[1]].astype(np.float32)
        b = consts[conv.input[2]].astype(np.float32) if len(conv.input) > 2 else np.zeros(w.shape[0], np.float32)
        changed = False
        while True:
            prev = producer.get(conv.input[0])
            if prev is None or prev.op_type not in ("Mul", "Add") or single_user(prev.output[0]) is not conv:
                break
            x = next((i for i in prev.input if i not in consts), None)
            v = consts.get(other(prev, x)) if x is not None else None
            if v is None or v.size != 1 or (prev.op_type == "Add" and not unpadded):
                break
            v = float(v.ravel()[0])
            if prev.op_type == "Mul":
                w = w * v
            else:
                b = b + v * w.reshape(w.shape[0], -1).sum(axis=1)
            conv.input[0] = x
            nodes.remove(prev)
            changed = True
            folded += 1
        if changed:
            set_params(conv, w, b, "infolded")
    g.initializer.extend(new_inits)
    del g.node[:]
    g.node.extend(nodes)
    drop_unused(g)
    folded += affine_to_depthwise(model)
    drop_unused(g)
    return model, fused, folded


def drop_unused(g):
    """Removes constants and initialisers nothing reads any more."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    nodes = [n for n in g.node if n.op_type != "Constant" or n.output[0] in used]
    del g.node[:]
    g.node.extend(nodes)
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def affine_to_depthwise(model):
    """Constant scalar Mul -> Add (or a lone Add) on an [N, C, H, W] tensor becomes one 1 x 1 depthwise
    Conv (weight = scale, bias = shift per channel); returns how many."""
    g = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    channels = {}
    for vi in list(inferred.value_info) + list(inferred.input):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[vi.name] = dims[1].dim_value
    scalars = {t.name: float(numpy_helper.to_array(t).ravel()[0]) for t in g.initializer if np.prod(t.dims) == 1}
    graph_outputs = {o.name for o in g.output}

    def split(n):
        """(tensor input, its scalar constant) of a two-input node, or (None, None)."""
        a, b = n.input
        if b in scalars and a not in scalars:
            return a, scalars[b]
        if a in scalars and b not in scalars:
            return b, scalars[a]
        return None, None

    nodes = list(g.node)
    replaced = 0
    for n in list(nodes):
        if n not in nodes or n.op_type not in ("Mul", "Add"):
            continue
        x, v = split(n)
        if x is None or x not in channels:
            continue
        if n.op_type == "Mul":
            users = [u for u in nodes if n.output[0] in u.input]
            if len(users) != 1 or n.output[0] in graph_outputs or users[0].op_type != "Add":
                continue
            scale, (y, shift) = v, split(users[0])
            if y != n.output[0]:
                continue
            gone, last = [n, users[0]], users[0]
        else:
            scale, shift, gone, last = 1.0, v, [n], n
        c = channels[x]
        wn, bn = f"{last.output[0]}_dw_w", f"{last.output[0]}_dw_b"
        g.initializer.extend([
            numpy_helper.from_array(np.full((c, 1, 1, 1), scale, np.float32), wn),
            numpy_helper.from_array(np.full((c,), shift, np.float32), bn),
        ])
        conv = helper.make_node("Conv", [x, wn, bn], [last.output[0]], name=f"{last.output[0]}_affine",
                                group=c, kernel_shape=[1, 1])
        at = nodes.index(n)
        for m in gone:
            nodes.remove(m)
        nodes.insert(at, conv)
        replaced += len(gone)
    del g.node[:]
    g.node.extend(nodes)
    return replaced


def same_outputs(a, b, shape, runs=3, tol=1e-4):
    """Largest difference between two models' first outputs on random inputs (onnx's reference runner)."""
    from onnx.reference import ReferenceEvaluator

    ra, rb = ReferenceEvaluator(a), ReferenceEvaluator(b)
    name = a.graph.input[0].name
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(runs):
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        worst = max(worst, float(np.abs(ra.run(None, {name: x})[0] - rb.run(None, {name: x})[0]).max()))
    return worst <= tol, worst


def fuse_file(src, dst, shape=(2, 3, 48, 160)):
    before = onnx.load(src)
    after, fused, folded = fuse(onnx.load(src))
    onnx.checker.check_model(after)
    ok, worst = same_outputs(before, after, shape)
    if not ok:
        sys.exit(f"fused model differs from {src} by {worst:g}; not written")
    onnx.save(after, dst)
    print(f"fused {fused} hard-swish, folded {folded} Mul/Add into convolutions: {len(before.graph.node)} -> "
          f"{len(after.graph.node)} nodes (largest output difference {worst:.1e})", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    fuse_file(sys.argv[1], sys.argv[2])
