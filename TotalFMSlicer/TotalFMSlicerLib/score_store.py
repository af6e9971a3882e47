"""The one place results live in the scene, saved with it (.mrb and .seg.nrrd keep segment tags):
every ``ScoreRow`` in its organ segment's tags (``TotalFM.score.<finding key>``, the row
URL-encoded, plus an index tag ``TotalFM.scoreKeys``), and each organ's embedding
(``TotalFM.embedding``: float32, base64) with the model that made it in a node attribute
(``TotalFM.model``: source, model id, checksum), so search works again after the scene is
reopened, with the same model."""
from __future__ import annotations

import base64
import dataclasses
import json
import urllib.parse

import numpy as np

from TotalFMLib.errors import InputError
from TotalFMLib.outputs.export import parse_value
from TotalFMLib.results import ANY_LESION, ScoreRow
from TotalFMLib.vocabulary import catalogue

from .segments import organ_segments, segment_tag

TAG_SCORE_PREFIX = "TotalFM.score."
TAG_SCORE_KEYS = "TotalFM.scoreKeys"
TAG_EMBEDDING = "TotalFM.embedding"
ATTRIBUTE_MODEL = "TotalFM.model"


def finding_key(finding: str) -> str:
    """Tag-safe key of a finding name: "any lesion" -> "any_lesion"."""
    key = catalogue.normalise_name(finding)
    if not key:
        raise InputError(None, f"finding name {finding!r} has no letters or digits")
    return key


def _encode_row(row: ScoreRow) -> str:
    return urllib.parse.urlencode({k: str(v) for k, v in row.as_dict().items()})


def _decode_row(text: str) -> ScoreRow:
    values = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
    return ScoreRow(**{f.name: parse_value(f.name, values.get(f.name, "")) for f in dataclasses.fields(ScoreRow)})


def store_scores(segmentation_node, rows: list[ScoreRow]) -> int:
    """Write every row into its organ segment's tags, replacing scores stored before.
    Returns the number of segments that received scores."""
    segments = organ_segments(segmentation_node)
    seg = segmentation_node.GetSegmentation()
    by_organ: dict[str, list[ScoreRow]] = {}
    for row in rows:
        by_organ.setdefault(row.organ, []).append(row)
    was_modifying = segmentation_node.StartModify()
    for organ, sid in segments.items():
        segment = seg.GetSegment(sid)
        for old in (segment_tag(segment, TAG_SCORE_KEYS) or "").split(","):
            if old:
                segment.RemoveTag(TAG_SCORE_PREFIX + old)
        segment.RemoveTag(TAG_SCORE_KEYS)
        keys = []
        for row in by_organ.get(organ, []):
            key = finding_key(row.finding)
            segment.SetTag(TAG_SCORE_PREFIX + key, _encode_row(row))
            if key not in keys:
                keys.append(key)
        if keys:
            segment.SetTag(TAG_SCORE_KEYS, ",".join(keys))
    segmentation_node.EndModify(was_modifying)
    return sum(1 for organ in segments if organ in by_organ)


def read_scores(segmentation_node) -> dict[str, dict[str, ScoreRow]]:
    """{structure name: {finding: ScoreRow}} from the segment tags (survives scene save)."""
    seg = segmentation_node.GetSegmentation()
    out: dict[str, dict[str, ScoreRow]] = {}
    for organ, sid in organ_segments(segmentation_node).items():
        segment = seg.GetSegment(sid)
        for key in (segment_tag(segment, TAG_SCORE_KEYS) or "").split(","):
            text = segment_tag(segment, TAG_SCORE_PREFIX + key) if key else None
            if text:
                row = _decode_row(text)
                out.setdefault(organ, {})[row.finding] = row
    return out


def scored_rows(segmentation_node) -> list[ScoreRow]:
    """All stored score rows, organs in label order, findings in stored order."""
    scores = read_scores(segmentation_node)
    ordered = sorted(scores, key=lambda name: catalogue.organ(name).label_id)
    return [row for organ in ordered for row in scores[organ].values()]


def row_findings(rows: list[ScoreRow]) -> list[str]:
    """The distinct findings of ``rows`` in first-seen order, "any lesion" first."""
    findings: list[str] = []
    for row in rows:
        if row.finding not in findings:
            findings.append(row.finding)
    if ANY_LESION in findings:
        findings.remove(ANY_LESION)
        findings.insert(0, ANY_LESION)
    return findings


def store_embeddings(segmentation_node, embeddings: dict, source: str, model_id: str, checksum: str) -> int:
    """Each organ's embedding into its segment's tags (others cleared) and the model into the
    node's attribute. Returns the number of segments that received one."""
    seg = segmentation_node.GetSegmentation()
    stored = 0
    was_modifying = segmentation_node.StartModify()
    for organ, sid in organ_segments(segmentation_node).items():
        segment = seg.GetSegment(sid)
        vector = embeddings.get(organ)
        if vector is None:
            segment.RemoveTag(TAG_EMBEDDING)
            continue
        data = np.ascontiguousarray(np.asarray(vector, dtype="<f4").ravel()).tobytes()
        segment.SetTag(TAG_EMBEDDING, base64.b64encode(data).decode("ascii"))
        stored += 1
    segmentation_node.SetAttribute(ATTRIBUTE_MODEL, json.dumps(
        {"source": str(source), "model_id": model_id, "checksum": checksum}))
    segmentation_node.EndModify(was_modifying)
    return stored


def read_embeddings(segmentation_node) -> tuple[dict, dict | None]:
    """({structure name: float32 vector}, {"source", "model_id", "checksum"} or None)."""
    seg = segmentation_node.GetSegmentation()
    out = {}
    for organ, sid in organ_segments(segmentation_node).items():
        text = segment_tag(seg.GetSegment(sid), TAG_EMBEDDING)
        if text:
            out[organ] = np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)
    model = segmentation_node.GetAttribute(ATTRIBUTE_MODEL)
    return out, (json.loads(model) if model else None)
