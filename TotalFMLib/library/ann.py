"""The approximate index of one organ group of one model, for groups too large to scan.

Each row is stored as ``[embedding / spread, -mean / spread]`` so that its inner product with
``[query, 1]`` is the baseline-corrected score of text search (``query.py``): the ranking is a
maximum-inner-product search, done by HNSW graphs (usearch; ``pip install
"TotalFMLib[library]"``), one per band of row norms (``GroupIndex``). The graphs return candidate rows (at least 4 x k per band), which are
re-scored exactly; recall@10 against exact search is measured by
``Testing/benchmarks/library_bench.py``. The graph is saved under ``LIB/ann/`` and rebuilt
when the group's rows change.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

EXACT_LIMIT = 20_000        # rows per group searched exactly (a scan; ~10 ms at 768 dimensions here)
MIN_CANDIDATES = 2_048  # candidates re-scored exactly per query, shared by the bands (64 each with 32)
BANDS, MIN_BAND_ROWS = 32, 10_000  # graphs per group (by row norm), and the fewest rows of one
DTYPE = "i8"                      # graph vectors quantised to 8 bits (candidates are re-scored in float32)
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 256


def augmented(matrix: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Rows whose inner product with [q, 1] is (row . q - mean) / sd."""
    return np.hstack([matrix / sd[:, None], (-mean / sd)[:, None]]).astype(np.float32)


class GroupIndex:
    """HNSW graphs (cosine, 8-bit vectors) over the rows of one group, one per band of row
    norms (``BANDS`` bands of equal count). A row's norm is about 1 / spread, so within a band
    the inner product with [q, 1] ranks nearly as the cosine does, which a graph answers well.
    Measured on rows shaped like the demo model's (top 10, recall against exact search): at
    20,000 x 64, one inner-product graph 0.70, one cosine graph 0.81, eight inner-product
    bands 0.89, eight cosine bands 0.96; at 10^6 x 768, eight float32 bands 0.73 (23 ms),
    32 bands of 8-bit vectors 0.997 (33 ms; 256 candidates per step, 64 per band). Each band
    returns its best candidates (``MIN_CANDIDATES`` shared among the bands, so fewer, larger
    bands return more each); the caller re-scores them exactly in float32."""

    def __init__(self, bands):
        self.bands = bands  # [(usearch Index, positions of its rows in the group)]

    @classmethod
    def build(cls, vectors: np.ndarray, threads: int = 0) -> "GroupIndex":
        try:
            from usearch.index import Index
        except ImportError:
            from ..errors import InputError

            raise InputError(None, 'a library this large needs usearch for its approximate index: '
                                   'pip install "TotalFMLib[library]"') from None
        norms = np.linalg.norm(vectors, axis=1)
        count = max(1, min(BANDS, len(vectors) // MIN_BAND_ROWS))
        edges = np.quantile(norms, np.linspace(0, 1, count + 1)[1:-1])
        band_of = np.searchsorted(edges, norms)
        bands = []
        for b in range(count):
            positions = np.flatnonzero(band_of == b)
            if positions.size == 0:  # equal norms put every row of a small group in one band
                continue
            index = Index(ndim=vectors.shape[1], metric="cos", dtype=DTYPE, connectivity=CONNECTIVITY,
                          expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
            index.add(positions.astype(np.uint64), vectors[positions], threads=threads)
            bands.append((index, positions))
        return cls(bands)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        """Positions of candidate rows for ``query`` (no bias term): the best ``max(4k,
        MIN_CANDIDATES / bands)`` of every band."""
        q = np.append(np.asarray(query, dtype=np.float32), np.float32(1.0))
        want = max(4 * k, MIN_CANDIDATES // max(1, len(self.bands)))
        found = [np.asarray(index.search(q, min(want, len(positions))).keys, dtype=np.int64)
                 for index, positions in self.bands]
        return np.unique(np.concatenate(found))

    def save(self, stem: Path) -> None:
        for b, (index, _) in enumerate(self.bands):
            index.save(str(stem.with_name(f"{stem.name}-band{b}.usearch")))

    @classmethod
    def load(cls, stem: Path, ndim: int) -> "GroupIndex | None":
        from usearch.index import Index

        files = sorted(stem.parent.glob(f"{stem.name}-band*.usearch"), key=lambda p: int(p.stem.rsplit("band", 1)[1]))
        bands = []
        for f in files:
            index = Index(ndim=ndim, metric="cos", dtype=DTYPE, expansion_search=EXPANSION_SEARCH)
            index.load(str(f))
            bands.append((index, np.asarray(index.keys, dtype=np.int64)))
        return cls(bands) if bands else None


def group_index(library, model_checksum: str, organ: str, matrix, mean, sd, rows) -> GroupIndex:
    """The saved graphs of the group ``rows`` (positions in ``matrix``) if its rows are
    unchanged, else new ones (saved). Only a sample of rows is read to recognise the group."""
    sample = rows[:: max(1, len(rows) // 64)]
    digest = hashlib.sha256(np.ascontiguousarray(matrix[sample]).tobytes() + mean[sample].tobytes()
                            + sd[sample].tobytes()).hexdigest()[:12]
    folder = Path(library.folder) / "ann" / model_checksum[:16]
    stem = folder / f"{organ}-{len(rows)}-{digest}"
    saved = GroupIndex.load(stem, matrix.shape[1] + 1) if folder.is_dir() else None
    if saved is not None:
        return saved
    built = GroupIndex.build(augmented(np.asarray(matrix[rows]), mean[rows], sd[rows]))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{organ}-*.usearch"):
        old.unlink(missing_ok=True)
    built.save(stem)
    return built
