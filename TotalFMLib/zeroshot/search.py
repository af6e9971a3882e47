"""Free-text finding search: rank the organs of one case by similarity to a query.

Every organ gets similarity = organ embedding . query embedding. With style "organ" the
query is phrased per organ ("Left kidney: kidney stone", see ``prompts.query_text``), so
each organ is compared with its own text (all texts encoded in one batch); with "plain"
every organ is compared with the query as typed.

Match rule: an organ matches when

    rank <= top_k (default 3)  AND  similarity >= threshold

and the default threshold is relative to the case: mean + 1 standard deviation of the
similarities of the case's organs (population std), i.e. the organ stands out from the
others. A case with one organ matches it; with two, the better one. Pass ``threshold`` to
use an absolute cosine similarity instead.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..vocabulary.findings import load_findings
from ..vocabulary.prompts import QUERY_STYLES, query_text
from .text_embeddings import TextEncoder, encode_texts
from ..results import SearchHit
from .scoring import check_same_width, organ_matrix

DEFAULT_TOP_K = 3
DEFAULT_Z = 1.0  # default threshold = mean + DEFAULT_Z * std over the case's organs
_TOLERANCE = 1e-9


def default_threshold(similarities: np.ndarray) -> float:
    """mean + DEFAULT_Z * std of the case's organ similarities."""
    s = np.asarray(similarities, dtype=np.float64)
    return float(s.mean() + DEFAULT_Z * s.std())


def search(embeddings: Mapping[str, np.ndarray], query: str, encode_text: TextEncoder, style: str = "organ",
           top_k: int | None = None, threshold: float | None = None, organs=None) -> list[SearchHit]:
    """One ``SearchHit`` per organ, best first (rank 1), with the match rule applied."""
    query = (query or "").strip()
    if not query:
        raise InputError(None, "empty search query")
    if style not in QUERY_STYLES:
        raise InputError(None, f"unknown query style {style!r}; use one of {', '.join(QUERY_STYLES)}")
    top_k = DEFAULT_TOP_K if top_k is None else top_k
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(None, f"top_k must be a whole number >= 1, not {top_k!r}")
    chosen, matrix = organ_matrix(embeddings, organs)

    # "plain" gives every organ the same text, encoded once (encode_texts)
    vectors = encode_texts(encode_text, [query_text(o, query, style) for o in chosen])
    check_same_width(vectors, matrix)
    similarity = np.einsum("nd,nd->n", matrix, vectors)

    cut = default_threshold(similarity) if threshold is None else float(threshold)
    order = sorted(range(len(chosen)), key=lambda i: (-similarity[i], chosen[i].label_id))
    hits = []
    for rank, i in enumerate(order, start=1):
        s = float(similarity[i])
        hits.append(SearchHit(organ=chosen[i].name, label_id=chosen[i].label_id, similarity=s, rank=rank,
                              matched=bool(rank <= top_k and s >= cut - _TOLERANCE)))
    return hits


def preset_queries(findings=None) -> list[str]:
    """Quick-search texts: the canonical names of the finding catalogue, in its order."""
    return [f.finding for f in (findings if findings is not None else load_findings())]
