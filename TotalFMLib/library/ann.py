"""The approximate index of one organ group of one model, for groups too large to scan.

Each row is stored as ``[embedding / spread, -mean / spread]`` so that its inner product with
``[query, 1]`` is the baseline-corrected score of text search (``query.py``): the ranking is a
maximum-inner-product search, done by an HNSW graph (usearch; ``pip install
"TotalFMLib[library]"``). The graph returns ``CANDIDATES`` rows (at least 4 x k), which are
re-scored exactly; recall@10 against exact search is measured by
``Testing/benchmarks/library_bench.py``. The graph is saved under ``LIB/ann/`` and rebuilt
when the group's rows change.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

EXACT_LIMIT = 20_000        # rows per group searched exactly (a scan; ~10 ms at 768 dimensions here)
MIN_CANDIDATES = 64
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 128


def augmented(matrix: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Rows whose inner product with [q, 1] is (row . q - mean) / sd."""
    return np.hstack([matrix / sd[:, None], (-mean / sd)[:, None]]).astype(np.float32)


class GroupIndex:
    def __init__(self, index):
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, threads: int = 0) -> "GroupIndex":
        try:
            from usearch.index import Index
        except ImportError:
            from ..errors import InputError

            raise InputError(None, 'a library this large needs usearch for its approximate index: '
                                   'pip install "TotalFMLib[library]"') from None
        index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=CONNECTIVITY,
                      expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
        index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=threads)
        return cls(index)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        """Positions of the (about) best ``max(4k, MIN_CANDIDATES)`` rows for ``query`` (no bias term)."""
        q = np.append(np.asarray(query, dtype=np.float32), np.float32(1.0))
        found = self.index.search(q, max(4 * k, MIN_CANDIDATES))
        return np.asarray(found.keys, dtype=np.int64)


def group_index(library, model_checksum: str, organ: str, matrix, mean, sd) -> GroupIndex:
    """The saved graph of this group if its rows are unchanged, else a new one (saved)."""
    vectors = augmented(matrix, mean, sd)
    digest = hashlib.sha256(vectors[:: max(1, len(vectors) // 64)].tobytes()).hexdigest()[:12]
    path = Path(library.folder) / "ann" / model_checksum[:16] / f"{organ}-{len(vectors)}-{digest}.usearch"
    if path.is_file():
        from usearch.index import Index

        index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", expansion_search=EXPANSION_SEARCH)
        index.load(str(path))
        return GroupIndex(index)
    built = GroupIndex.build(vectors)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f"{organ}-*.usearch"):
        old.unlink(missing_ok=True)
    tmp = path.with_suffix(".tmp")
    built.index.save(str(tmp))
    tmp.replace(path)
    return built
