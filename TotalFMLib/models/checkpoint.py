"""Model checkpoints: reading, writing, and the one place where the released key layout is
mapped onto our modules.

Two formats are read, both with ``torch.load(weights_only=True)``:

* ours: ``{"format": "totalfm-slicer/1", "model_state_dict": ..., "config": ModelConfig.to_dict()}``
  (the config holds the architecture, text backbone, crop size, logit scale/bias,
  calibration, model id and version, so a path is all ``TotalFM.load`` needs);
* the released TotalFM checkpoint: the state dict under ``model_state_dict`` (or
  ``model``) and no config; it gets :func:`TotalFMLib.config.official_config`.

Both store the released layout: ``vit.*``, ``image_proj.*``, ``text_encoder.*``,
``text_proj.*``, ``logit_scale``, ``logit_bias`` (a DDP ``module.`` prefix is dropped; a
checkpoint without ``vit.pool.cross_attn.k_bias`` gets zeros, as the released code's pooling
has no key bias). ``TotalFMModel`` holds its towers as submodules, so its own keys are
``image_tower.vit.*`` and so on: ``model_keys`` and ``checkpoint_keys`` translate.

A file that is no TotalFM checkpoint gets one line saying what the file is and what was
expected; torch's own advice (to turn ``weights_only`` off) is never passed on.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..atomic import save_torch
from ..config import ModelConfig, official_config
from ..errors import ModelError

FORMAT = "totalfm-slicer/1"

# checkpoint key prefix -> TotalFMModel's submodule path (ImageTower's own keys are the checkpoint's)
LAYOUT = (("vit.", "image_tower.vit."), ("image_proj.", "image_tower.image_proj."),
          ("text_encoder.", "text_tower.text_encoder."), ("text_proj.", "text_tower.text_proj."))
IMAGE_PREFIXES = ("vit.", "image_proj.")
_K_BIAS, _Q_BIAS = "vit.pool.cross_attn.k_bias", "vit.pool.cross_attn.q_bias"
EXPECTED = "a TotalFM checkpoint (a torch.save file holding a dict with 'model_state_dict')"


def model_key(key: str) -> str:
    """The ``TotalFMModel`` key of a checkpoint key."""
    for saved, ours in LAYOUT:
        if key.startswith(saved):
            return ours + key[len(saved):]
    return key


def checkpoint_key(key: str) -> str:
    """The checkpoint key of a ``TotalFMModel`` key."""
    for saved, ours in LAYOUT:
        if key.startswith(ours):
            return saved + key[len(ours):]
    return key


def model_keys(state: dict) -> dict:
    """A checkpoint's state (released layout, as ``read_checkpoint`` returns it) for
    ``TotalFMModel.load_state_dict``."""
    return {model_key(k): v for k, v in state.items()}


def checkpoint_keys(state: dict) -> dict:
    """A ``TotalFMModel`` state dict in the released layout, for ``write_checkpoint``."""
    return {checkpoint_key(k): v for k, v in state.items()}


def released_layout(state: dict) -> dict:
    """Checkpoint keys as written by any trainer: a DDP ``module.`` prefix dropped, a missing
    pooling key bias added as zeros."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if _Q_BIAS in state and _K_BIAS not in state:
        import torch

        state[_K_BIAS] = torch.zeros_like(state[_Q_BIAS])
    return state


def _what_file(path: Path) -> str:
    """What a file that torch cannot load looks like, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive that torch cannot read as a checkpoint (damaged, truncated, or not from torch.save)"
    if head[:1] == b"\x80":
        return ("a Python pickle holding objects other than tensors and plain values, which are not "
                "loaded because unpickling them could run code")
    kinds = {b"\x1f\x8b": "a gzip file", b"\x89HDF": "an HDF5 file", b"\x89PNG": "a PNG image",
             b"%PDF": "a PDF file", b"{": "a JSON or text file"}
    for magic, kind in kinds.items():
        if head.startswith(magic):
            return kind
    if head.isascii():
        return "a text file"
    return "not a torch file"


def read_checkpoint(path: str | os.PathLike, with_meta: bool = False):
    """(state_dict, config) of a checkpoint file, keys in the released layout; one-line
    ModelError otherwise.

    ``with_meta=True`` adds a third item: the file's other entries (e.g.
    ``text_encoder_partial``: frozen text-backbone weights left out, see
    ``training.checkpointing``).
    """
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: {'is a folder' if path.is_dir() else 'no such checkpoint file'}; "
                         f"expected {EXPECTED}")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles would be lines of their own
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unpickling refused, truncated or foreign files: what the file is, not torch's text
        raise ModelError(f"{path}: not a readable torch checkpoint: the file is {_what_file(path)}; "
                         f"expected {EXPECTED}") from None
    if not isinstance(blob, dict):
        raise ModelError(f"{path}: not a TotalFM checkpoint: it holds a {type(blob).__name__}; expected {EXPECTED}")
    state = blob.get("model_state_dict", blob.get("model"))
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a TotalFM checkpoint: no 'model_state_dict' (or 'model') entry "
                         f"(its entries: {', '.join(map(str, sorted(blob)[:10])) or 'none'})")
    state = released_layout(state)
    if not any(str(k).startswith(IMAGE_PREFIXES) for k in state):
        raise ModelError(f"{path}: not a TotalFM checkpoint: its weights hold no image encoder "
                         f"(no vit.* or image_proj.* keys among {len(state)})")
    config = ModelConfig.from_dict(blob["config"]) if "config" in blob else official_config()
    if with_meta:
        return state, config, {k: v for k, v in blob.items() if k not in ("model_state_dict", "model")}
    return state, config


def write_checkpoint(path: str | os.PathLike, state_dict: dict, config: ModelConfig, **extra) -> Path:
    """Save our format atomically (temp file in the same folder, then rename); ``state_dict``
    in the released layout (``checkpoint_keys``)."""
    blob = {"format": FORMAT, "model_state_dict": state_dict, "config": config.to_dict(), **extra}
    return save_torch(blob, path)


def describe_mismatch(missing: list[str], unexpected: list[str], limit: int = 20) -> str:
    """One readable paragraph listing missing and unexpected keys."""
    return "; ".join(f"{len(keys)} {kind} keys: " + ", ".join(keys[:limit]) + (" ..." if len(keys) > limit else "")
                     for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys)


def load_image_state(tower, state: dict, strict: bool = True):
    """Load ``vit.*``/``image_proj.*`` weights into an ``ImageTower``; ModelError naming bad keys."""
    state = released_layout(state)
    try:
        result = tower.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ModelError(f"image encoder weights do not fit the architecture: {e}") from None
    if strict and (result.missing_keys or result.unexpected_keys):
        raise ModelError("image encoder weights do not match the architecture: "
                         + describe_mismatch(result.missing_keys, result.unexpected_keys))
    return result
