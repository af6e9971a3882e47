"""Organ segmentation with TotalSegmentator's Python API (the ``total`` task).

Needs TotalSegmentator's inference (``INSTALL_HINT``: nnU-Net, and its weights, which
TotalSegmentator downloads on first use). Without it, callers pass an existing segmentation.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, ModelError

# the one way this project tells users to install TotalSegmentator's inference (README, CLI, errors)
INSTALL_HINT = 'pip install -e ".[segment]" in the TotalFMSlicer checkout'


def totalsegmentator_device(device=None) -> str:
    """TotalSegmentator's name for a torch device: "cuda" -> "gpu", "cuda:1" -> "gpu:1",
    "cpu", "mps"; None -> the GPU where there is one (as ``TotalFM.load`` picks).
    TotalSegmentator's own names ("gpu", "gpu:1") pass through."""
    import re

    from ..runtime import pick_device

    if isinstance(device, str) and re.fullmatch(r"gpu(:\d+)?", device.strip()):
        return device.strip()
    try:
        device = pick_device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(None, f"device {device!r} is not a torch device name ({e})") from None
    if device.type == "cuda":
        return "gpu" if device.index is None else f"gpu:{device.index}"
    if device.type in ("cpu", "mps"):
        return device.type
    raise InputError(None, f"device {str(device)!r}: TotalSegmentator runs on cpu, cuda[:N] or mps only")


def segment_ct(ct_path: str | os.PathLike, out_path: str | os.PathLike, fast: bool = True,
               device=None) -> Path:
    """Run TotalSegmentator on a CT file/DICOM folder; write a multi-label NIfTI; return its path.

    ``device``: a torch device or its name ("cpu", "cuda", "cuda:1"; default: the GPU where
    there is one)."""
    ct_path, out_path = Path(ct_path), Path(out_path)
    if not ct_path.exists():
        raise InputError(ct_path, "no such file or folder")
    device = totalsegmentator_device(device)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from totalsegmentator.python_api import totalsegmentator

        totalsegmentator(str(ct_path), str(out_path), ml=True, fast=fast, device=device, task="total", quiet=True)
    except ModuleNotFoundError as e:  # the package is there with --no-deps, its nnU-Net is not
        raise ModelError(
            f"TotalSegmentator inference is not installed ({e.name} missing): {INSTALL_HINT}, "
            "or pass an existing segmentation with --seg"
        ) from None
    except Exception as e:  # network for the weights, CUDA, corrupt input
        raise ModelError(f"{ct_path}: TotalSegmentator failed: {type(e).__name__}: {e}") from None
    return out_path
