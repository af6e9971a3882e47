"""Per-case organ embeddings kept in memory, so search and re-scoring never re-encode images.

The key says what was encoded and how: the model (checksum, precision, crop size), the
case's inputs (``inputs.fingerprint``: content of Volumes, path, size and time of files) and
the requested organs. Entries are kept least-recently-used first out.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..inputs.case import Case
from ..inputs.fingerprint import pair_key


def case_key(ct, seg, organs: list[str], model: str) -> str:
    """Key of one encode request: the model description, the case's inputs (a ``Case``, or a
    CT and segmentation as paths or Volumes) and the organ list."""
    inputs = ct.key() if isinstance(ct, Case) else pair_key(ct, seg)
    return "|".join([model, inputs, ",".join(organs)])


class EmbeddingCache:
    """LRU map from ``case_key`` to ``{organ: embedding}``; returns copies."""

    def __init__(self, max_cases: int = 8):
        self.max_cases = int(max_cases)
        self._entries: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return {name: vector.copy() for name, vector in entry.items()}

    def put(self, key: str, embeddings: dict[str, np.ndarray]) -> None:
        if self.max_cases <= 0:
            return
        self._entries[key] = {name: np.array(vector, copy=True) for name, vector in embeddings.items()}
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_cases:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
