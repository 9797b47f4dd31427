"""Quantizes the trained plate detector to 8-bit integers for the daemon.

    python3 models/train/quantize.py --bench ../shared/datasets/openalpr-bench \
        --model models/plate_detector.onnx --out models/plate_detector.int8.onnx

ONNX Runtime's static quantization (QDQ format): weights as signed 8-bit per output channel, activations as
unsigned 8-bit with ranges measured (min/max) on frames of the training split, preprocessed as the daemon
does (long side 640, sides multiples of 32, BGR, (x/255 - 0.5)/0.5). On x86-64 with VNNI and on ARM with
the dot-product instructions the integer convolutions run about twice as fast on one core.

Before writing, it scores the float and the quantized model on the validation split (plate recall at
IoU >= 0.4, as plate_detector.py does) and refuses to write a model that loses more than --max-drop of it.
Calibration is deterministic (fixed frames, min/max), so the same inputs give the same file.

Last, space_to_depth.py rewrites the first convolution to read the image as 2 x 2 pixel blocks, which the
daemon feeds directly (manifest `input.space_to_depth = 2`): bit for bit the same outputs, about 1.5 ms less
per frame on one core. `--space-to-depth 1` writes the plain-input model instead. Then uint8_input.py cuts
off the model's QuantizeLinear so it takes 8-bit values, which the daemon computes while it lays out the
input (exactly the same integers; `--input float` keeps the float input).

`--weights u8 --space-to-depth 1` writes the model the manifest lists for x86-64 CPUs without VNNI
(models/plate_detector.u8.onnx): there ONNX Runtime multiplies unsigned activations by signed weights with
an instruction that saturates pairs of products at 16 bits, and the signed model read 854 of the 993
validation plates of broad_eval.py instead of 900 (docs/recognition.md). Unsigned-by-unsigned products are
widened before they are added, so the unsigned model reads the same with and without VNNI.

The whole-plate reader is not quantized here (see models/train/README.md): with static ranges every
convolution in int8 cost it 3-14 points of exact reads on the validation split; the seven heavy 1 x 1
convolutions that tolerate it best (chosen by a per-layer sensitivity pass on training plates) saved only
15-25% of its time and still lost a validation frame. reader_int8.py quantizes it dynamically instead (each
activation's range measured on the plate being read), which kept its accuracy.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plate_detector import evaluate, load_frames  # noqa: E402
from space_to_depth import convert as space_to_depth  # noqa: E402
from uint8_input import convert as uint8_input  # noqa: E402

SIDE = 640


def daemon_input(path):
    """One frame as the daemon feeds the detector: [1, 3, H, W] float32."""
    im = Image.open(path).convert("RGB")
    s = min(1.0, SIDE / max(im.width, im.height))
    w32 = max(32, int(round(im.width * s / 32)) * 32)
    h32 = max(32, int(round(im.height * s / 32)) * 32)
    arr = np.asarray(im.resize((w32, h32), Image.BILINEAR)).astype(np.float32)[:, :, ::-1]
    return ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy()[None]


class Frames(CalibrationDataReader):
    def __init__(self, paths):
        self.paths = iter(paths)

    def get_next(self):
        p = next(self.paths, None)
        return None if p is None else {"image": daemon_input(p)}


class OrtModel:
    """An ONNX Runtime session that plate_detector.evaluate can call like the torch model."""

    def __init__(self, path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def __call__(self, x):
        return torch.from_numpy(self.session.run(None, {"image": x.numpy()})[0])

    def eval(self):
        pass

    def train(self):
        pass

    def ms(self, runs=20):
        x = np.zeros((1, 3, 352, 640), np.float32)
        self.session.run(None, {"image": x})
        t = time.perf_counter()
        for _ in range(runs):
            self.session.run(None, {"image": x})
        return (time.perf_counter() - t) / runs * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--model", default="models/plate_detector.onnx")
    ap.add_argument("--out", default="models/plate_detector.int8.onnx")
    ap.add_argument("--frames", type=int, default=100, help="training-split frames used to measure ranges")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-drop", type=float, default=0.02, help="largest validation recall loss accepted")
    ap.add_argument("--no-eval", action="store_true", help="skip the validation pass (smoke tests)")
    ap.add_argument("--space-to-depth", type=int, choices=[1, 2], default=2,
                    help="2: the written model reads 2x2 pixel blocks (manifest input.space_to_depth = 2); 1: plain")
    ap.add_argument("--input", choices=["uint8", "float"], default="uint8",
                    help="uint8: the written model takes its 8-bit input values directly (uint8_input.py); "
                         "float: it takes normalised floats and quantizes them itself")
    ap.add_argument("--weights", choices=["s8", "u8"], default="s8",
                    help="s8: signed 8-bit weights (fastest with VNNI / ARM dot products); u8: unsigned, for "
                         "x86-64 without VNNI, whose u8 x s8 kernels saturate (docs/recognition.md)")
    args = ap.parse_args()
    if args.weights == "u8" and args.space_to_depth == 2:
        sys.exit("--weights u8 needs --space-to-depth 1: space_to_depth.py's rewrite assumes signed weights")
    frames = load_frames(args.bench)
    paths = sorted({p for p, _ in frames["train"]})
    np.random.default_rng(args.seed).shuffle(paths)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        # Graph clean-up and shape inference; the symbolic pass cannot size the free H x W input.
        quant_pre_process(args.model, prepared, skip_symbolic_shape=True)
        staged = os.path.join(tmp, "int8.onnx")
        quantize_static(
            prepared,
            staged,
            Frames(paths[: args.frames]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8 if args.weights == "s8" else QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        fp, q = OrtModel(args.model), OrtModel(staged)
        print(f"one thread at 640x352: float {fp.ms():.1f} ms, int8 {q.ms():.1f} ms", flush=True)
        if not args.no_eval:
            r_fp, r_q = evaluate(fp, frames["val"]), evaluate(q, frames["val"])
            print(f"validation recall (IoU >= 0.4, long side 640): float {r_fp:.3f}, int8 {r_q:.3f} "
                  f"on {len(frames['val'])} frames", flush=True)
            if r_fp - r_q > args.max_drop:
                sys.exit(f"int8 model loses {r_fp - r_q:.3f} recall (more than --max-drop {args.max_drop}); not written")
        if args.space_to_depth == 2:
            # Checked on validation frames as the daemon feeds them: the outputs must not change at all.
            samples = [daemon_input(p) for p, _ in frames["val"][:4]]
            blocks = os.path.join(tmp, "s2d.onnx")
            worst = space_to_depth(staged, blocks, samples)
            print(f"input as 2x2 pixel blocks (space_to_depth.py): largest output difference {worst}", flush=True)
            staged = blocks
        if args.input == "uint8":
            b = args.space_to_depth
            shapes = [(1, 3 * b * b, h // b, w // b) for h, w in [(352, 640), (480, 640), (64, 96)]]
            scale, zp = uint8_input(staged, args.out, shapes)
            print(f"8-bit input (uint8_input.py): scale {scale!r}, zero point {zp}, outputs identical", flush=True)
        else:
            with open(staged, "rb") as src, open(args.out, "wb") as dst:
                dst.write(src.read())
    print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes)", flush=True)


if __name__ == "__main__":
    main()
