"""Findings the base CTs show before anything is inserted, and the (organ, finding) pairs that
are therefore not scored.

The benchmark calls every organ without an insertion normal. That fails where the real
patient already has the finding: patient A's kidneys hold calcified foci up to 1288 HU
(405 mm3 above 600 HU in the left kidney, 81 mm3 in the right: as much as one inserted
stone), and the aortas of patients B and C hold 725 and 959 mm3 of wall calcium
(atherosclerosis). Their "normal" crops show what the positives show, so a model is taught,
and tested, that a stone is normal in A's kidneys. Such a pair has no true negative on its
patient: it is left out of every score (n/a), never counted as normal.

Measured only for the findings the benchmark inserts as dense foci (stones, gallstones and
calcified plaques, 400-1200 HU): an organ shows one natively when it holds at least
``MIN_MM3`` of voxels denser than ``DENSE_HU`` and ``ABOVE_ORGAN_HU`` above its own median
(an enhanced lumen reaches 540 HU in patient C). Focal soft-tissue lesions, steatosis and
organ size have no such simple test; they are not checked.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..vocabulary import catalogue
from .lesions import INSERTIONS, insertable

DENSE_HU = 600.0
ABOVE_ORGAN_HU = 250.0
MIN_MM3 = 50.0                          # a 4.6 mm ball; the inserted stones are 6-14 mm
DENSE_KINDS = ("stones", "calcification")


def dense_mm3(ct: np.ndarray, labels: np.ndarray, spacing, label_id: int) -> float:
    """mm3 of the structure ``label_id`` denser than ``DENSE_HU`` and ``ABOVE_ORGAN_HU`` above
    its median (0 when it is absent)."""
    inside = labels == label_id
    if not inside.any():
        return 0.0
    values = ct[inside]
    limit = max(DENSE_HU, float(np.median(values)) + ABOVE_ORGAN_HU)
    return float((values > limit).sum()) * float(np.prod(spacing))


def native_findings(ct: np.ndarray, labels: np.ndarray, spacing) -> dict[tuple[str, str], float]:
    """{(organ, finding): dense mm3} for the dense-focus findings this CT already shows."""
    out = {}
    for finding, (kind, organs) in INSERTIONS.items():
        if kind not in DENSE_KINDS:
            continue
        for organ in organs:
            mm3 = dense_mm3(ct, labels, spacing, catalogue.organ(organ).label_id)
            if mm3 >= MIN_MM3:
                out[(organ, finding)] = mm3
    return out


def benchmark_native(root, entries) -> dict[str, frozenset[tuple[str, str]]]:
    """{base name: (organ, finding) pairs it shows natively} for the base CTs that manifest
    ``entries`` of the benchmark in ``root`` were made from, measured on their cached copies
    (``root/bases``; loaded from the sample data where the cache lacks one). Cases of no known
    base (a test's hand-made cache) get none."""
    return _measured(str(root), frozenset(e.get("base") for e in entries))


@functools.lru_cache(maxsize=8)
def _measured(root: str, names: frozenset) -> dict[str, frozenset[tuple[str, str]]]:
    from .benchmark_bases import KNOWN_BASES, load_base

    out = {}
    for base in [b for b in KNOWN_BASES if b.name in names]:
        ct, seg = load_base(base, Path(root) / "bases")
        out[base.name] = frozenset(native_findings(ct.array, seg.array, ct.spacing))
    return out


def scored(finding: str, organ: str, native: frozenset) -> bool:
    """Whether (organ, finding) of a case is scored: the organ can carry the finding and the
    case's patient does not show it natively (``native``: the pairs ``benchmark_native`` gives
    the case's base)."""
    return insertable(finding, organ) and (organ, finding) not in native
