#!/usr/bin/python3
"""Plaintext linear probe: exact softmax regression on extracted features.

Reads PREFIX.features.npy / PREFIX.labels.npy as written by
`blindtuner extract`, standardises the features with the training set's mean
and deviation, fits multinomial logistic regression (bias included, L2 penalty
--l2 on the weights) to convergence with Newton's method, and prints train and
test accuracy.  This is the plaintext reference the encrypted head is judged
against.  Needs only python3-numpy.

    blindtuner extract --data fashion-mnist:train --classes 5-9 --out /tmp/fm59_train
    blindtuner extract --data fashion-mnist:test  --classes 5-9 --out /tmp/fm59_test
    /usr/bin/python3 tools/linear_probe.py /tmp/fm59_train /tmp/fm59_test

--pixels runs the same probe on raw Fashion-MNIST pixels of --classes instead
(a baseline), reading Debian's dataset-fashion-mnist files.
"""
import argparse
import gzip
import json
import sys

import numpy as np


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit(x, y, k, l2, iters=50, tol=1e-10):
    """Newton's method on mean cross-entropy + l2/2 |W|^2 (bias unpenalised)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros((d + 1, k))
    yo = np.eye(k)[y]
    pen = np.full(d + 1, l2)
    pen[-1] = 0.0

    def loss(w):
        z = xb @ w
        z = z - z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        return float((lse - (z * yo).sum(1)).mean() + 0.5 * (pen[:, None] * w * w).sum())

    f = loss(w)
    for it in range(iters):
        p = softmax(xb @ w)
        g = xb.T @ (p - yo) / n + pen[:, None] * w
        # Hessian blocks: X^T diag(p_a (delta_ab - p_b)) X / n
        h = np.zeros((d + 1, k, d + 1, k))
        for a in range(k):
            for b in range(a, k):
                s = p[:, a] * ((a == b) - p[:, b])
                blk = (xb * s[:, None]).T @ xb / n
                h[:, a, :, b] = blk
                h[:, b, :, a] = blk.T
        h = h.reshape((d + 1) * k, (d + 1) * k)
        h[np.diag_indices_from(h)] += np.repeat(pen, k) + 1e-9
        step = np.linalg.solve(h, g.reshape(-1)).reshape(d + 1, k)
        t = 1.0
        while True:
            fn = loss(w - t * step)
            if fn <= f - 1e-4 * t * float((g * step).sum()) or t < 1e-6:
                break
            t *= 0.5
        w -= t * step
        done = f - fn < tol
        f = fn
        if done:
            break
    return w, f, it + 1


def predict(w, x):
    return (np.hstack([x, np.ones((len(x), 1))]) @ w).argmax(1)


def load_prefix(prefix):
    return np.load(prefix + ".features.npy").astype(np.float64), np.load(prefix + ".labels.npy").astype(np.int64)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load_pixels(split, classes):
    d = "/usr/share/datasets/fashion-mnist"
    x = read_idx(f"{d}/{split}-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float64) / 255
    y = read_idx(f"{d}/{split}-labels-idx1-ubyte.gz").astype(np.int64)
    keep = np.isin(y, classes)
    remap = {c: i for i, c in enumerate(classes)}
    return x[keep], np.array([remap[v] for v in y[keep]])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", nargs="?", help="PREFIX of the training features")
    ap.add_argument("test", nargs="?", help="PREFIX of the test features")
    ap.add_argument("--l2", type=float, default=1e-4)
    ap.add_argument("--pixels", action="store_true", help="raw Fashion-MNIST pixels instead")
    ap.add_argument("--classes", default="5-9", help="with --pixels: labels to keep, e.g. 5-9 or 5,6,7")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.pixels:
        classes = []
        for part in a.classes.split(","):
            lo, _, hi = part.partition("-")
            classes += list(range(int(lo), int(hi or lo) + 1))
        xtr, ytr = load_pixels("train", classes)
        xte, yte = load_pixels("t10k", classes)
    else:
        if not a.train or not a.test:
            ap.error("give the train and test PREFIXes (or --pixels)")
        xtr, ytr = load_prefix(a.train)
        xte, yte = load_prefix(a.test)
    k = int(max(ytr.max(), yte.max())) + 1
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w, f, iters = fit(xtr, ytr, k, a.l2)
    acc_tr = float((predict(w, xtr) == ytr).mean())
    pte = predict(w, xte)
    acc_te = float((pte == yte).mean())
    per_class = [float((pte[yte == c] == c).mean()) for c in range(k)]
    res = {"train_images": len(ytr), "test_images": len(yte), "features": xtr.shape[1], "classes": k,
           "l2": a.l2, "newton_iterations": iters, "train_loss": f, "train_accuracy": acc_tr,
           "test_accuracy": acc_te, "test_accuracy_per_class": per_class}
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"linear probe: {len(ytr)} train / {len(yte)} test images, {xtr.shape[1]} features, {k} classes, "
              f"l2 {a.l2}, {iters} Newton iterations")
        print(f"  train accuracy {100 * acc_tr:.2f} %, test accuracy {100 * acc_te:.2f} %")
        print("  test accuracy per class: " + ", ".join(f"{100 * v:.1f}" for v in per_class))
    return 0


if __name__ == "__main__":
    sys.exit(main())
