"""Zero-shot scores per organ: "any lesion" and every catalogue finding that applies.

For an organ embedding e and a prompt ensemble (``prompts.py``):

    abnormal = mean_i e . t_abnormal_i        normal = mean_j e . t_normal_j
    similarity = abnormal - normal
    score = softmax(s * [abnormal, normal])[0] = 1 / (1 + exp(-s * similarity))

with s = exp(logit_scale) (the model config stores the log, CLIP style; s is capped at
100). The softmax over the pair follows CT-CLIP; a logit bias cancels in it. A row is
flagged when score >= threshold; the threshold is the model's calibration for the finding
(``{finding: t}`` or ``{finding: {organ: t, "*": t}}``, chosen on validation data), its
``"*"`` entry for findings it holds no threshold for, and ``DEFAULT_THRESHOLD`` = 0.5 (abnormal
and normal prompts equally similar) without calibration.

All distinct prompts of a call go through ``encode_text`` once, in one list, so a cache can
wrap that function.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone

import numpy as np

from ..vocabulary import catalogue
from ..config import CLIP_LOGIT_SCALE
from ..errors import InputError, ModelError
from ..vocabulary.findings import Finding, find, load_findings
from ..vocabulary.prompts import PromptPair, finding_prompts, lesion_prompts
from .text_embeddings import TextEncoder, encode_texts
from ..results import ANY_LESION, ScoreRow

DEFAULT_THRESHOLD = 0.5
DEFAULT_LOGIT_SCALE = CLIP_LOGIT_SCALE  # the model config's default
MAX_SCALE = 100.0


def organ_matrix(embeddings: Mapping[str, np.ndarray], organs=None) -> tuple[list[catalogue.Organ], np.ndarray]:
    """Check organ embeddings and stack the chosen ones: (organs in label order, (N, D) unit rows).

    ``organs`` (names or groups, see ``catalogue.resolve``) narrows the selection to those
    present in ``embeddings``; None takes every organ in it.
    """
    if not embeddings:
        raise InputError(None, "no organ embeddings to score (no known organ in the segmentation?)")
    vectors: dict[str, np.ndarray] = {}
    for key, value in embeddings.items():
        o = catalogue.organ(key)
        if o.name in vectors:
            raise InputError(None, f"organ {o.name!r} has two embeddings (keys {key!r} and {o.name!r})")
        v = np.asarray(value, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(v)) if v.size else 0.0
        if not np.all(np.isfinite(v)) or norm == 0.0:
            raise InputError(None, f"embedding of {o.name!r} is empty, zero or not finite")
        vectors[o.name] = v / norm
    dims = {v.shape[0] for v in vectors.values()}
    if len(dims) > 1:
        raise InputError(None, f"organ embeddings have different lengths {sorted(dims)}")
    present = sorted((catalogue.organ(n) for n in vectors), key=lambda o: o.label_id)
    if organs is not None:
        asked = {o.name for o in catalogue.resolve(organs)}
        present = [o for o in present if o.name in asked]
        if not present:
            raise InputError(None, f"none of the requested organs ({organs}) has an embedding")
    return present, np.stack([vectors[o.name] for o in present])


def check_same_width(text_vectors: np.ndarray, organ_matrix: np.ndarray) -> None:
    """Raise ModelError unless text and organ embeddings have the same length (same model)."""
    if text_vectors.shape[1] != organ_matrix.shape[1]:
        raise ModelError(f"text embeddings have {text_vectors.shape[1]} dimensions, organ embeddings "
                         f"{organ_matrix.shape[1]}: they come from different models")


def threshold_for(calibration: Mapping | None, finding: str, organ: str) -> float:
    """Threshold of (finding, organ): the calibration's value for the finding (per organ, else its
    "*"), else the calibration's "*" (findings it was not calibrated on), else
    ``DEFAULT_THRESHOLD``."""
    calibration = calibration or {}
    value = calibration.get(finding, calibration.get("*"))
    if isinstance(value, Mapping):
        value = value.get(organ, value.get("*"))
    if value is None:
        return DEFAULT_THRESHOLD
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ModelError(f"calibration threshold of {finding!r} for {organ!r} is not a number in [0, 1]")
    return value


def wanted_findings(findings, table=None) -> list[Finding] | None:
    """The catalogue findings a caller asks for (names, synonyms or ``Finding`` objects);
    None for "all that apply". "any lesion" is always scored, so naming it adds nothing.
    InputError for an unknown name."""
    if findings is None:
        return None
    if isinstance(findings, (str, Finding)):
        findings = [findings]
    table = tuple(table) if table is not None else load_findings()
    chosen: dict[str, Finding] = {}
    for item in findings:
        if isinstance(item, Finding):
            chosen[item.finding] = item
        elif catalogue.normalise_name(item) != catalogue.normalise_name(ANY_LESION):
            f = find(item, table)
            chosen[f.finding] = f
    return list(chosen.values())


def score_case(embeddings: Mapping[str, np.ndarray], encode_text: TextEncoder, organs=None, findings=None,
               calibration: Mapping | None = None, logit_scale: float = DEFAULT_LOGIT_SCALE,
               case_id: str = "case", model_id: str = "", model_checksum: str = "",
               catalogue_findings=None, style: str = "organ") -> list[ScoreRow]:
    """Score rows for one case: per organ the ANY_LESION row, then one row per applicable finding.

    ``findings``: None for every catalogue finding that applies to the organ, or names /
    synonyms / ``Finding`` objects to restrict to (ANY_LESION rows are always made).
    ``catalogue_findings``: the finding table (default ``load_findings()``).
    ``logit_scale``: log of the softmax scale, as ``ModelConfig.logit_scale`` stores it.
    ``style``: "organ" (organ-specific prompts, the default) or "plain" (``prompts``).
    """
    scale = float(logit_scale)
    if not math.isfinite(scale):
        raise ModelError(f"logit scale {logit_scale!r} is not a finite number")
    scale = min(math.exp(scale), MAX_SCALE)
    table = tuple(catalogue_findings) if catalogue_findings is not None else load_findings()
    wanted = wanted_findings(findings, table)
    chosen, matrix = organ_matrix(embeddings, organs)

    tasks: list[tuple[int, str, PromptPair]] = []
    for i, o in enumerate(chosen):
        tasks.append((i, ANY_LESION, lesion_prompts(o, style)))
        tasks += [(i, f.finding, finding_prompts(o, f, style)) for f in (table if wanted is None else wanted)
                  if o.name in f.organs]
    texts = list(dict.fromkeys(t for _, _, p in tasks for t in p.abnormal + p.normal))
    vectors = encode_texts(encode_text, texts)
    check_same_width(vectors, matrix)
    sims = matrix @ vectors.T                      # (organs, distinct prompts)
    column = {t: j for j, t in enumerate(texts)}

    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = []
    for i, finding, pair in tasks:
        o = chosen[i]
        abnormal = float(np.mean(sims[i, [column[t] for t in pair.abnormal]]))
        normal = float(np.mean(sims[i, [column[t] for t in pair.normal]]))
        similarity = abnormal - normal
        score = 1.0 / (1.0 + math.exp(-scale * similarity))
        threshold = threshold_for(calibration, finding, o.name)
        rows.append(ScoreRow(
            case_id=case_id, organ=o.name, label_id=o.label_id, snomed_code=o.snomed_code,
            finding=finding, score=score, similarity=similarity, threshold=threshold,
            flagged=score >= threshold, model_id=model_id, model_checksum=model_checksum,
            created_at=created_at,
        ))
    return rows
