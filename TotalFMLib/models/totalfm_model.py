"""The whole TotalFM model: image tower + text tower + learned logit scale and bias.

The towers are ordinary submodules (``image_tower``, ``text_tower``), and the model's state
dict speaks the released checkpoint's flat layout (``vit.*``, ``image_proj.*``,
``text_encoder.*``, ``text_proj.*``, ``logit_scale``, ``logit_bias``): ``state_dict()``
returns those names and ``load_state_dict`` takes them (and reports missing or unexpected
keys by them), through torch's state-dict hooks and the one mapping in ``checkpoint.py``.
Parameter names (``named_parameters``) stay the modules' own (``image_tower.vit...``).
Training (``TotalFMLib.training``) and inference (``TotalFMLib.totalfm``) share this class.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ModelError
from .checkpoint import checkpoint_key, describe_mismatch, model_key
from .image_tower import build_image_tower
from .text_tower import build_text_tower


class TotalFMModel(nn.Module):
    def __init__(self, config: ModelConfig, load_text_backbone_weights: bool = True):
        super().__init__()
        self.config = config
        self.image_tower = build_image_tower(config.arch, config.embed_dim)
        self.text_tower = build_text_tower(config.text, config.embed_dim,
                                           load_backbone_weights=load_text_backbone_weights)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias)))
        self.register_state_dict_post_hook(_saved_names)
        self.register_load_state_dict_pre_hook(_module_names)
        self.register_load_state_dict_post_hook(_reported_names)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W, D) crops -> (B, embed_dim) unit vectors."""
        return self.image_tower(images)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Sentences -> (B, embed_dim) unit vectors."""
        return self.text_tower(texts)

    def forward(self, images: torch.Tensor, texts: list[str]):
        return self.encode_image(images), self.encode_text(texts)

    def checkpoint_state(self, keep=lambda key: True) -> dict:
        """CPU copies of the weights (released key names) whose key passes ``keep``."""
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items() if keep(k)}

    def load_checkpoint_state(self, state: dict, source, text_backbone_optional: bool = False) -> None:
        """Load weights given under checkpoint key names (``checkpoint.read_checkpoint``);
        ModelError naming ``source`` and the keys that do not fit. ``text_backbone_optional``:
        ``text_encoder.*`` may be left out (a file that keeps only the trained text layers)."""
        try:
            result = self.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shapes that do not fit
            raise ModelError(f"{source}: checkpoint does not fit the model ({' '.join(str(e).split())[:300]})") from None
        missing = [k for k in result.missing_keys if not k.endswith("position_ids")
                   and not (text_backbone_optional and k.startswith("text_encoder."))]
        unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ModelError(f"{source}: checkpoint does not fit the model ({describe_mismatch(missing, unexpected)})")


def _rename(keys, prefix: str, rename) -> list:
    """``keys`` with the part after ``prefix`` renamed (others unchanged), in order."""
    return [prefix + rename(k[len(prefix):]) if k.startswith(prefix) else k for k in keys]


def _saved_names(module, state_dict, prefix, local_metadata) -> None:
    """state_dict() post-hook: our submodule names -> the checkpoint's, order kept."""
    items = list(state_dict.items())
    state_dict.clear()
    state_dict.update(zip(_rename([k for k, _ in items], prefix, checkpoint_key), (v for _, v in items)))


def _module_names(module, state_dict, prefix, *args) -> None:
    """load_state_dict() pre-hook: the checkpoint's names -> our submodule names."""
    items = list(state_dict.items())
    state_dict.clear()
    state_dict.update(zip(_rename([k for k, _ in items], prefix, model_key), (v for _, v in items)))


def _reported_names(module, incompatible) -> None:
    """load_state_dict() post-hook: missing / unexpected keys reported by checkpoint names."""
    for keys in (incompatible.missing_keys, incompatible.unexpected_keys):
        keys[:] = [checkpoint_key(k) for k in keys]
