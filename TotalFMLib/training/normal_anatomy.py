"""Calibration on normal anatomy: the unmodified base CTs (the real patients as they are,
nothing inserted) must not be flagged.

- ``normal_rows``: the score rows of each unmodified base CT (the whole pipeline, as
  ``totalfm analyze`` runs it);
- ``above_normals``: a calibration raised, where needed, ``NORMAL_MARGIN`` above the highest
  score any normal organ of those CTs reached for that finding in that organ, so none of them
  is flagged (a reviewer must not see normal anatomy lit up, whatever the AUROC);
- ``above_normal_cts``: the two together, as the demo's calibration and each fold use them;
- ``flags``: what a calibration flags among such rows, for "any lesion" and each finding.

The final demo model is calibrated on every base CT, so its own figure is 0 by construction;
the honest figure is a fold's: thresholds from the other patients, flags on the held-out
patient's CT (``recipe.evaluate_fold``).
"""
from __future__ import annotations

import copy
import math

from ..results import ANY_LESION
from .benchmark_bases import BASES, load_base


def normal_rows(model, bases=BASES, cache=None) -> dict[str, list]:
    """{base name: the ``ScoreRow``s of the unmodified base CT}."""
    from ..pipeline import analyze

    out = {}
    for base in bases:
        ct, seg = load_base(base, cache)
        out[base.name] = analyze(model, ct, seg, case_id=base.name).rows
    return out


# How far above a normal organ's score its threshold goes. The same CT scored with another
# numpy, torch or transformers build, or on another CPU, moves a score by about 1e-6 (measured:
# up to 1.0e-6 on the example CT after a fresh install); a threshold right on the score (the
# next float, as before) then flags the normal organ. Scores are in [0, 1].
NORMAL_MARGIN = 1e-3


def above_normals(calibration: dict, rows, margin: float = NORMAL_MARGIN) -> tuple[dict, int]:
    """(``calibration`` with each (finding, organ) threshold raised to ``margin`` above the
    highest score of that pair among ``rows`` of normal anatomy, how many thresholds were
    raised). Thresholds already that far above stay as they are."""
    from ..zeroshot.scoring import threshold_for

    cal = copy.deepcopy(calibration)
    highest: dict[tuple[str, str], float] = {}
    for r in rows:
        highest[(r.finding, r.organ)] = max(highest.get((r.finding, r.organ), -math.inf), float(r.score))
    raised = 0
    for (finding, organ), score in sorted(highest.items()):
        target = min(1.0, max(score + margin, math.nextafter(score, math.inf)))
        if threshold_for(cal, finding, organ) >= target:
            continue
        entry = cal.get(finding, cal.get("*"))
        entry = dict(entry) if isinstance(entry, dict) else ({} if entry is None else {"*": float(entry)})
        entry[organ] = target
        cal[finding] = entry
        raised += 1
    return cal, raised


def above_normal_cts(model, calibration: dict, bases=BASES, cache=None, seen=None) -> tuple[dict, int, dict]:
    """Score the unmodified CTs of ``bases`` and raise ``calibration`` above those of ``seen``
    (names of bases; default all): (the raised calibration, how many thresholds were raised,
    {base name: its rows} for every base)."""
    rows = normal_rows(model, bases, cache)
    counted = [r for name, rs in rows.items() if seen is None or name in seen for r in rs]
    raised, count = above_normals(calibration, counted)
    return raised, count, rows


def flags(rows, calibration: dict | None = None) -> dict:
    """{"organs", "rows", "flagged_rows", "any_lesion": [organs], "findings": {finding: [organs]}}:
    the rows' own flags, or those ``calibration`` gives them."""
    from ..zeroshot.scoring import threshold_for

    if calibration is None:
        flagged = [r for r in rows if r.flagged]
    else:
        flagged = [r for r in rows if r.score >= threshold_for(calibration, r.finding, r.organ)]
    findings: dict[str, list[str]] = {}
    for r in flagged:
        if r.finding != ANY_LESION:
            findings.setdefault(r.finding, []).append(r.organ)
    return {"organs": len({r.organ for r in rows}), "rows": len(rows), "flagged_rows": len(flagged),
            "any_lesion": [r.organ for r in flagged if r.finding == ANY_LESION], "findings": findings}

