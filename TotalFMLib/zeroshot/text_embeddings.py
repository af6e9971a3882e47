"""Text embeddings: the one door through which text is encoded (``encode_texts``), and the
per-model cache behind it, where every distinct string is encoded once.

Prompt ensembles of the finding catalogue are the same for every case, so after the
first case they come from memory, and across sessions from a small ``.npz`` file
keyed by the model checksum (in ``<model cache>/text_embeddings``). A search query
encodes only its own string(s); search keeps its own cache in memory only (``path=None``),
bounded by ``max_texts`` (the oldest texts are dropped first).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_path
from ..errors import ModelError

TextEncoder = Callable[[list[str]], "np.ndarray | Mapping[str, np.ndarray]"]


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


def encode_texts(encode_text: TextEncoder, texts: list[str]) -> np.ndarray:
    """Encode ``texts`` in one call; (N, D) float unit vectors in the order given.

    A text given more than once is encoded once (``encode_text`` sees each distinct text
    once, in first-seen order). ``encode_text`` may return an (N, D) array or a {text:
    vector} mapping (the facade's ``TotalFM.encode_text``). Rows are re-normalised so dot
    products are cosines.
    """
    texts = list(texts)
    distinct = list(dict.fromkeys(texts))
    out = encode_text(distinct)
    if isinstance(out, Mapping):
        try:
            out = [out[t] for t in distinct]
        except KeyError as e:
            raise ModelError(f"text encoder returned no vector for {e.args[0]!r}") from None
    vectors = np.asarray(out, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(distinct):
        raise ModelError(f"text encoder returned shape {vectors.shape} for {len(distinct)} texts")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
        raise ModelError("text encoder returned a zero or non-finite vector")
    vectors = vectors / norms
    if len(distinct) == len(texts):
        return vectors
    row = {t: i for i, t in enumerate(distinct)}
    return vectors[[row[t] for t in texts]]
