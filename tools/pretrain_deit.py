#!/usr/bin/python3
"""Pretrains BlindTuner's bundled offline DeiT on Fashion-MNIST classes 0-4.

The default fine-tuning task is classes 5-9, which this transformer never
sees, so the features it gives there are a genuine transfer.

Needs Debian's python3-torch, python3-numpy and dataset-fashion-mnist
(the IDX files in /usr/share/datasets/fashion-mnist/).  Deterministic for a
given seed and thread count on one machine; CPU only.

    /usr/bin/python3 tools/pretrain_deit.py            # writes models/deit_fmnist05.*

Output: <out>.safetensors (timm names, float32 weights by default, settings in
the safetensors metadata), <out>.json (settings and results) and the log
<out>.log.
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import btvit  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split, classes):
    x = read_idx(f"{DATA}/{split}-images-idx3-ubyte.gz")
    y = read_idx(f"{DATA}/{split}-labels-idx1-ubyte.gz")
    keep = np.isin(y, classes)
    return x[keep], y[keep].astype(np.int64)


def to_input(x):
    """uint8 [B, 28, 28] -> normalised float [B, 3, 28, 28] (grey to 3 channels)."""
    t = (x.float() / 255.0 - MEAN) / STD
    return t.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def augment(x, g):
    """Random 2-pixel shifts (pad with background, crop) and horizontal flips."""
    b = x.shape[0]
    p = F.pad(x, (2, 2, 2, 2))
    ox = torch.randint(0, 5, (b,), generator=g)
    oy = torch.randint(0, 5, (b,), generator=g)
    out = torch.stack([p[i, oy[i]:oy[i] + 28, ox[i]:ox[i] + 28] for i in range(b)])
    flip = torch.rand(b, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def evaluate(model, x, y, bs=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += (model(to_input(x[i:i + bs])).argmax(1) == y[i:i + bs]).sum().item()
    model.train()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/deit_fmnist05")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--time-only", action="store_true", help="time 20 steps and stop")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    classes = [0, 1, 2, 3, 4]
    xtr, ytr = load("train", classes)
    xte, yte = load("t10k", classes)
    xtr, ytr, xte, yte = map(torch.from_numpy, (xtr.copy(), ytr, xte.copy(), yte))

    model = btvit.ViT(img_size=28, patch=a.patch, in_chans=3, dim=a.dim, depth=a.depth,
                      heads=a.heads, num_classes=len(classes))
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "token" not in n and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "token" not in n and "pos_embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)
    steps_per_epoch = len(xtr) // a.batch
    total = steps_per_epoch * a.epochs
    warm = steps_per_epoch // 2

    def lr_at(s):
        if s < warm:
            return a.lr * (s + 1) / warm
        return a.lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))

    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    logf = None if a.time_only else open(a.out + ".log", "w")

    def log(msg):
        print(msg, flush=True)
        if logf:
            logf.write(msg + "\n")
            logf.flush()

    log(f"pretrain_deit: torch {torch.__version__}, {a.threads} thread(s), seed {a.seed}")
    log(f"settings: {json.dumps(vars(a), sort_keys=True)}")
    log(f"data: {len(xtr)} train / {len(xte)} test images of classes {classes}")
    log(f"model: dim {a.dim}, depth {a.depth}, heads {a.heads}, patch {a.patch}, {nparams} parameters")
    step, t0 = 0, time.time()
    history = []
    for epoch in range(a.epochs):
        perm = torch.randperm(len(xtr), generator=g)
        run_loss, seen = 0.0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * a.batch:(i + 1) * a.batch]
            xb = to_input(augment(xtr[idx], g))
            for pg in opt.param_groups:
                pg["lr"] = lr_at(step)
            loss = F.cross_entropy(model(xb), ytr[idx], label_smoothing=a.smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            run_loss += loss.item() * len(idx)
            seen += len(idx)
            step += 1
            if a.time_only and step == 20:
                dt = time.time() - t0
                print(f"{dt / 20:.3f} s/step, {20 * a.batch / dt:.1f} images/s, "
                      f"epoch ~{dt / 20 * steps_per_epoch / 60:.1f} min")
                return
        acc = evaluate(model, xte, yte)
        history.append({"epoch": epoch + 1, "train_loss": run_loss / seen, "test_acc": acc})
        log(f"epoch {epoch + 1}/{a.epochs}: train loss {run_loss / seen:.4f}, "
            f"test accuracy (classes 0-4) {100 * acc:.2f} %, {time.time() - t0:.0f} s")

    sd = {k: v for k, v in model.state_dict().items()}
    stored = btvit.round_like(sd, a.dtype)
    model.load_state_dict(stored)
    acc_stored = evaluate(model, xte, yte)
    log(f"test accuracy with {a.dtype} weights: {100 * acc_stored:.2f} %")
    meta = {"format": "pt", "bt.arch": "deit", "bt.image_size": 28, "bt.patch_size": a.patch,
            "bt.num_heads": a.heads, "bt.crop_pct": 1.0,
            "bt.mean": f"{MEAN},{MEAN},{MEAN}", "bt.std": f"{STD},{STD},{STD}",
            "bt.eps": 1e-6, "bt.trained_on": "fashion-mnist classes 0-4",
            "bt.made_by": "tools/pretrain_deit.py"}
    btvit.save_safetensors(a.out + ".safetensors", sd, meta, dtype=a.dtype)
    with open(a.out + ".json", "w") as f:
        json.dump({"settings": vars(a), "parameters": nparams, "classes": classes,
                   "history": history, "test_acc_stored": acc_stored,
                   "seconds": round(time.time() - t0), "torch": torch.__version__,
                   "metadata": meta}, f, indent=1, sort_keys=True)
    log(f"wrote {a.out}.safetensors ({os.path.getsize(a.out + '.safetensors')} bytes) in "
        f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
