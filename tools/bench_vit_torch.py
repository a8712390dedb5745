#!/usr/bin/python3
"""PyTorch's side of `blindtuner bench vit`: images per second of the same
forward pass (all tokens through the final norm; no classifier) on a
deit_base_distilled_patch16_224-shaped model with random weights, same batch,
threads and image size, median of R runs after one warm-up batch.

    /usr/bin/python3 tools/bench_vit_torch.py --threads 2 --batch 8 --runs 3 [--json]

Uses Debian's python3-torch (whose BLAS is the system's libblas.so.3: check
that it is OpenBLAS, not the reference BLAS, with update-alternatives).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import btvit  # noqa: E402

SHAPES = {"deit_tiny": (192, 3), "deit_small": (384, 6), "deit_base": (768, 12), "vit_base": (768, 12)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="deit_base_distilled_patch16_224")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = a.arch.split("_patch")[0].replace("_distilled", "")
    dim, heads = SHAPES[base]
    model = btvit.ViT(img_size=224, patch=16, dim=dim, depth=12, heads=heads,
                      distilled="distilled" in a.arch).eval()
    x = torch.rand(a.batch, 3, a.size, a.size) * 2 - 1
    times = []
    with torch.inference_mode():
        for k in range(a.runs + 1):
            t0 = time.perf_counter()
            t = model.forward_features(x)
            f = 0.5 * (t[:, 0] + t[:, 1]) if model.distilled else t[:, 0]
            dt = time.perf_counter() - t0
            if k:
                times.append(dt)
                if not a.json:
                    print(f"  run {k}: {dt:.3f} s, {a.batch / dt:.2f} images/s")
    med = statistics.median(times)
    res = {"model": a.arch, "image_size": a.size, "threads": a.threads, "batch": a.batch,
           "runs": a.runs, "torch": torch.__version__, "seconds_per_batch": med,
           "images_per_s": a.batch / med}
    print(json.dumps(res, indent=1) if a.json else
          f"torch {torch.__version__}: median {med:.3f} s per batch, {a.batch / med:.2f} images/s")
    del f


if __name__ == "__main__":
    main()
