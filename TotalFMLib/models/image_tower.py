"""TotalFM image encoder: a 3D ViT with factorised positions and attention pooling.

Key names and shapes match the released checkpoint's ``vit.*`` and ``image_proj.*``
(Testing/Data/totalfm_official_image_keys.txt); docs/published_facts.md, "Image encoder",
has the facts.
Input crops are (B, C, H, W, D) with D the slice (frame) axis; tokens are ordered
(h w f) and each patch is flattened (p1 p2 pf c).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ImageArch
from ..errors import Cancelled, InputError, ModelError


class Patchify(nn.Module):
    """(B, C, H, W, D) -> (B, h*w*f, p1*p2*pf*C), tokens (h w f), patches (p1 p2 pf c)."""

    def __init__(self, p: int, pf: int):
        super().__init__()
        self.p, self.pf = p, pf

    def forward(self, x):
        B, C, H, W, D = x.shape
        p, pf = self.p, self.pf
        if H % p or W % p or D % pf:
            raise InputError(None, f"image of shape {tuple(x.shape)} does not split into {p}x{p}x{pf} patches")
        x = x.reshape(B, C, H // p, p, W // p, p, D // pf, pf)
        x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # b h w f p1 p2 pf c
        return x.reshape(B, (H // p) * (W // p) * (D // pf), p * p * pf * C)


class FactorisedPosition(nn.Module):
    """Learned row/col/depth embeddings, each dim/3 wide, concatenated per token."""

    def __init__(self, h: int, w: int, f: int, dim: int):
        super().__init__()
        self.row_embed = nn.Embedding(h, dim // 3)
        self.col_embed = nn.Embedding(w, dim // 3)
        self.dep_embed = nn.Embedding(f, dim // 3)

    @staticmethod
    def _rows(table: nn.Embedding, n: int):
        n_ref = table.num_embeddings
        if n > n_ref:
            raise InputError(None, f"token grid of {n} exceeds the model's {n_ref} positions")
        if n == n_ref:
            return table.weight
        idx = torch.linspace(0, n_ref - 1, n, device=table.weight.device).round().long()
        return table.weight[idx]

    def forward(self, h: int, w: int, f: int):
        """(h*w*f, dim) position embeddings in (h w f) order."""
        r, c, d = self._rows(self.row_embed, h), self._rows(self.col_embed, w), self._rows(self.dep_embed, f)
        k = r.shape[1]
        return torch.cat([
            r[:, None, None, :].expand(h, w, f, k),
            c[None, :, None, :].expand(h, w, f, k),
            d[None, None, :, :].expand(h, w, f, k),
        ], dim=-1).reshape(h * w * f, 3 * k)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x):
        B, N, _ = x.shape
        q, k, v = self.to_qkv(x).reshape(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(B, N, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm residual blocks, no final norm."""

    def __init__(self, dim, depth, heads, dim_head, mlp_dim, dropout):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([
            PreNorm(dim, Attention(dim, heads, dim_head, dropout)),
            PreNorm(dim, FeedForward(dim, mlp_dim, dropout)),
        ]) for _ in range(depth))

    def forward(self, x):
        for attn, ff in self.layers:
            x = x + attn(x)
            x = x + ff(x)
        return x


class CrossAttention(nn.Module):
    """Multi-head attention from a query to tokens; q/k/v Linear without bias plus bias vectors."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, q, k, v):
        B, Nq, _ = q.shape
        split = lambda t: t.reshape(B, t.shape[1], self.heads, -1).transpose(1, 2)
        q = split(F.linear(q, self.q.weight, self.q_bias))
        k = split(F.linear(k, self.k.weight, self.k_bias))
        v = split(F.linear(v, self.v.weight, self.v_bias))
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(dim/heads)
        return self.proj(out.transpose(1, 2).reshape(B, Nq, -1))


class AttentionPool(nn.Module):
    """Query = mean of the tokens; LayerNorms on query, keys, values; no residual."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim)
        self.norm1_k = nn.LayerNorm(dim)
        self.norm1_v = nn.LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, heads)

    def forward(self, x):
        q = x.mean(dim=1, keepdim=True)
        return self.cross_attn(self.norm1_q(q), self.norm1_k(x), self.norm1_v(x)).squeeze(1)


class ViT3D(nn.Module):
    def __init__(self, image_size, image_patch_size, frames, frame_patch_size, dim, depth, heads,
                 mlp_dim, channels=3, dim_head=64, out_dim=768, dropout=0.1, emb_dropout=0.0):
        super().__init__()
        p, pf = image_patch_size, frame_patch_size
        if image_size % p or frames % pf or dim % 3:
            raise ModelError(f"bad image encoder arch: image_size {image_size} / patch {p}, "
                             f"frames {frames} / frame patch {pf}, dim {dim} (must be divisible by 3)")
        patch_dim = channels * p * p * pf
        self.to_patch_embedding = nn.Sequential(
            Patchify(p, pf), nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim))
        self.pos_embedding = FactorisedPosition(image_size // p, image_size // p, frames // pf, dim)
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)
        self.pool = AttentionPool(dim, heads)
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim, bias=False))

    def grid(self, x_shape) -> tuple[int, int, int]:
        """Token grid (h, w, f) for an input of shape (B, C, H, W, D)."""
        p = self.to_patch_embedding[0]
        return x_shape[2] // p.p, x_shape[3] // p.p, x_shape[4] // p.pf

    def patchify(self, x):
        """(B, C, H, W, D) -> (B, N, patch_dim), the raw patches the embedding sees."""
        return self.to_patch_embedding[0](x)

    def encode_tokens(self, x, keep: torch.Tensor | None = None):
        """Patch + position embedding, keep token indices `keep` (B, K), then the blocks."""
        tokens = self.to_patch_embedding(x)
        tokens = tokens + self.pos_embedding(*self.grid(x.shape)).to(tokens.dtype)
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return self.transformer(self.dropout(tokens))

    def head(self, tokens):
        """(B, N, dim) tokens -> (B, out_dim): attention pooling, then LayerNorm and Linear."""
        return self.proj(self.pool(tokens))


class ImageTower(nn.Module):
    """ViT + image_proj; forward gives L2-normalised (B, embed_dim) embeddings."""

    def __init__(self, vit: ViT3D, out_dim: int, embed_dim: int):
        super().__init__()
        self.vit = vit
        self.image_proj = nn.Linear(out_dim, embed_dim)

    def forward(self, x):
        return F.normalize(self.image_proj(self.vit.head(self.vit.encode_tokens(x))), dim=-1, eps=1e-6)


def build_image_tower(arch: "ImageArch | dict", embed_dim: int) -> ImageTower:
    """Build from an ``ImageArch`` or a checkpoint's ``arch`` mapping (``dropout`` and
    ``emb_dropout`` optional); ModelError naming what is wrong with it."""
    arch = ImageArch.from_dict(arch)
    return ImageTower(ViT3D(**arch.to_dict()), arch.out_dim, embed_dim)


def encode_batches(tower: ImageTower, images: torch.Tensor, batch_size: int = 8, device=None,
                   progress=None, cancel=None) -> np.ndarray:
    """Embed (N, C, H, W, D) crops in batches -> float32 (N, embed_dim).

    ``progress(fraction, message)`` is called after each batch; ``cancel()`` returning
    True raises Cancelled. With ``device`` given, the tower is moved there.
    """
    if device is not None:
        tower.to(device)
    device = next(tower.parameters()).device
    was_training = tower.training
    tower.eval()
    out, n = [], len(images)
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                if cancel is not None and cancel():
                    raise Cancelled("image encoding cancelled")
                batch = images[start:start + batch_size].to(device, torch.float32)
                out.append(tower(batch).float().cpu().numpy())
                if progress is not None:
                    done = min(start + batch_size, n)
                    progress(done / n, f"encoded {done}/{n} crops")
    finally:
        tower.train(was_training)
    if not out:
        return np.zeros((0, tower.image_proj.out_features), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
