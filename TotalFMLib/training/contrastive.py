"""Contrastive (CLIP / SigLIP) training of organ crops against organ sentences.

``ContrastiveModel`` is the core's ``TotalFMModel`` (saved in the released checkpoint's
layout by ``models.checkpoint``) with a training ``forward(images, tokens)`` that
returns both embeddings and the logit parameters, so DDP sees every trained tensor in
the forward output.

Batches come from ``samplers.OrganBatchSampler`` (groups of one organ from several
cases, several organs per batch), so organ identity alone cannot solve the task.

The token objective (``token_weight`` > 0, training only): a linear head on the encoder's
tokens says, per token, which inserted findings its patch holds (the benchmark's lesion
maps, ``benchmark_data.lesion_maps``, pooled to the token grid), so the encoder has to
localise findings, not only tell organs and patients apart. The head is not part of the
saved model, which stays a checkpoint of the published architecture. Across ranks the embeddings and text keys are
gathered (``distributed.gather_with_grad``) and the loss is computed on the global
batch. Pairs whose sentences mean the same (``dataset.text_key``) are positives in both
losses. Gradient accumulation sums micro-batch losses (each micro-batch is its own
contrastive batch). The logit scale is clamped to [0, log 100] after each step.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..models.totalfm_model import TotalFMModel
from . import distributed as D
from .checkpointing import load_image_tower_weights, save_model_checkpoint, unwrap
from .dataset import VIEWS, CropDataset, collate
from .loop import Task, decay_groups
from .losses import clip_loss, same_text_matrix, siglip_loss
from .samplers import OrganBatchSampler, RandomBatchSampler
from .train_config import TrainConfig

MAX_LOGIT_SCALE = math.log(100.0)


TRAINING_ONLY = ("token_head.",)  # state-dict prefixes that are not saved with the model


class ContrastiveModel(TotalFMModel):
    """Image tower + text tower + learnable ``logit_scale`` (log) and ``logit_bias``; with
    ``token_findings`` > 0, a training-only linear head on the image tokens."""

    def __init__(self, config: ModelConfig, token_findings: int = 0, **kwargs):
        super().__init__(config, **kwargs)
        self.token_head = nn.Linear(config.arch.dim, token_findings) if token_findings else None

    def checkpoint_state(self, keep=lambda key: True) -> dict:
        return super().checkpoint_state(lambda k: keep(k) and not k.startswith(TRAINING_ONLY))

    def train(self, mode: bool = True):
        """Frozen text-backbone blocks stay in eval mode (no dropout); trainable ones follow ``mode``."""
        super().train(mode)
        if mode:
            self.text_tower.text_encoder.eval()
            for block in self.text_tower.transformer_layers():
                if any(p.requires_grad for p in block.parameters()):
                    block.train()
        return self

    def forward(self, images: torch.Tensor, tokens: dict):
        """(image embeddings, text embeddings, logit scale, logit bias, token logits (B, N, K) or None)."""
        tower = self.image_tower
        states = tower.vit.encode_tokens(images)
        img = F.normalize(tower.image_proj(tower.vit.head(states)), dim=-1, eps=1e-6)
        txt = F.normalize(self.text_tower.encode(tokens).float(), dim=-1, eps=1e-6)
        token_logits = self.token_head(states).float() if self.token_head is not None else None
        return img.float(), txt, self.logit_scale, self.logit_bias, token_logits


def contrastive_loss(img, txt, keys, logit_scale, logit_bias, kind: str = "siglip") -> torch.Tensor:
    """Loss over the global batch: gathers across ranks (identity on one process)."""
    img, txt = D.gather_with_grad(img), D.gather_with_grad(txt)
    same = same_text_matrix(D.gather_no_grad(keys))
    if kind == "clip":
        return clip_loss(img, txt, logit_scale, same)
    return siglip_loss(img, txt, logit_scale, logit_bias, same)


def token_targets(maps: torch.Tensor, arch, cover: float) -> torch.Tensor:
    """(B, N, K) in [0, 1]: which findings each token's patch holds (1 from ``cover`` of a map
    cell on, less in proportion: stones and plaques are small), from lesion maps
    (B, K, s, s, f) at 1/``MAP_STRIDE`` of the crop, in the tokens' (h w f) order."""
    from .crop_maps import MAP_STRIDE

    pool = (arch.image_patch_size // MAP_STRIDE, arch.image_patch_size // MAP_STRIDE,
            arch.frame_patch_size // MAP_STRIDE)
    if min(pool) < 1 or arch.image_patch_size % MAP_STRIDE or arch.frame_patch_size % MAP_STRIDE:
        raise ValueError(f"the token objective needs patches that are multiples of {MAP_STRIDE} voxels, "
                         f"not {arch.image_patch_size}x{arch.image_patch_size}x{arch.frame_patch_size}")
    held = (F.max_pool3d(maps.float(), pool) / (255.0 * cover)).clamp(0, 1)  # (B, K, h, w, f)
    return held.flatten(2).transpose(1, 2)


def token_loss(token_logits: torch.Tensor, targets: torch.Tensor, pos_weight: float = 10.0) -> torch.Tensor:
    """Where and whether, in one objective: binary cross-entropy of each token and finding
    (positives weighted: findings are small), plus that of each crop and finding, the crop's
    logit being its highest token's (multiple-instance: a crop shows a finding when one of its
    tokens does), so a lesion the token grid only grazes still has to be found."""
    weight = torch.tensor(pos_weight, device=targets.device)
    where = F.binary_cross_entropy_with_logits(token_logits, targets, pos_weight=weight)
    whether = F.binary_cross_entropy_with_logits(token_logits.amax(1), targets.amax(1))
    return where + whether


def build_contrastive_model(model_config: ModelConfig, text_trainable_layers: int = 1,
                            loss: str = "siglip", init_image: str | Path | None = None,
                            token_findings: int = 0) -> ContrastiveModel:
    model = ContrastiveModel(model_config, token_findings=token_findings)
    model.text_tower.freeze_backbone(text_trainable_layers)
    if loss == "clip":  # the sigmoid bias plays no part in InfoNCE
        model.logit_bias.requires_grad_(False)
    if init_image:
        load_image_tower_weights(model.image_tower, init_image)
    return model.train()


class ContrastiveTask(Task):
    name = "contrastive"

    def __init__(self, cfg: TrainConfig, data: str | Path):
        c = cfg.contrastive
        self.cfg = cfg
        self.model_config = cfg.model_config()
        from .benchmark_data import FINDINGS

        tokens = c.token_weight > 0 and cfg.data_view == "organs"
        self.model = build_contrastive_model(self.model_config, c.text_trainable_layers, c.loss,
                                             c.init_image or None, token_findings=len(FINDINGS) if tokens else 0)
        augment = None
        if cfg.augment.enabled:
            from .load_augment import LoadAugment

            augment = LoadAugment(cfg.augment, seed=cfg.seed)
        self.dataset = CropDataset(data, split=cfg.split, positives=c.positives, seed=cfg.seed,
                                   layout=VIEWS[cfg.data_view], holdout=cfg.holdout or None, augment=augment)
        self.dataset.require_crop_shape(self.model_config.crop_size, self.model_config.frames)

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        o = cfg.optim
        backbone = "text_tower.text_encoder."
        text = [(n, p) for n, p in self.model.named_parameters() if n.startswith(backbone)]
        other = [(n, p) for n, p in self.model.named_parameters() if not n.startswith(backbone)]
        return decay_groups(other, o.lr, o.weight_decay) + decay_groups(text, o.text_lr, o.weight_decay)

    def batch_sampler(self, cfg: TrainConfig, info: D.DistInfo):
        if cfg.contrastive.sampler == "random":
            return RandomBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, info.rank, info.world_size)
        return OrganBatchSampler(self.dataset.organs, cfg.batch_size, cfg.contrastive.organs_per_batch,
                                 cfg.seed, info.rank, info.world_size)

    def collate(self, items):
        return collate(items)

    def loss(self, module, batch, device) -> torch.Tensor:
        c = self.cfg.contrastive
        tokens = self.model.text_tower.tokenize(batch["text"])  # here, not in loader workers
        img, txt, scale, bias, token_logits = module(batch["image"].to(device, non_blocking=True).float(), tokens)
        loss = contrastive_loss(img, txt, batch["key"].to(device), scale, bias, c.loss)
        self._parts = {"contrastive_loss": float(loss.detach())}
        if token_logits is not None:
            if "maps" not in batch:
                raise ValueError("token_weight > 0 needs lesion maps in the shards: rebuild the benchmark")
            targets = token_targets(batch["maps"].to(device), self.model_config.arch, c.token_cover)
            tokens_part = token_loss(token_logits, targets)
            self._parts["token_loss"] = float(tokens_part.detach())
            loss = loss + c.token_weight * tokens_part
        return loss

    def after_step(self):
        with torch.no_grad():
            self.model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def log_extra(self) -> dict:
        return {"logit_scale": float(self.model.logit_scale.detach().exp()),
                "logit_bias": float(self.model.logit_bias.detach()), **getattr(self, "_parts", {})}

    def final_config(self) -> ModelConfig:
        """The model config with the learned logit scale and bias written into it."""
        return replace(self.model_config, logit_scale=float(self.model.logit_scale.detach()),
                       logit_bias=float(self.model.logit_bias.detach()))

    def save_final(self, out: Path) -> Path:
        return save_model_checkpoint(out / "model.pt", unwrap(self.model), self.final_config(),
                                     drop_frozen_text=not self.cfg.contrastive.save_frozen_text)
