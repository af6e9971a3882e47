"""VideoMAE pre-training of the image encoder (the core's ``ImageTower``, unchanged).

Tube masking: the token grid is (h, w, f) in (h w f) order; a random set of spatial
positions (h, w) is hidden in every frame, so a masked tube spans the whole slice axis
and the encoder cannot copy a patch from its neighbour slice. The encoder
(``tower.vit.encode_tokens``) sees the visible tokens only. A light decoder (a few
pre-norm transformer blocks of small width) gets the encoded visible tokens plus a
learned mask token at every hidden position, adds its own learned position
embeddings, and predicts each hidden patch's pixels, normalised per patch and channel
(mean/std over the patch's voxels of that channel). The loss is the MSE on the hidden
tokens only.

``VideoMAE.tower`` is the same module the contrastive model uses; its
``state_dict()`` (``vit.*``, ``image_proj.*``) initialises contrastive training.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models.image_tower import build_image_tower
from .checkpointing import save_image_tower
from .dataset import VIEWS, CropDataset
from .loop import Task, decay_groups
from .samplers import RandomBatchSampler


def tube_mask(batch: int, grid: tuple[int, int, int], ratio: float,
              generator: torch.Generator | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted visible and masked token indices, each (batch, K), for a (h, w, f) grid.

    The same spatial positions are masked in all f frames; at least one spatial
    position stays visible and at least one is masked.
    """
    h, w, f = grid
    n_spatial = h * w
    n_mask = min(n_spatial - 1, max(1, int(round(ratio * n_spatial))))
    noise = torch.rand(batch, n_spatial, generator=generator)
    order = noise.argsort(dim=1)
    frames = torch.arange(f)

    def tokens(spatial):  # (B, S) spatial ids -> (B, S*f) token ids in (h w f) order, sorted
        ids = (spatial[:, :, None] * f + frames).reshape(batch, -1)
        return ids.sort(dim=1).values

    visible, masked = tokens(order[:, n_mask:]), tokens(order[:, :n_mask])
    return visible.to(device), masked.to(device)


def normalised_patches(patches: torch.Tensor, channels: int, eps: float = 1e-6) -> torch.Tensor:
    """(B, N, patch_dim) patches flattened (p1 p2 pf c) -> each patch normalised per channel."""
    B, N, D = patches.shape
    x = patches.reshape(B, N, D // channels, channels).float()
    mean = x.mean(dim=2, keepdim=True)
    var = x.var(dim=2, unbiased=False, keepdim=True)
    return ((x - mean) / (var + eps).sqrt()).reshape(B, N, D)


class MAEDecoder(nn.Module):
    """Encoder tokens + mask tokens -> per-token patch predictions."""

    def __init__(self, enc_dim: int, n_tokens: int, patch_dim: int, dim: int = 128, depth: int = 2,
                 heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, patch_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, visible_tokens, visible, masked):
        """Predictions (B, K_masked, patch_dim) at the ``masked`` indices."""
        B, K, _ = visible_tokens.shape
        n = K + masked.shape[1]
        embedded = self.embed(visible_tokens)  # bf16/fp16 under autocast: the mask tokens follow
        x = self.mask_token.to(embedded.dtype).expand(B, n, -1).clone()
        x = x.scatter(1, visible[..., None].expand(-1, -1, x.shape[-1]), embedded)
        x = self.blocks(x + self.pos[:, :n])
        x = torch.gather(x, 1, masked[..., None].expand(-1, -1, x.shape[-1]))
        return self.head(self.norm(x))


class VideoMAE(nn.Module):
    """Masked autoencoder around an ``ImageTower``; ``forward(x)`` returns the loss."""

    def __init__(self, tower, decoder_dim: int = 128, decoder_depth: int = 2, decoder_heads: int = 4,
                 mask_ratio: float = 0.9):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.tower = tower
        self.mask_ratio = mask_ratio
        vit = tower.vit
        pe = vit.pos_embedding
        self.grid_size = (pe.row_embed.num_embeddings, pe.col_embed.num_embeddings,
                          pe.dep_embed.num_embeddings)
        n_tokens = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        patch_dim = vit.to_patch_embedding[1].normalized_shape[0]
        enc_dim = vit.to_patch_embedding[2].out_features
        self.channels = patch_dim // (vit.to_patch_embedding[0].p ** 2 * vit.to_patch_embedding[0].pf)
        self.decoder = MAEDecoder(enc_dim, n_tokens, patch_dim, decoder_dim, decoder_depth, decoder_heads)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        vit = self.tower.vit
        grid = vit.grid(x.shape)
        if grid != self.grid_size:
            raise ValueError(f"input grid {grid} differs from the encoder's {self.grid_size}")
        visible, masked = tube_mask(x.shape[0], grid, self.mask_ratio, generator, x.device)
        encoded = vit.encode_tokens(x, visible)
        pred = self.decoder(encoded, visible, masked)
        with torch.no_grad():
            target = normalised_patches(vit.patchify(x), self.channels)
            target = torch.gather(target, 1, masked[..., None].expand(-1, -1, target.shape[-1]))
        return ((pred.float() - target) ** 2).mean()


class VideoMAETask(Task):
    """Pre-training task for ``loop.train``: images of the training split, random batches."""
    name = "videomae"

    def __init__(self, cfg, data):
        v = cfg.videomae
        self.cfg, self.model_config = cfg, cfg.model_config()
        tower = build_image_tower(self.model_config.arch, self.model_config.embed_dim)
        # the pooling head and projection see no gradient in pre-training
        for m in (tower.vit.pool, tower.vit.proj, tower.image_proj):
            m.requires_grad_(False)
        self.model = VideoMAE(tower, v.decoder_dim, v.decoder_depth, v.decoder_heads, v.mask_ratio)
        self.dataset = CropDataset(data, split=cfg.split, seed=cfg.seed, layout=VIEWS[cfg.data_view],
                                   holdout=cfg.holdout or None)
        self.dataset.require_crop_shape(self.model_config.crop_size, self.model_config.frames)

    def param_groups(self, cfg):
        return decay_groups(self.model.named_parameters(), cfg.optim.lr, cfg.optim.weight_decay)

    def batch_sampler(self, cfg, info):
        return RandomBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, info.rank, info.world_size)

    def collate(self, items):
        return torch.stack([x["image"] for x in items])

    def loss(self, module, batch, device):
        return module(batch.to(device, non_blocking=True).float())

    def save_final(self, out):
        tower = self.model.tower
        tower.requires_grad_(True)
        return save_image_tower(out / "image_encoder.pt", tower, self.model_config)
