"""Free-text finding search: rank the organs of one case by how much more a query fits each
organ than sentences that say nothing about it.

Every organ gets similarity = organ embedding . query embedding. With style "organ" the
query is phrased per organ ("Left kidney: kidney stone", see ``prompts.query_text``), so
each organ is compared with its own text (all texts encoded in one batch); with "plain"
every organ is compared with the query as typed.

Raw similarities favour some organs for any query (a "hub" organ tops every query, and a
query that means nothing still scores somewhere), so each organ's similarity is measured
against its own baseline: its similarities to ``prompts.REFERENCE_QUERIES`` (neutral,
normal and meaningless sentences, phrased the same way), as

    score = (similarity - mean of the baseline) / (standard deviation of the baseline)

and organs are ranked by score. An organ matches when

    rank <= top_k (default 3)  AND  score >= threshold (default MATCH_SCORE)

so a query must fit the organ clearly better than sentences that carry no finding (a model
may carry its own threshold, ``ModelConfig.match_score``, chosen on its calibration cases so
that meaningless queries match nothing: ``training/query_benchmark.match_score``). The
baseline texts are the same for every query, so they are encoded once per model (through
the same cached text encoder as scoring prompts).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..results import SearchHit
from ..vocabulary.findings import load_findings
from ..vocabulary.prompts import QUERY_STYLES, REFERENCE_QUERIES, query_text
from .scoring import check_same_width, organ_matrix
from .text_embeddings import TextEncoder, encode_texts

DEFAULT_TOP_K = 3
MATCH_SCORE = 2.0   # standard deviations above the organ's baseline (chosen on the query benchmark)
_MIN_SPREAD = 0.01  # a baseline that barely varies still divides by this much


def baseline(matrix: np.ndarray, organs, encode_reference: TextEncoder, style: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, spread) per organ of its similarities to the reference sentences in ``style``."""
    texts = [query_text(o, ref, style) for o in organs for ref in REFERENCE_QUERIES]
    vectors = encode_texts(encode_reference, texts).reshape(len(organs), len(REFERENCE_QUERIES), -1)
    check_same_width(vectors.reshape(-1, vectors.shape[-1]), matrix)
    sims = np.einsum("nd,nrd->nr", matrix, vectors)
    return sims.mean(1), np.maximum(sims.std(1), _MIN_SPREAD)


def search(embeddings: Mapping[str, np.ndarray], query: str, encode_text: TextEncoder, style: str = "organ",
           top_k: int | None = None, threshold: float | None = None, organs=None,
           encode_reference: TextEncoder | None = None) -> list[SearchHit]:
    """One ``SearchHit`` per organ, best first (rank 1), with the match rule applied.

    ``encode_text`` encodes the query texts; ``encode_reference`` the baseline sentences
    (default: ``encode_text``; the facade passes its cached prompt encoder)."""
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
    mean, spread = baseline(matrix, chosen, encode_reference or encode_text, style)
    score = (similarity - mean) / spread

    cut = MATCH_SCORE if threshold is None else float(threshold)
    order = sorted(range(len(chosen)), key=lambda i: (-score[i], chosen[i].label_id))
    return [SearchHit(organ=chosen[i].name, label_id=chosen[i].label_id, similarity=float(similarity[i]),
                      rank=rank, matched=bool(rank <= top_k and score[i] >= cut), score=float(score[i]))
            for rank, i in enumerate(order, start=1)]


def preset_queries(findings=None) -> list[str]:
    """Quick-search texts: the canonical names of the finding catalogue, in its order."""
    return [f.finding for f in (findings if findings is not None else load_findings())]
