"""The whole TotalFM model: image tower + text tower + learned logit scale and bias.

Its state-dict keys are the released checkpoint's top-level layout: ``vit.*``,
``image_proj.*``, ``text_encoder.*``, ``text_proj.*``, ``logit_scale``, ``logit_bias``.
Training (``TotalFMLib.training``) and inference (``TotalFMLib.totalfm``) share it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .image_tower import build_image_tower
from .text_tower import build_text_tower


class TotalFMModel(nn.Module):
    def __init__(self, config: ModelConfig, load_text_backbone_weights: bool = True):
        super().__init__()
        self.config = config
        image = build_image_tower(config.arch, config.embed_dim)
        text = build_text_tower(config.text, config.embed_dim, load_backbone_weights=load_text_backbone_weights)
        # keep the towers' submodules at top level so the keys match the released layout
        self.vit, self.image_proj = image.vit, image.image_proj
        self.text_encoder, self.text_proj = text.text_encoder, text.text_proj
        self._image_tower = [image]  # a list hides them from state_dict / parameters
        self._text_tower = [text]
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias)))

    @property
    def image_tower(self):
        return self._image_tower[0]

    @property
    def text_tower(self):
        return self._text_tower[0]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W, D) crops -> (B, embed_dim) unit vectors."""
        return self.image_tower(images)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Sentences -> (B, embed_dim) unit vectors."""
        return self.text_tower(texts)

    def forward(self, images: torch.Tensor, texts: list[str]):
        return self.encode_image(images), self.encode_text(texts)
