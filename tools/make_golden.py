#!/usr/bin/python3
"""Makes the vision layer's golden fixtures in tests/data/vision/.

Run once with Debian's python3-torch, python3-numpy and python3-pil; the
outputs are committed and the C tests (tests/test_vision.c) never need torch:

    /usr/bin/python3 tools/make_golden.py

Models: small random DeiT / ViT networks in timm and Hugging Face naming,
stored as float32, float16 and bfloat16; each *.io.safetensors holds input
images (float32 NCHW) and the reference outputs of tools/btvit.py (every
token after the final norm) computed with the weights as stored.  Weights are
drawn wider than a real initialisation so that attention is far from uniform
and every block changes the result.

Images: PNG (RGB, grey, palette) and JPEG files, the pixels PIL decodes, and
timm's eval transform of each (PIL bicubic resize, centre crop, normalise).
Datasets: a gzip IDX pair, MedMNIST-style .npz files (stored and deflated)
and an image folder.
"""
import gzip
import io
import os
import struct
import sys
import zipfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import btvit  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "vision")


def widen(model, g):
    """Redraws the weights wider than timm's init (see the module doc)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "qkv" in name:
                p.copy_(2.0 / p.shape[1] ** 0.5 * torch.randn(p.shape, generator=g))
            elif p.ndim == 2:
                p.copy_(1.0 / p.shape[1] ** 0.5 * torch.randn(p.shape, generator=g))
            elif p.ndim == 4:
                p.copy_(1.0 / (p[0].numel()) ** 0.5 * torch.randn(p.shape, generator=g))
            else:  # tokens, pos_embed
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def make_model_case(name, g, *, dim, depth, heads, patch, img, distilled, dtype, hf=None, eps=1e-6,
                    inputs=((2, 16, 16),)):
    model = btvit.ViT(img_size=img, patch=patch, in_chans=3, dim=dim, depth=depth, heads=heads,
                      mlp_ratio=4.0, num_classes=5, distilled=distilled, eps=eps)
    widen(model, g)
    sd = btvit.round_like(dict(model.state_dict()), dtype)
    model.load_state_dict(sd)
    model.eval()
    meta = {"format": "pt", "bt.num_heads": heads}
    if eps != 1e-6 and not hf:
        meta["bt.eps"] = eps
    tensors = btvit.to_hf(sd, dim, hf) if hf is not None else sd
    btvit.save_safetensors(os.path.join(OUT, f"{name}.safetensors"), tensors, meta, dtype=dtype)
    io_t = {}
    for k, (n, h, w) in enumerate(inputs):
        x = torch.randn((n, 3, h, w), generator=g)
        with torch.no_grad():
            t = model.forward_features(x)
        io_t[f"images{k}"] = x
        io_t[f"tokens{k}"] = t
    btvit.save_safetensors(os.path.join(OUT, f"{name}.io.safetensors"), io_t, {"inputs": len(inputs)})
    print(f"{name}: dim {dim}, depth {depth}, heads {heads}, {dtype}, inputs {list(inputs)}")


def test_image(w, h, rng, mode):
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)), ((xx + yy) * 7) % 256], -1)
    a = np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(a, "RGB")
    if mode == "L":
        im = im.convert("L")
    elif mode == "P":
        im = im.convert("P", palette=Image.ADAPTIVE, colors=16)
    return im


def make_image_cases(rng):
    cases = {}
    specs = [("rgb", 37, 23, "RGB", "png"), ("grey", 19, 30, "L", "png"),
             ("palette", 24, 24, "P", "png"), ("photo", 33, 27, "RGB", "jpg"),
             ("greyjpg", 20, 21, "L", "jpg")]
    for name, w, h, mode, fmt in specs:
        im = test_image(w, h, rng, mode)
        path = os.path.join(OUT, f"{name}.{fmt}")
        if fmt == "png":
            im.save(path, optimize=False)
        else:
            im.save(path, quality=90)
        dec = Image.open(path)
        dec.load()
        rgb = np.asarray(dec.convert("RGB"))
        cases[f"{name}.pixels"] = rgb  # U8, H x W x 3
        cases[f"{name}.pre16"] = btvit.timm_eval_transform(dec, 16)
        cases[f"{name}.pre12_c1"] = btvit.timm_eval_transform(dec, 12, crop_pct=1.0, mean=(0.5, 0.5, 0.5),
                                                              std=(0.5, 0.5, 0.5))
        # a larger output (upsampling) too
        cases[f"{name}.pre28"] = btvit.timm_eval_transform(dec, 28)
    btvit.save_safetensors(os.path.join(OUT, "images.io.safetensors"), cases)
    print("images:", ", ".join(s[0] for s in specs))


def make_dataset_cases(rng):
    # IDX: 5 images of 6 x 4 and their labels, gzip'd
    imgs = rng.integers(0, 256, (5, 6, 4)).astype(np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    with gzip.GzipFile(os.path.join(OUT, "tiny-images-idx3-ubyte.gz"), "wb", mtime=0) as f:
        f.write(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 5, 6, 4) + imgs.tobytes())
    with gzip.GzipFile(os.path.join(OUT, "tiny-labels-idx1-ubyte.gz"), "wb", mtime=0) as f:
        f.write(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 5) + labels.tobytes())
    # MedMNIST layout: {train,val,test}_{images,labels}, labels [N, 1]
    grey = {}
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        grey[f"{split}_images"] = rng.integers(0, 256, (n, 5, 7)).astype(np.uint8)
        grey[f"{split}_labels"] = rng.integers(0, 3, (n, 1)).astype(np.uint8)
    np.savez(os.path.join(OUT, "tiny_grey.npz"), **grey)
    rgb = {}
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        rgb[f"{split}_images"] = rng.integers(0, 256, (n, 4, 6, 3)).astype(np.uint8)
        rgb[f"{split}_labels"] = rng.integers(0, 7, (n, 1)).astype(np.int64)
    np.savez_compressed(os.path.join(OUT, "tiny_rgb.npz"), **rgb)
    expect = {"idx.labels": labels.astype(np.int64), "idx.image3": imgs[3],
              "grey.train_labels": grey["train_labels"][:, 0].astype(np.int64),
              "grey.train_image1": grey["train_images"][1],
              "rgb.test_labels": rgb["test_labels"][:, 0].astype(np.int64),
              "rgb.test_image1": rgb["test_images"][1]}
    btvit.save_safetensors(os.path.join(OUT, "datasets.io.safetensors"), expect)
    # image folder: two classes
    for cls, k in (("cat", 2), ("dog", 1)):
        os.makedirs(os.path.join(OUT, "folder", cls), exist_ok=True)
        for i in range(k):
            test_image(5 + i, 4, rng, "RGB").save(os.path.join(OUT, "folder", cls, f"{i}.png"))
    print("datasets: idx, npz (stored, deflated), folder")


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(20240521)
    rng = np.random.default_rng(20240521)
    torch.manual_seed(0)
    make_model_case("deit_tiny_f32", g, dim=32, depth=2, heads=2, patch=4, img=16, distilled=False,
                    dtype="F32", inputs=((2, 16, 16), (1, 24, 24), (1, 12, 20)))
    make_model_case("deit_distilled_f16", g, dim=32, depth=2, heads=4, patch=4, img=16, distilled=True,
                    dtype="F16", inputs=((3, 16, 16), (1, 20, 12)))
    make_model_case("vit_hf_bf16", g, dim=24, depth=2, heads=3, patch=8, img=24, distilled=False,
                    dtype="BF16", hf="vit.", eps=1e-12, inputs=((2, 24, 24), (1, 32, 40)))
    make_model_case("deit_hf_distilled_f32", g, dim=24, depth=1, heads=2, patch=4, img=12, distilled=True,
                    dtype="F32", hf="deit.", eps=1e-12, inputs=((2, 12, 12),))
    make_image_cases(rng)
    make_dataset_cases(rng)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"fixtures: {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
