"""Calibration on normal anatomy: how many organs of each unmodified base CT (the real patients
as they are, nothing inserted) a model flags, for "any lesion" and for each finding. A model
that flags normal organs is not calibrated, whatever its AUROC.
"""
from __future__ import annotations

from ..results import ANY_LESION
from .benchmark_bases import BASES, load_base


def normal_flags(model, bases=BASES, cache=None) -> list[dict]:
    """Per base CT: {"base", "patient", "organs", "any_lesion": [flagged organs],
    "findings": {finding: [flagged organs]}} from the pipeline on the unmodified volumes."""
    from ..pipeline import analyze

    out = []
    for base in bases:
        ct, seg = load_base(base, cache)
        rows = analyze(model, ct, seg, case_id=base.name).rows
        flagged = [r for r in rows if r.flagged]
        findings: dict[str, list[str]] = {}
        for r in flagged:
            if r.finding != ANY_LESION:
                findings.setdefault(r.finding, []).append(r.organ)
        out.append({"base": base.name, "patient": base.patient, "organs": len({r.organ for r in rows}),
                    "rows": len(rows), "flagged_rows": len(flagged),
                    "any_lesion": [r.organ for r in flagged if r.finding == ANY_LESION], "findings": findings})
    return out
