"""A small, dependency-free PyTorch DeiT/ViT and a safetensors writer.

This is the *reference* the C forward pass (src/vision/vit.c) is checked
against.  It follows timm's VisionTransformer (deit_*, vit_*) module for
module, with the same parameter names, so a state dict from it is a timm
state dict; to_hf() renames it to Hugging Face's ViT/DeiT names.

Only Debian's python3-torch and python3-numpy are needed (no timm, no
safetensors package: the format is written by hand below).
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, a JSON header
# {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
# then the raw little-endian tensor bytes.

_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
       "I32": np.int32, "U8": np.uint8}


def _to_bytes(arr, dtype):
    """Returns (bytes, dtype string) of a tensor converted to `dtype`."""
    if dtype == "BF16":
        a = np.ascontiguousarray(arr, dtype=np.float32)
        u = a.view(np.uint32).astype(np.uint64)
        # round to nearest even, as torch does
        u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
        return u.tobytes(), "BF16"
    npdt = _DT[dtype]
    return np.ascontiguousarray(arr, dtype=np.dtype(npdt).newbyteorder("<")).tobytes(), dtype


def save_safetensors(path, tensors, metadata=None, dtype="F32"):
    """tensors: {name: numpy array or torch tensor}; dtype: F32, F16 or BF16
    for floating tensors (integers are kept)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        a = t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        dt = dtype if a.dtype.kind == "f" else {np.dtype(v): k for k, v in _DT.items()}[a.dtype]
        b, dts = _to_bytes(a, dt)
        header[name] = {"dtype": dts, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """Returns ({name: float32 numpy array}, metadata)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        b0, b1 = h["data_offsets"]
        raw = data[b0:b1]
        if h["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, np.dtype(_DT[h["dtype"]]).newbyteorder("<")).astype(np.float32)
        out[name] = a.reshape(h["shape"])
    return out, meta


def round_like(sd, dtype):
    """The values a state dict takes after a round trip through `dtype`."""
    if dtype == "F32":
        return sd
    if dtype == "F16":
        return {k: v.half().float() for k, v in sd.items()}
    return {k: v.bfloat16().float() for k, v in sd.items()}


# ----------------------------------------------------------------------------
# The model (timm names).

class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """timm's VisionTransformer / DeiT (distilled=True adds dist_token and head_dist)."""

    def __init__(self, img_size=224, patch=16, in_chans=3, dim=768, depth=12, heads=12,
                 mlp_ratio=4.0, num_classes=1000, distilled=False, eps=1e-6):
        super().__init__()
        self.patch, self.distilled = patch, distilled
        self.prefix = 2 if distilled else 1
        self.grid = img_size // patch
        self.patch_embed = PatchEmbed(patch, in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + self.prefix, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, int(dim * mlp_ratio), eps)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, num_classes)
        if distilled:
            self.head_dist = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if distilled:
            nn.init.trunc_normal_(self.dist_token, std=0.02)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def pos_for(self, gh, gw):
        """Position embeddings for a gh x gw grid: bicubic (a = -0.75,
        align_corners=False, no antialiasing) as in DeiT, timm <= 0.6 and
        Hugging Face; prefix tokens are kept as they are."""
        pe = self.pos_embed
        if gh == self.grid and gw == self.grid:
            return pe
        d = pe.shape[-1]
        grid = pe[:, self.prefix:].reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([pe[:, :self.prefix], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, d)], 1)

    def forward_features(self, x):
        """All tokens after the final norm: [B, prefix + patches, dim]."""
        b = x.shape[0]
        gh, gw = x.shape[2] // self.patch, x.shape[3] // self.patch
        t = self.patch_embed(x)
        pre = [self.cls_token.expand(b, -1, -1)]
        if self.distilled:
            pre.append(self.dist_token.expand(b, -1, -1))
        t = torch.cat(pre + [t], 1) + self.pos_for(gh, gw)
        return self.norm(self.blocks(t))

    def forward(self, x):
        t = self.forward_features(x)
        if self.distilled:
            return self.head(t[:, 0]), self.head_dist(t[:, 1])
        return self.head(t[:, 0])


def to_hf(sd, dim, prefix="vit."):
    """Renames a timm state dict to Hugging Face ViT/DeiT names (q, k, v split)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            p = f"{prefix}encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                kind = rest.split(".")[-1]
                for j, n in enumerate(("query", "key", "value")):
                    out[p + f"attention.attention.{n}.{kind}"] = v[j * dim:(j + 1) * dim]
                continue
            m = {"norm1": "layernorm_before", "norm2": "layernorm_after",
                 "attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense",
                 "mlp.fc2": "output.dense"}
            mod, kind = rest.rsplit(".", 1)
            out[p + m[mod] + "." + kind] = v
        else:
            m = {"cls_token": "embeddings.cls_token", "dist_token": "embeddings.distillation_token",
                 "pos_embed": "embeddings.position_embeddings",
                 "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
                 "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
                 "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
            if k in m:
                out[prefix + m[k]] = v
            elif k.startswith("head"):
                out[k.replace("head_dist", "distillation_classifier").replace("head", "classifier")] = v
    return out


# ----------------------------------------------------------------------------
# timm's evaluation preprocessing on PIL images (what the C side reproduces).

def timm_eval_transform(img, size, crop_pct=0.875, mean=(0.485, 0.456, 0.406),
                        std=(0.229, 0.224, 0.225)):
    """PIL image -> float32 CHW array, as timm's eval transform: Resize the
    shorter side to floor(size / crop_pct) (PIL bicubic), CenterCrop(size),
    ToTensor, Normalize."""
    from PIL import Image
    img = img.convert("RGB")
    scale = int(math.floor(size / crop_pct))
    w, h = img.size
    if w <= h:
        nw, nh = scale, int(scale * h / w)
    else:
        nw, nh = int(scale * w / h), scale
    img = img.resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    a = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return ((a - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]).astype(np.float32)
