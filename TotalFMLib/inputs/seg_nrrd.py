"""A 3D Slicer segmentation (``.seg.nrrd``) as a label map of ``total`` ids on its own grid.

Segments are matched to organs by name, else by their SNOMED terminology; segments in
several layers (overlapping segments) and files written before Slicer 4.11 (no
``Segment<i>_Layer``) are read; LPS and RAS spaces are both accepted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..vocabulary import catalogue
from ..errors import InputError
from .image_files import short_list
from ..vocabulary.terminology import organ_from_terminology
from .volume import Volume


def is_seg_nrrd(path: Path) -> bool:
    """True for a NRRD whose header has Slicer's ``Segment0_*`` fields."""
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:
        return False
    return any(k.startswith("Segment0_") for k in header)


def _segments(header: dict) -> list[dict]:
    """The ``Segment<i>_*`` header fields, one dict per segment."""
    segments, i = [], 0
    while f"Segment{i}_ID" in header or f"Segment{i}_Name" in header:
        get = lambda key, default="": str(header.get(f"Segment{i}_{key}", default)).strip()  # noqa: E731
        extent = [int(v) for v in get("Extent").split()] if get("Extent") else []
        segments.append({
            "index": i, "name": get("Name") or get("ID"), "label": int(get("LabelValue", 1) or 1),
            "layer": int(get("Layer", -1) or 0), "tags": get("Tags"),
            "empty": len(extent) == 6 and any(extent[k + 1] < extent[k] for k in (0, 2, 4)),
        })
        i += 1
    return segments


def read_seg_nrrd(path: Path) -> Volume:
    """int16 label map of the segments that are organs; ``meta`` names the matched, unmatched
    and empty segments and those matched by terminology; later segments win overlaps."""
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:
        raise InputError(path, "could not be read as a NRRD file (damaged or not NRRD)") from None
    segments = _segments(header)
    if not segments:
        raise InputError(path, "has no Segment0_* fields; expected a 3D Slicer segmentation")
    matched, unmatched = [], []
    for s in segments:
        organ = catalogue.match_segment_name(s["name"])
        by_code = organ is None
        organ = organ or organ_from_terminology(s["tags"])
        if organ is None:
            unmatched.append(s["name"])
        else:
            matched.append((s, organ, by_code))
    groups = catalogue.group_segment_hint(unmatched)
    if not matched:
        raise InputError(path, (
            f"none of its {len(segments)} segments is a TotalSegmentator organ: "
            f"{short_list(repr(n) for n in unmatched)}; expected segment names (or SNOMED terminology) "
            f"of 'total' structures such as 'liver', 'kidney_left', 'Left kidney'" + (f"; {groups}" if groups else "")))
    try:
        data, header = nrrd.read(str(path), index_order="C")
    except Exception:
        raise InputError(path, "could not read the segmentation voxels (damaged file)") from None
    if "space directions" not in header:
        raise InputError(path, "has no 'space directions' field; expected a segmentation with its geometry")
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * data.ndim)]
    domain = [i for i, k in enumerate(kinds) if k in ("domain", "space")]
    if len(domain) != 3 or data.ndim not in (3, 4):
        raise InputError(path, f"has {data.ndim} axes with kinds {kinds}; expected 3 spatial axes "
                               f"and optionally one layer axis")
    rows = np.asarray(header.get("space directions"), dtype=float)[domain]
    space = str(header.get("space", "left-posterior-superior")).lower()
    origin = np.asarray(header.get("space origin", [0.0, 0.0, 0.0]), dtype=float)
    if space in ("right-anterior-superior", "ras"):
        rows[:, :2] *= -1
        origin[:2] *= -1
    spacing = np.linalg.norm(rows, axis=1)
    direction = (rows / spacing[:, None]).T  # column j: direction of axis j
    if data.ndim == 3:
        layers = data[None]
    else:  # C index order reverses the file's axes; put the layer axis first
        layer_axis = next(i for i in range(4) if i not in domain)
        layers = np.moveaxis(data, 3 - layer_axis, 0)
    labels = np.zeros(layers.shape[1:], np.int16)
    overlap, empty = 0, []
    for s, organ, _ in matched:
        # files without Segment{i}_Layer (before Slicer 4.11) keep segment i in layer i
        layer = s["layer"] if s["layer"] >= 0 else (s["index"] if len(layers) > 1 else 0)
        if layer >= len(layers):
            raise InputError(path, f"segment {s['name']!r} is in layer {layer} but the file has {len(layers)}")
        mask = layers[layer] == s["label"]
        if s["empty"] or not mask.any():
            empty.append(s["name"])
            continue
        before = labels[mask]
        overlap += int(np.count_nonzero((before != 0) & (before != organ.label_id)))
        labels[mask] = organ.label_id
    meta = {"format": "Slicer seg.nrrd", "layers": len(layers), "unmatched": unmatched, "empty": empty,
            "group_segments": groups,
            "segments": {s["name"]: o.name for s, o, _ in matched},
            "matched_by_terminology": [s["name"] for s, _, by_code in matched if by_code],
            "overlap_voxels": overlap}
    return Volume(labels, tuple(spacing), tuple(origin), tuple(direction.reshape(-1)),
                  source=str(path), meta=meta)
