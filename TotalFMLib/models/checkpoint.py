"""Reading and writing model checkpoints.

Two formats are read, both with ``torch.load(weights_only=True)``:

* ours: ``{"format": "totalfm-slicer/1", "model_state_dict": ..., "config": ModelConfig.to_dict()}``
  (the config holds the architecture, text backbone, crop size, logit scale/bias,
  calibration, model id and version, so a path is all ``TotalFM.load`` needs);
* the released TotalFM checkpoint: the state dict under ``model_state_dict`` (or
  ``model``) and no config; it gets :func:`TotalFMLib.config.official_config`.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..atomic import save_torch
from ..config import ModelConfig, official_config
from ..errors import ModelError

FORMAT = "totalfm-slicer/1"


def read_checkpoint(path: str | os.PathLike, with_meta: bool = False):
    """(state_dict, config) of a checkpoint file; ModelError with the reason otherwise.

    ``with_meta=True`` adds a third item: the file's other entries (e.g.
    ``text_encoder_partial``: frozen text-backbone weights left out, see
    ``training.checkpointing``).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, non-torch files
        raise ModelError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict):
        raise ModelError(f"{path}: expected a dict checkpoint, found {type(blob).__name__}")
    state = blob.get("model_state_dict", blob.get("model"))
    if not isinstance(state, dict):
        raise ModelError(f"{path}: no 'model_state_dict' (or 'model') entry; keys: {sorted(blob)[:10]}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "config" in blob:
        config = ModelConfig.from_dict(blob["config"])
    else:
        config = official_config()
    if with_meta:
        return state, config, {k: v for k, v in blob.items() if k not in ("model_state_dict", "model")}
    return state, config


def write_checkpoint(path: str | os.PathLike, state_dict: dict, config: ModelConfig, **extra) -> Path:
    """Save our format atomically (temp file in the same folder, then rename)."""
    blob = {"format": FORMAT, "model_state_dict": state_dict, "config": config.to_dict(), **extra}
    return save_torch(blob, path)


def describe_mismatch(missing: list[str], unexpected: list[str], limit: int = 20) -> str:
    """One readable paragraph listing missing and unexpected keys."""
    return "; ".join(f"{len(keys)} {kind} keys: " + ", ".join(keys[:limit]) + (" ..." if len(keys) > limit else "")
                     for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
