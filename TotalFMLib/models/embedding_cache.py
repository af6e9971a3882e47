"""Per-case organ embeddings kept in memory, so search and re-scoring never re-encode images.

The key says what was encoded and how: the model (checksum, precision, crop size) and
the case's content --

* a ``Volume``: SHA-256 of its array bytes plus dtype, shape, spacing, origin and direction
  (hardware SHA makes this ~0.2 s for a 512x512x336 CT, against seconds of encoding);
* a file or folder path: its resolved path, size and modification time (of every file in
  a DICOM folder), so an unchanged file is not even read again -- the same rule ``make``
  uses; a file rewritten in place with the same size within the same nanosecond is missed.

plus the requested organs. Entries are kept least-recently-used first out.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..inputs.volume import Volume


def _path_key(path) -> str:
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        parts = []
        for root, _, files in sorted(os.walk(p)):
            for name in sorted(files):
                st = os.stat(os.path.join(root, name))
                parts.append(f"{os.path.relpath(os.path.join(root, name), p)}:{st.st_size}:{st.st_mtime_ns}")
        return f"dir:{p}:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()
    try:
        st = p.stat()
    except OSError:
        return f"missing:{p}"  # loading will raise the proper InputError
    return f"file:{p}:{st.st_size}:{st.st_mtime_ns}"


def _volume_key(vol: Volume) -> str:
    a = np.ascontiguousarray(vol.array)
    h = hashlib.sha256()
    h.update(repr((str(a.dtype), a.shape, tuple(map(float, vol.spacing)), tuple(map(float, vol.origin)),
                   tuple(map(float, vol.direction)))).encode())
    h.update(memoryview(a).cast("B"))
    return "array:" + h.hexdigest()


def input_key(item) -> str:
    """Cache key of a CT or segmentation given as a Volume or a path."""
    if isinstance(item, Volume):
        return _volume_key(item)
    return _path_key(item)


def case_key(ct, seg, organs: list[str], model: str) -> str:
    """Key of one encode request: the model description, both inputs and the organ list."""
    return "|".join([model, input_key(ct), input_key(seg), ",".join(organs)])


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
