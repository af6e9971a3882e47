"""Naive baselines written the way the published TotalFM inference code works (issue 5).

The released code was not readable from here, so these follow the issue's description of
it: the case is resampled whole with SimpleITK, then each organ is handled on its own --
the full resampled label volume is scanned once per organ for its bounding box
(``np.where(labels == id)``), the crop is windowed and resized, and the image encoder
runs on one organ at a time (batch 1, fp32) with attention written out as
``softmax(q k^T / sqrt(d)) v``. They live here, never in the library, and serve only as
the reference the benchmark compares against.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from TotalFMLib.vocabulary import catalogue

WINDOWS = ((-600, 1500), (40, 400), (300, 1500))


def resample_whole(ct, seg):
    """Both volumes resampled whole to the recipe's spacing (linear / nearest)."""
    import SimpleITK as sitk  # here, so the encoder baseline runs where SimpleITK is not installed

    spacing = tuple(max(m, float(s)) for m, s in zip((0.6, 0.6, 3.0), ct.spacing))
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(ct.shape[::-1], ct.spacing, spacing)]
    out = []
    for vol, interp, fill, pixel in ((ct, sitk.sitkLinear, -1000.0, sitk.sitkFloat32),
                                     (seg, sitk.sitkNearestNeighbor, 0.0, sitk.sitkInt16)):
        img = sitk.GetImageFromArray(np.asarray(vol.array, dtype=np.float32 if pixel == sitk.sitkFloat32
                                                else np.int16))
        img.SetSpacing(ct.spacing)
        img.SetOrigin(ct.origin)
        img.SetDirection(ct.direction)
        res = sitk.Resample(img, size, sitk.Transform(), interp, ct.origin, spacing, ct.direction, fill, pixel)
        out.append(sitk.GetArrayFromImage(res))
    return out[0], out[1]


def _grow(lo, hi, n, small=192, large=448):
    if n <= small:
        return 0, n
    centre = (lo + hi) // 2
    if hi - lo < small:
        start = min(max(centre - small // 2, 0), n - small)
        return start, start + small
    if hi - lo > large:
        return centre - large // 2, centre + large // 2
    return lo, hi


def organ_crop(hu, labels, label_id, crop_size=192, frames=32):
    """One organ: scan the whole label volume, crop, window, resize."""
    z, y, x = np.where(labels == label_id)
    if len(z) == 0:
        return None
    z0, z1 = int(z.min()), int(z.max()) + 1
    y0, y1 = _grow(int(y.min()), int(y.max()) + 1, labels.shape[1])
    x0, x1 = _grow(int(x.min()), int(x.max()) + 1, labels.shape[2])
    crop = hu[z0:z1, y0:y1, x0:x1]
    channels = []
    for level, width in WINDOWS:
        lo, hi = level - width // 2, level + width // 2
        channels.append((np.clip(crop, lo, hi) - np.float32(lo)) / np.float32(hi - lo))
    image = torch.from_numpy(np.stack(channels).transpose(0, 2, 3, 1).copy())  # (3, Y, X, Z)
    return F.interpolate(image[None], size=(crop_size, crop_size, frames), mode="trilinear",
                         align_corners=False)[0]


def preprocess(ct, seg, organs=None, crop_size=192, frames=32):
    """{organ name: (3, crop, crop, frames) tensor} for the requested organs present."""
    hu, labels = resample_whole(ct, seg)
    out = {}
    for organ in catalogue.resolve(organs):
        image = organ_crop(hu, labels, organ.label_id, crop_size, frames)
        if image is not None:
            out[organ.name] = image
    return out


# ------------------------------------------------------------------ image encoder, the naive way
def _attention(block, x):
    """Self-attention with the scores materialised: softmax(q k^T / sqrt(d)) v."""
    B, N, _ = x.shape
    q, k, v = block.to_qkv(x).reshape(B, N, 3, block.heads, -1).permute(2, 0, 3, 1, 4)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    out = torch.matmul(scores.softmax(dim=-1), v)
    return block.to_out(out.transpose(1, 2).reshape(B, N, -1))


def _pool(pool, x):
    q = x.mean(dim=1, keepdim=True)
    q, k, v = pool.norm1_q(q), pool.norm1_k(x), pool.norm1_v(x)
    ca = pool.cross_attn
    B = x.shape[0]
    split = lambda t: t.reshape(B, t.shape[1], ca.heads, -1).transpose(1, 2)  # noqa: E731
    q = split(F.linear(q, ca.q.weight, ca.q_bias))
    k = split(F.linear(k, ca.k.weight, ca.k_bias))
    v = split(F.linear(v, ca.v.weight, ca.v_bias))
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    out = torch.matmul(scores.softmax(dim=-1), v)
    return ca.proj(out.transpose(1, 2).reshape(B, 1, -1)).squeeze(1)


def naive_forward(tower, x):
    """The image tower's forward with the naive attention above (same weights, fp32)."""
    vit = tower.vit
    tokens = vit.to_patch_embedding(x)
    tokens = tokens + vit.pos_embedding(*vit.grid(x.shape))
    for attn, ff in vit.transformer.layers:
        tokens = tokens + _attention(attn.fn, attn.norm(tokens))
        tokens = tokens + ff(tokens)
    pooled = vit.proj(_pool(vit.pool, tokens))
    return F.normalize(tower.image_proj(pooled), dim=-1, eps=1e-6)


def encode_one_by_one(tower, images):
    """Batch 1, fp32, autograd off (torch.no_grad), one organ after the other, on the
    tower's device."""
    tower.eval()
    device = next(tower.parameters()).device
    out = []
    with torch.no_grad():
        for image in images:
            out.append(naive_forward(tower, image[None].to(device, torch.float32))[0])
    return torch.stack(out).cpu().numpy()
