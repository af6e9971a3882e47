"""Does search follow the query? Two checks on a benchmark's cases.

- Finding queries: for every organ of an evaluated case that carries exactly one inserted
  finding, every held-out phrasing of that finding (``phrase_bank``, "test" bank: no training
  case used it) is searched over the case's organs (``zeroshot.search``); the rank of the
  organ that carries the finding is recorded. The summary is the share ranked first.
- Meaningless queries: ``NONSENSE`` (not the reference sentences search measures baselines
  with) over every evaluated case; no organ may match.

``match_score`` sets a model's match threshold on calibration cases from another list of
meaningless queries (``CALIBRATION_NONSENSE``), so the test list stays unseen.
"""
from __future__ import annotations

import numpy as np

from . import phrase_bank
from .evaluate import CaseEmbeddings

NONSENSE = ("asdf qwerty", "purple elephant dancing", "invoice due next friday", "the football match ended 2-1",
            "please restart your router", "banana bread recipe", "xyzzy", "tax return deadline")
CALIBRATION_NONSENSE = ("jkl mnop", "a red bicycle in the rain", "meeting moved to tuesday", "weather forecast",
                        "password reset link", "chocolate cake", "fnord", "train timetable")


def match_score(cases: list[CaseEmbeddings], search, split: str = "val", floor: float | None = None) -> float:
    """The lowest match threshold (a search score, ``zeroshot.search``) at which no query of
    ``CALIBRATION_NONSENSE`` matches an organ of the ``split`` cases, and at least ``floor``
    (default ``search.MATCH_SCORE``)."""
    from ..zeroshot.search import MATCH_SCORE

    highest = MATCH_SCORE if floor is None else floor
    for case in cases:
        if case.split != split:
            continue
        embeddings = dict(zip(case.organs, case.vectors))
        for query in CALIBRATION_NONSENSE:
            top = search(embeddings, query, threshold=float("inf"))[0]
            highest = max(highest, float(np.nextafter(top.score, np.inf)))
    return float(highest)


def finding_query_ranks(cases: list[CaseEmbeddings], search, split: str = "test") -> list[dict]:
    """One row per (case, organ, phrasing): {"case", "organ", "finding", "query", "rank", "matched"}
    for each organ that carries exactly one finding, unless the case's patient shows that finding
    natively (``native_findings``: its organ is a right answer too). ``search(embeddings, query)``
    is the model's search (``TotalFM.search``)."""
    rows = []
    for case in cases:
        if case.split != split:
            continue
        embeddings = dict(zip(case.organs, case.vectors))
        for organ, labels in zip(case.organs, case.labels):
            if len(labels) != 1 or any(f == labels[0] for _, f in case.native):
                continue  # several findings, or another organ shows it natively: more than one right answer
            for query in phrase_bank.abnormal_phrasings(labels[0], organ, "test", 20.0):
                hit = next(h for h in search(embeddings, query) if h.organ == organ)
                rows.append({"case": case.case_id, "organ": organ, "finding": labels[0], "query": query,
                             "rank": hit.rank, "matched": hit.matched})
    return rows


def nonsense_matches(cases: list[CaseEmbeddings], search, split: str = "test") -> list[dict]:
    """Every (case, query, organ) where a meaningless query matched an organ (should be none)."""
    out = []
    for case in cases:
        if case.split != split:
            continue
        embeddings = dict(zip(case.organs, case.vectors))
        for query in NONSENSE:
            out += [{"case": case.case_id, "query": query, "organ": h.organ} for h in search(embeddings, query)
                    if h.matched]
    return out


def summary(rows: list[dict], nonsense: list[dict], cases: int) -> dict:
    """Share of finding queries whose organ ranked first (and was matched), per finding and overall."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["finding"], []).append(r)
    per = {f: {"queries": len(v), "top1": float(np.mean([r["rank"] == 1 for r in v])),
               "matched": float(np.mean([r["matched"] for r in v]))} for f, v in sorted(by.items())}
    return {"queries": len(rows), "top1": float(np.mean([r["rank"] == 1 for r in rows])) if rows else float("nan"),
            "per_finding": per, "nonsense_queries": len(NONSENSE) * cases, "nonsense_matches": len(nonsense)}


def measure(cases: list[CaseEmbeddings], search, calibrate_on: str = "val", test_on: str = "test") -> dict:
    """The query benchmark on the ``test_on`` cases with the match score chosen on the
    ``calibrate_on`` cases (``match_score``): ``summary`` plus {"match_score"}.
    ``search(embeddings, query, threshold=None)`` is the model's search."""
    cut = match_score(cases, search, calibrate_on)
    at_cut = lambda embeddings, query: search(embeddings, query, threshold=cut)  # noqa: E731
    tested = sum(1 for c in cases if c.split == test_on)
    return {**summary(finding_query_ranks(cases, at_cut, test_on), nonsense_matches(cases, at_cut, test_on), tested),
            "match_score": cut}
