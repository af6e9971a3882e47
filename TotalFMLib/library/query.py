"""Searching the library: (study, organ) pairs ranked for a typed finding, or for likeness to
one organ.

Text: every organ row is scored as single-case search scores it (``zeroshot.search``): the
query phrased for its organ (the model's query style), similarity minus the row's own
baseline over the baseline's spread, the baseline stored at indexing. Rows of other models
are never read: a query runs on the rows of the model that encodes it (its checksum). Within
an organ the score is an inner product of [embedding / spread, -mean / spread] with
[query, 1], so groups over ``ann.EXACT_LIMIT`` rows are searched through an HNSW index of
those vectors (``ann.py``) and the rest exactly.

Likeness (``--like STUDY:ORGAN``): cosine similarity to that organ's embedding among the
same organ of the other studies (same model).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError
from .store import Library

HIT_COLUMNS = ("rank", "study", "organ", "score", "similarity", "matched", "study_uid", "series_uid", "model_id",
               "any_lesion", "center_mm", "path", "seg_path")


@dataclass
class LibraryHit:
    rank: int
    study: str
    organ: str
    score: float          # text: standard deviations above the row's baseline; like: cosine similarity
    similarity: float
    matched: bool
    study_uid: str
    series_uid: str
    model_id: str
    any_lesion: float | None
    center_mm: list | None
    path: str = ""        # the study's CT file or DICOM folder, to open it
    seg_path: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _check_model(library: Library, model, ids) -> None:
    if not ids:
        held = ", ".join(f"{m} ({c[:12]}..., {n} organs)" for m, c, n in library.models()) or "nothing yet"
        raise InputError(library.folder, f"holds no organ embeddings of model {model.model_id} "
                                         f"(checksum {model.checksum[:12]}...) for this selection; it holds {held}")


def _hits(library: Library, ids, sources, names, score, similarity, order, cut) -> list[LibraryHit]:
    details = library.organ_details([ids[i] for i in order])
    out = []
    for rank, i in enumerate(order, start=1):
        d = details[ids[i]]
        lesion = d["scores"].get("any lesion")
        out.append(LibraryHit(rank, sources[i], names[i], float(score[i]), float(similarity[i]),
                              bool(cut is None or score[i] >= cut), d["study_uid"], d["series_uid"], d["model_id"],
                              None if lesion is None else float(lesion[0]), d["bbox"].get("center_mm"),
                              d["path"], d["seg_path"]))
    return out


def _top(score: np.ndarray, k: int) -> list[int]:
    k = min(k, score.size)
    part = np.argpartition(-score, k - 1)[:k] if k < score.size else np.arange(score.size)
    return sorted(part.tolist(), key=lambda i: -score[i])


def find_text(library: Library, model, query: str, organs=None, top_k: int = 10,
              threshold: float | None = None) -> list[LibraryHit]:
    """The ``top_k`` (study, organ) rows for a typed finding, best first."""
    from ..vocabulary import catalogue
    from ..vocabulary.prompts import query_text
    from ..zeroshot.search import MATCH_SCORE
    from . import ann

    query = (query or "").strip()
    if not query:
        raise InputError(None, "empty search query")
    names_wanted = [o.name for o in catalogue.resolve(organs)] if organs else None
    ids, sources, names, matrix, mean, sd = library.vectors(model.checksum, names_wanted)
    _check_model(library, model, ids)
    style = model.config.query_style
    present = sorted(set(names), key=lambda n: catalogue.organ(n).label_id)
    texts = [query_text(catalogue.organ(n), query, style) for n in present]
    queries = dict(zip(present, np.asarray(model.encode_queries(texts), dtype=np.float32)))
    names_arr = np.asarray(names)
    similarity = np.empty(len(ids), dtype=np.float64)
    candidates: list[int] = []
    for organ, q in queries.items():
        rows = np.flatnonzero(names_arr == organ)
        if rows.size > ann.EXACT_LIMIT:
            rows = rows[ann.group_index(library, model.checksum, organ, matrix, mean, sd, rows).search(q, top_k)]
        similarity[rows] = matrix[rows] @ q
        candidates.extend(rows.tolist())
    candidates_arr = np.asarray(candidates)
    score = np.full(len(ids), -np.inf)
    score[candidates_arr] = (similarity[candidates_arr] - mean[candidates_arr]) / sd[candidates_arr]
    cut = (model.config.match_score or MATCH_SCORE) if threshold is None else float(threshold)
    return _hits(library, ids, sources, names, score, similarity, _top(score, top_k), cut)


def parse_like(text: str) -> tuple[str, str]:
    """"STUDY:ORGAN" -> (study, structure name); the study may hold colons, the organ not."""
    from ..vocabulary import catalogue

    study, sep, organ = (text or "").rpartition(":")
    if not sep or not study or not organ:
        raise InputError(None, f"--like wants STUDY:ORGAN (a study as `totalfm find` lists it), not {text!r}")
    return study, catalogue.organ(organ.strip()).name


def find_like(library: Library, model_checksum: str, study: str, organ: str, top_k: int = 10) -> list[LibraryHit]:
    """The ``top_k`` organs of the same kind in other studies most like ``study``'s ``organ``."""
    target = library.embedding_of(study, organ, model_checksum)
    if target is None:
        raise InputError(library.folder, f"holds no {organ} of study {study!r} for this model; "
                                         f"`totalfm find` lists the studies")
    ids, sources, names, matrix, _, _ = library.vectors(model_checksum, [organ])
    similarity = matrix @ target
    score = np.where(np.asarray(sources) == study, -np.inf, similarity)
    order = [i for i in _top(score, top_k) if np.isfinite(score[i])]
    return _hits(library, ids, sources, names, score, similarity, order, None)
