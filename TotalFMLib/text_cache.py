"""Text embeddings cached per model: every distinct string is encoded once.

Prompt ensembles of the finding catalogue are the same for every case, so after the
first case they come from memory, and across sessions from a small ``.npz`` file
keyed by the model checksum (in ``<model cache>/text_embeddings``). A search query
encodes only its own string(s); search keeps its own cache in memory only (``path=None``),
bounded by ``max_texts`` (the oldest texts are dropped first).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_path


class TextEmbeddingCache:
    def __init__(self, encode: Callable[[list[str]], np.ndarray], path: Path | None = None,
                 max_texts: int | None = None):
        self._encode = encode
        self._path = path
        self._max_texts = max_texts
        self._vectors: dict[str, np.ndarray] = {}
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    self._vectors = dict(zip(data["texts"].tolist(), data["vectors"]))
            except (OSError, ValueError, KeyError):
                self._vectors = {}  # a damaged cache is rebuilt, never fatal

    def __len__(self) -> int:
        return len(self._vectors)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32 unit vectors, in the order of ``texts``."""
        new = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if new:
            self._vectors.update(zip(new, np.asarray(self._encode(new), dtype=np.float32)))
        out = np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)
        if new:
            while self._max_texts is not None and len(self._vectors) > self._max_texts:
                del self._vectors[next(iter(self._vectors))]  # the oldest first
            self._save()
        return out

    def _save(self) -> None:
        if self._path is None:
            return
        texts = list(self._vectors)
        try:
            with atomic_path(self._path, suffix=".npz") as tmp:
                np.savez(tmp, texts=np.array(texts), vectors=np.stack([self._vectors[t] for t in texts]))
        except OSError:
            pass  # a read-only cache folder only costs speed
