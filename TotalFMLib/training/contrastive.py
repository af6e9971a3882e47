"""Contrastive (CLIP / SigLIP) training of organ crops against organ sentences.

``ContrastiveModel`` is the core's ``TotalFMModel`` (saved in the released checkpoint's
layout by ``models.checkpoint``) with a training ``forward(images, tokens)`` that
returns both embeddings and the logit parameters, so DDP sees every trained tensor in
the forward output.

Batches come from ``samplers.OrganBatchSampler`` (groups of one organ from several
cases, several organs per batch). Across ranks the embeddings and text keys are
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


class ContrastiveModel(TotalFMModel):
    """Image tower + text tower + learnable ``logit_scale`` (log) and ``logit_bias``."""

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
        img = self.image_tower(images)
        txt = F.normalize(self.text_tower.encode(tokens).float(), dim=-1, eps=1e-6)
        return img.float(), txt, self.logit_scale, self.logit_bias


def contrastive_loss(img, txt, keys, logit_scale, logit_bias, kind: str = "siglip") -> torch.Tensor:
    """Loss over the global batch: gathers across ranks (identity on one process)."""
    img, txt = D.gather_with_grad(img), D.gather_with_grad(txt)
    same = same_text_matrix(D.gather_no_grad(keys))
    if kind == "clip":
        return clip_loss(img, txt, logit_scale, same)
    return siglip_loss(img, txt, logit_scale, logit_bias, same)


def build_contrastive_model(model_config: ModelConfig, text_trainable_layers: int = 1,
                            loss: str = "siglip", init_image: str | Path | None = None) -> ContrastiveModel:
    model = ContrastiveModel(model_config)
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
        self.model = build_contrastive_model(self.model_config, c.text_trainable_layers, c.loss,
                                             c.init_image or None)
        self.dataset = CropDataset(data, split=cfg.split, positives=c.positives, seed=cfg.seed,
                                   layout=VIEWS[cfg.data_view])
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
        tokens = self.model.text_tower.tokenize(batch["text"])  # here, not in loader workers
        img, txt, scale, bias = module(batch["image"].to(device, non_blocking=True).float(), tokens)
        return contrastive_loss(img, txt, batch["key"].to(device), scale, bias, self.cfg.contrastive.loss)

    def after_step(self):
        with torch.no_grad():
            self.model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def log_extra(self) -> dict:
        return {"logit_scale": float(self.model.logit_scale.detach().exp()), "logit_bias": float(self.model.logit_bias.detach())}

    def final_config(self) -> ModelConfig:
        """The model config with the learned logit scale and bias written into it."""
        return replace(self.model_config, logit_scale=float(self.model.logit_scale.detach()),
                       logit_bias=float(self.model.logit_bias.detach()))

    def save_final(self, out: Path) -> Path:
        return save_model_checkpoint(out / "model.pt", unwrap(self.model), self.final_config(),
                                     drop_frozen_text=not self.cfg.contrastive.save_frozen_text)
