"""Stage 3: the models that turn organ crops and sentences into embeddings -- the image and
text towers, the whole TotalFM model, checkpoint I/O (the released key layout mapped in one
place), the download of the released weights, precision modes, and the per-case embedding
cache.

``from TotalFMLib.models import build_image_tower`` is the public way to build the image
encoder from a checkpoint's ``arch``; torch is imported only when a name is used.
"""
from __future__ import annotations

_LAZY = {"build_image_tower": "image_tower", "build_text_tower": "text_tower", "TotalFMModel": "totalfm_model"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
