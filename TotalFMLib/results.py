"""Result rows that leave the library: scores per organ and finding, search hits.

These are the shapes the CSV/JSON export, the PNG overlay and the Slicer module read.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

# The CSV/JSON columns, in order (documented in the README; never reorder, only append).
SCORE_COLUMNS = (
    "case_id", "organ", "label_id", "snomed_code", "finding", "score", "similarity",
    "threshold", "flagged", "model_id", "model_checksum", "created_at",
)

ANY_LESION = "any lesion"  # the finding name of the per-organ lesion score


@dataclass
class ScoreRow:
    case_id: str
    organ: str            # TotalSegmentator structure name
    label_id: int
    snomed_code: str
    finding: str          # ANY_LESION or a finding catalogue name
    score: float          # probability-like, in [0, 1]
    similarity: float     # raw cosine similarity abnormal - normal (ensemble mean)
    threshold: float      # score >= threshold -> flagged
    flagged: bool
    model_id: str
    model_checksum: str
    created_at: str       # ISO 8601, UTC

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchHit:
    organ: str
    label_id: int
    similarity: float     # cosine similarity of organ embedding and query embedding
    rank: int             # 1 = best (by score)
    matched: bool         # chosen by the documented match rule
    score: float = 0.0    # similarity above the organ's own baseline, in its standard deviations
