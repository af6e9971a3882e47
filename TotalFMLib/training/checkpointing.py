"""Checkpoints of training: the final model file and resumable training state.

Final model (read by ``TotalFMLib.models.checkpoint.read_checkpoint`` / ``TotalFM.load``)::

    torch.save({"format": "totalfm-slicer/1",
                "model_state_dict": {vit.*, image_proj.*, text_encoder.*, text_proj.*,
                                     logit_scale, logit_bias},
                "config": ModelConfig.to_dict()}, path)

written through the core's ``checkpoint.write_checkpoint`` (atomic). With
``drop_frozen_text=True`` the frozen ``text_encoder.*`` weights are left out (their
values are the pinned backbone package's own) and the file says so with
``"text_encoder_partial": True``; the loader then builds the backbone from the package
and loads the saved keys over it. An image-encoder-only file (VideoMAE output) has
``vit.*``/``image_proj.*`` only and ``"kind": "image_tower"``.

Training state (``checkpoint_last.pt`` in the run folder): model, optimizer,
scheduler and grad-scaler states, step, RNG states and the full ``TrainConfig``.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import save_torch
from ..models.checkpoint import IMAGE_PREFIXES, checkpoint_key, load_image_state, read_checkpoint, write_checkpoint
from ..config import ModelConfig
from ..errors import ModelError

TRAIN_STATE_FORMAT = "totalfm-slicer/train-state/1"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return getattr(model, "module", model)


def _cpu_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in unwrap(module).state_dict().items()}


def save_model_checkpoint(path: str | Path, model: torch.nn.Module, config: ModelConfig,
                          drop_frozen_text: bool = False, **extra) -> Path:
    """Write the final model (a ``TotalFMModel``) in the ``totalfm-slicer/1`` format (see module docstring)."""
    model = unwrap(model)
    keep = lambda k: True
    if drop_frozen_text:
        trainable = {checkpoint_key(n) for n, p in model.named_parameters() if p.requires_grad}
        keep = lambda k: not k.startswith("text_encoder.") or k in trainable
        extra["text_encoder_partial"] = True
    return write_checkpoint(path, model.checkpoint_state(keep), config, **extra)


def save_image_tower(path: str | Path, tower: torch.nn.Module, config: ModelConfig) -> Path:
    """Image encoder only (``vit.*``, ``image_proj.*``), e.g. after VideoMAE pre-training."""
    return write_checkpoint(path, _cpu_state(tower), config, kind="image_tower")


def load_image_tower_weights(tower: torch.nn.Module, path: str | Path):
    """Load the ``vit.*``/``image_proj.*`` part of any of our checkpoints into ``tower`` strictly."""
    state, _ = read_checkpoint(path)
    state = {k: v for k, v in state.items() if k.startswith(IMAGE_PREFIXES)}
    if not state:
        raise ModelError(f"{path}: no image-encoder weights (vit.*) in this checkpoint")
    load_image_state(tower, state, strict=True)


def rng_state() -> dict:
    """RNG states as plain tensors/tuples, so the file loads with ``weights_only=True``."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(path: str | Path, *, model, optimizer, scheduler, scaler, step: int,
                     train_config: dict, model_config: ModelConfig) -> Path:
    blob = {"format": TRAIN_STATE_FORMAT, "model_state_dict": _cpu_state(model),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "step": step, "rng": rng_state(), "train_config": train_config,
            "config": model_config.to_dict()}
    return save_torch(blob, path)


def restore_train_state(path: str | Path, *, model, optimizer, scheduler, scaler) -> int:
    """Load a ``save_train_state`` file into the training objects and the RNG (the saving
    rank's stream); the step it was saved at."""
    state = load_train_state(path)
    unwrap(model).load_state_dict(state["model_state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return int(state["step"])


def load_train_state(path: str | Path) -> dict:
    """The dict written by ``save_train_state``; ModelError if the file is not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such training checkpoint")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{path}: not a readable training checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != TRAIN_STATE_FORMAT:
        raise ModelError(f"{path}: not a training-state checkpoint (format {TRAIN_STATE_FORMAT})")
    return blob
