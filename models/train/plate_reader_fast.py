"""Distils Gatehouse's plate reader into a small, fast one and exports it to ONNX.

    python3 models/train/plate_reader_fast.py --bench ../shared/datasets/openalpr-bench \
        --teacher models/plate_reader.onnx --out models/plate_reader_fast.onnx [--steps 3000] [--seed 7]

Same contract as plate_reader.py (whole plate, 48 x 160 BGR in, [N, 20, 38] class probabilities out, 0 =
blank, 1-10 = 0-9, 11-36 = A-Z, 37 = space), so the daemon's manifest entry differs only in the file name.
The network is a plain CRNN without recurrence (about 0.8 M parameters, ~0.1 GMAC, a few ms per plate on
one core against ~9 ms for the fine-tuned PP-OCRv4 teacher): five 3x3 convolutions with pooling down to
6 x 20, a 6 x 1 convolution that folds the height away, two 1-D convolutions along the plate and a 1 x 1
classifier, one column per output step.

It learns from the same samples and augmentation as plate_reader.py (training split of crops/us and the
end-to-end plate boxes, plus synthetic plates) with two losses: CTC against the label, and per-step KL
divergence to the teacher's output on the same augmented image (the teacher's alignment and its doubts
between look-alike characters carry more than the label alone). Prints exact-match accuracy on the
validation split for the teacher and the student. Seeded; CPU only.
"""
import argparse
import os
import random
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plate_reader import H, W, augment, encode, evaluate, fmt, load_samples, region, synthetic  # noqa: E402


def cbr(cin, cout, k=3, pad=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FastReader(nn.Module):
    """[N, 3, 48, 160] -> [N, 20, 38] logits (`forward` adds the softmax, as the daemon expects)."""

    def __init__(self, channels=(32, 64, 96, 128), hidden=192, classes=38):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.cnn = nn.Sequential(
            cbr(3, c1), nn.MaxPool2d(2),  # 24 x 80
            cbr(c1, c2), nn.MaxPool2d(2),  # 12 x 40
            cbr(c2, c3), cbr(c3, c3), nn.MaxPool2d(2),  # 6 x 20
            cbr(c3, c4), cbr(c4, c4),
            cbr(c4, hidden, (H // 8, 1), 0),  # 1 x 20
        )
        self.seq = nn.Sequential(nn.Conv1d(hidden, hidden, 3, 1, 1), nn.ReLU(inplace=True),
                                 nn.Conv1d(hidden, hidden, 3, 1, 1), nn.ReLU(inplace=True))
        self.fc = nn.Conv1d(hidden, classes, 1)

    def logits(self, x):
        f = self.cnn(x).squeeze(2)
        f = f + self.seq(f)
        return self.fc(f).permute(0, 2, 1)

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=-1)


class Teacher(nn.Module):
    """The committed reader's ONNX (softmax output) back in PyTorch, frozen."""

    def __init__(self, path):
        super().__init__()
        from onnx2torch import convert

        self.net = convert(onnx.load(path)).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode=True):
        return super().train(False)  # frozen: batch-norm statistics stay the teacher's

    def forward(self, x):
        return self.net(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--teacher", default="models/plate_reader.onnx")
    ap.add_argument("--out", default="models/plate_reader_fast.onnx")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--kd", type=float, default=1.0, help="weight of the distillation loss")
    ap.add_argument("--synthetic", type=float, default=0.3, help="share of synthetic plates in a batch")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-eval", action="store_true", help="skip the validation passes (smoke tests)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    samples = [s for s in load_samples(args.bench) if 1 <= len(s[4]) <= 10]
    train = [s for s in samples if s[0] == "train"]
    val = [s for s in samples if s[0] == "val"]
    print(f"train plates {len(train)}, validation plates {len(val)}", flush=True)
    teacher = Teacher(args.teacher)
    model = FastReader()
    print(f"student parameters: {sum(p.numel() for p in model.parameters()):,}", flush=True)
    cache = {}
    if not args.no_eval:
        print(f"teacher: {fmt(evaluate(teacher, val, cache))}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(20, args.steps), pct_start=0.1)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    t0 = time.time()
    model.train()
    for step in range(1, args.steps + 1):
        xs, texts = [], []
        for _ in range(args.batch):
            if rng.random() < args.synthetic:
                x, text = synthetic(rng)
            else:
                s = rng.choice(train)
                im, box = region(s, cache)
                x, text = augment(rng, im, box), s[4]
            xs.append(x)
            texts.append(text)
        x = torch.from_numpy(np.stack(xs))
        with torch.no_grad():
            soft = teacher(x).clamp(min=1e-8)
        logp = F.log_softmax(model.logits(x), dim=-1)
        targets, lengths = encode(texts)
        steps_t = torch.full((len(xs),), logp.shape[1], dtype=torch.long)
        l_ctc = ctc(logp.permute(1, 0, 2), targets, steps_t, lengths)
        l_kd = (soft * (soft.log() - logp)).sum(-1).mean()
        loss = l_ctc + args.kd * l_kd
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"step {step} ctc {l_ctc.item():.3f} kd {l_kd.item():.3f} {time.time() - t0:.0f}s", flush=True)
        if not args.no_eval and step % 1000 == 0 and step < args.steps:
            print(f"step {step}: {fmt(evaluate(model, val, cache))}", flush=True)
    if not args.no_eval:
        print(f"student: {fmt(evaluate(model, val, cache))} ({len(val)} validation plates)", flush=True)
    model.eval()
    torch.onnx.export(model, torch.zeros(1, 3, H, W), args.out, input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "n"}, "probs": {0: "n"}}, opset_version=17, dynamo=False)
    print(f"exported {args.out} ({os.path.getsize(args.out):,} bytes); CPU time {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
