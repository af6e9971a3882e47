"""The one door between TotalFMLib and MRML (3D Slicer's scene).

Every function takes the scene or the nodes it works on as arguments; nothing here
touches ``slicer.app``, ``slicer.mrmlScene``, ``slicer.modules``, Qt or CTK, so the same
code runs inside Slicer and in plain Python with the ``slicer-core`` wheel.

Geometry: a ``Volume`` is (Z, Y, X) with SimpleITK's LPS origin and direction; MRML
volume nodes are RAS. The IJK index order is the same (I = x fastest), so only the first
two axes of origin and direction change sign.

What a segmentation made here carries, per segment (all saved with the scene):

- segment ID = TotalSegmentator structure name ("kidney_left"), segment name = the
  catalogue's display name ("Left kidney"), colour = the TotalSegmentator SNOMED table
  colour; tags ``TerminologyEntry`` (Slicer's terminology string, DICOM context),
  ``TotalFM.structure`` and ``TotalFM.labelId``;
- after scoring: one tag per finding, ``TotalFM.score.<finding key>``, holding the whole
  ``ScoreRow`` URL-encoded, an index tag ``TotalFM.scoreKeys``, and while scores or a
  search are shown, the original colour and opacities (``TotalFM.originalColor``,
  ``TotalFM.originalOpacity``) so ``restore_colors`` puts them back exactly.

The scores table has one row per organ and one numeric column per finding, plus the
reviewer's mark (agree / disagree / unsure).
"""
from __future__ import annotations

import dataclasses
import urllib.parse
from dataclasses import dataclass, field

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer

from .vocabulary import catalogue
from .crops.ct_windows import window
from .errors import InputError
from .outputs.export import parse_value, write_csv
from .results import ANY_LESION, ScoreRow, SearchHit
from .vocabulary.terminology import TAG as TAG_TERMINOLOGY
from .vocabulary.terminology import organ_from_terminology, terminology_entry
from .inputs.volume import Volume

TAG_STRUCTURE = "TotalFM.structure"
TAG_LABEL_ID = "TotalFM.labelId"
TAG_SCORE_PREFIX = "TotalFM.score."
TAG_SCORE_KEYS = "TotalFM.scoreKeys"
TAG_ORIGINAL_COLOR = "TotalFM.originalColor"
TAG_ORIGINAL_OPACITY = "TotalFM.originalOpacity"
ATTR_SHOWN = "TotalFM.shown"          # segmentation node attribute: what the colours show now
ATTR_FINDINGS = "TotalFM.findings"    # table node attribute: finding columns, "|"-separated
ATTR_CASE = "TotalFM.caseId"          # table node attribute: the case its rows belong to

REVIEW_MARKS = ("agree", "disagree", "unsure")
TABLE_FLAGGED = "flagged"
TABLE_REVIEW = "review"

DIM_OPACITY = 0.15
UNSCORED_COLOR = (0.6, 0.6, 0.6)
HIGHLIGHT_COLOR = (1.0, 0.55, 0.0)

# Perceptual colour maps as stops at 0, 1/8, ..., 1 (sampled from matplotlib's maps).
COLORMAPS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "viridis": (
        (0.267, 0.005, 0.329), (0.279, 0.175, 0.483), (0.230, 0.322, 0.546),
        (0.173, 0.449, 0.558), (0.128, 0.567, 0.551), (0.158, 0.684, 0.502),
        (0.369, 0.789, 0.383), (0.678, 0.864, 0.190), (0.993, 0.906, 0.144),
    ),
    "inferno": (
        (0.001, 0.000, 0.014), (0.129, 0.047, 0.291), (0.342, 0.062, 0.429),
        (0.541, 0.135, 0.415), (0.736, 0.216, 0.330), (0.894, 0.353, 0.194),
        (0.978, 0.558, 0.035), (0.975, 0.798, 0.206), (0.988, 0.998, 0.645),
    ),
}

_FLIP = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS


# ------------------------------------------------------------------------- geometry
def _to_vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def _from_vtk_matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(vol: Volume) -> np.ndarray:
    """4x4 IJK -> RAS matrix of a ``Volume`` (LPS geometry)."""
    m = np.eye(4)
    direction = np.asarray(vol.direction, dtype=float).reshape(3, 3)
    m[:3, :3] = _FLIP @ direction @ np.diag(np.asarray(vol.spacing, dtype=float))
    m[:3, 3] = _FLIP @ np.asarray(vol.origin, dtype=float)
    return m


def _geometry_from_ijk_to_ras(m: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(spacing, LPS origin, LPS direction) from a 4x4 IJK -> RAS matrix."""
    columns = m[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    direction = _FLIP @ (columns / spacing)
    origin = _FLIP @ m[:3, 3]
    return (tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
            tuple(float(d) for d in direction.ravel()))


def _image_data(array: np.ndarray, image=None):
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(None, f"expected a 3D array (Z, Y, X), got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    array = np.ascontiguousarray(array)
    image = image if image is not None else vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    return image


def _array_from_image(image, where: str) -> np.ndarray:
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(where, "the node holds no image data")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(where, f"expected a single-component image, got {scalars.GetNumberOfComponents()} components")
    nx, ny, nz = image.GetDimensions()
    return numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx).copy()


def _check_untransformed(node) -> None:
    if node.GetParentTransformNode() is not None:
        raise InputError(node.GetName(), "the node is under a transform; harden the transform first "
                                         "(Data module, right-click, Harden transform)")


def volume_node_from_volume(scene, vol: Volume, name: str = "CT", node_class: str = "vtkMRMLScalarVolumeNode"):
    """Add a volume node holding ``vol``'s voxels and geometry; CTs get a soft-tissue window."""
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetAndObserveImageData(_image_data(vol.array))
    node.SetIJKToRASMatrix(_to_vtk_matrix(ijk_to_ras(vol)))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if node_class == "vtkMRMLScalarVolumeNode" and display is not None:
        display.AutoWindowLevelOff()
        level, width = window("soft_tissue")
        display.SetWindowLevel(float(width), float(level))
    return node


def volume_from_volume_node(node) -> Volume:
    """The voxels (Z, Y, X) and LPS geometry of a scalar volume node."""
    if node is None:
        raise InputError(None, "no volume node given")
    _check_untransformed(node)
    array = _array_from_image(node.GetImageData(), node.GetName())
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    spacing, origin, direction = _geometry_from_ijk_to_ras(_from_vtk_matrix(m))
    return Volume(array=array, spacing=spacing, origin=origin, direction=direction,
                  source=node.GetName(), meta={"mrml_id": node.GetID()})


# --------------------------------------------------------------------- segment tags
def _tag(segment, name: str) -> str | None:
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def segment_organ(segment, segment_id: str = "") -> catalogue.Organ | None:
    """The catalogue organ a segment stands for: by its TotalFM tag, its terminology,
    its segment ID, then its name; None when it is no TotalSegmentator structure."""
    structure = _tag(segment, TAG_STRUCTURE)
    if structure:
        found = catalogue.match_segment_name(structure)
        if found is not None:
            return found
    entry = _tag(segment, TAG_TERMINOLOGY)
    if entry:
        found = organ_from_terminology(entry)
        if found is not None:
            return found
    for text in (segment_id, segment.GetName()):
        if text:
            found = catalogue.match_segment_name(text)
            if found is not None:
                return found
    return None


def organ_segments(segmentation_node) -> dict[str, str]:
    """{structure name: segment ID} for the segments that match a catalogue organ
    (the first segment wins when two stand for the same organ)."""
    seg = segmentation_node.GetSegmentation()
    found: dict[str, str] = {}
    for i in range(seg.GetNumberOfSegments()):
        sid = seg.GetNthSegmentID(i)
        organ = segment_organ(seg.GetSegment(sid), sid)
        if organ is not None and organ.name not in found:
            found[organ.name] = sid
    return found


# ------------------------------------------------------------ labelmap <-> segments
def segmentation_from_labelmap(scene, labelmap: Volume, reference_volume_node=None,
                               name: str = "TotalSegmentator"):
    """Add a segmentation node with one segment per organ present in ``labelmap``
    (TotalSegmentator v2 ``total`` ids): ID = structure name, name = display name,
    colour and terminology from the catalogue. All segments share one labelmap layer."""
    array = np.asarray(labelmap.array)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(labelmap.source, f"a label map must hold integers, got {array.dtype}")
    values = np.unique(array)
    values = values[values != 0]
    known = {o.label_id: o for o in catalogue.organs()}
    unknown = [int(v) for v in values if int(v) not in known]
    if unknown:
        raise InputError(labelmap.source, f"label values {unknown[:5]} are not TotalSegmentator 'total' "
                                          f"classes (1-{max(known)})")
    dtype = np.uint8 if values.size == 0 or values.max() < 256 else np.int16
    image = _image_data(array.astype(dtype), slicer.vtkOrientedImageData())
    image.SetGeometryFromImageToWorldMatrix(_to_vtk_matrix(ijk_to_ras(labelmap)))

    register_conversion_rules()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    segmentation = node.GetSegmentation()
    labelmap_name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    segmentation.SetSourceRepresentationName(labelmap_name)
    was_modifying = node.StartModify()
    for value in values:
        organ = known[int(value)]
        segment = slicer.vtkSegment()
        segment.SetName(organ.display_name)
        segment.SetColor(*organ.color_float)
        segment.SetLabelValue(int(value))
        segment.AddRepresentation(labelmap_name, image)
        segment.SetTag(TAG_TERMINOLOGY, terminology_entry(organ))
        segment.SetTag(TAG_STRUCTURE, organ.name)
        segment.SetTag(TAG_LABEL_ID, str(organ.label_id))
        segmentation.AddSegment(segment, organ.name)
    node.EndModify(was_modifying)
    return node


def labelmap_from_segmentation(segmentation_node, reference_volume_node) -> Volume:
    """TotalSegmentator label map (int16, v2 ``total`` ids) on the reference volume's grid
    from the segments that match catalogue organs; other segments are ignored. Where
    segments overlap, the one later in the segment list wins."""
    where = segmentation_node.GetName() if segmentation_node is not None else None
    if segmentation_node is None or reference_volume_node is None:
        raise InputError(where, "a segmentation node and a reference volume node are needed")
    _check_untransformed(segmentation_node)
    matched = organ_segments(segmentation_node)
    if not matched:
        raise InputError(where, "no segment is a TotalSegmentator structure (by name, ID or terminology); "
                                "segment the CT with TotalSegmentator first")
    ids = vtk.vtkStringArray()
    lookup = np.zeros(len(matched) + 1, dtype=np.int16)
    for index, (organ, sid) in enumerate(matched.items(), start=1):
        ids.InsertNextValue(sid)
        lookup[index] = catalogue.organ(organ).label_id
    scene = segmentation_node.GetScene()
    out = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "TotalFM temporary labelmap")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, out, reference_volume_node)
        if not ok:
            raise InputError(where, "the segments could not be exported to a label map")
        exported = volume_from_volume_node(out)
    finally:
        scene.RemoveNode(out)
    exported.array = lookup[exported.array.astype(np.int64)]
    exported.source = where
    exported.meta = {"segments": dict(matched)}
    return exported


# ------------------------------------------------------------------------ colours
@dataclass
class ColorLegend:
    """What the overlay colours mean: score -> colour ramp, plus dimming."""
    title: str
    colormap: str
    stops: list[tuple[float, tuple[float, float, float]]]
    vmin: float = 0.0
    vmax: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    dim_opacity: float = DIM_OPACITY
    unscored_color: tuple[float, float, float] = UNSCORED_COLOR

    def color(self, value: float) -> tuple[float, float, float]:
        return score_color(value, self.colormap, self.vmin, self.vmax)


def score_color(value: float, colormap: str = "viridis", vmin: float = 0.0, vmax: float = 1.0
                ) -> tuple[float, float, float]:
    """RGB (0-1) of ``value`` on a colour map, clipped to [vmin, vmax]."""
    if colormap not in COLORMAPS:
        raise InputError(None, f"unknown colour map {colormap!r}; known: {', '.join(COLORMAPS)}")
    stops = np.asarray(COLORMAPS[colormap])
    t = 0.0 if vmax <= vmin else float(np.clip((value - vmin) / (vmax - vmin), 0.0, 1.0))
    xs = np.linspace(0.0, 1.0, len(stops))
    return tuple(float(np.interp(t, xs, stops[:, c])) for c in range(3))


def _display_node(segmentation_node):
    display = segmentation_node.GetDisplayNode()
    if display is None:
        segmentation_node.CreateDefaultDisplayNodes()
        display = segmentation_node.GetDisplayNode()
    return display


def _remember_original(segment, display, sid: str) -> None:
    if segment.HasTag(TAG_ORIGINAL_COLOR):
        return
    segment.SetTag(TAG_ORIGINAL_COLOR, " ".join(repr(float(c)) for c in segment.GetColor()))
    opacities = (display.GetSegmentOpacity3D(sid), display.GetSegmentOpacity2DFill(sid),
                 display.GetSegmentOpacity2DOutline(sid))
    segment.SetTag(TAG_ORIGINAL_OPACITY, " ".join(repr(float(o)) for o in opacities))


def _set_opacity(display, sid: str, opacity: float) -> None:
    display.SetSegmentOpacity3D(sid, opacity)
    display.SetSegmentOpacity2DFill(sid, opacity)
    display.SetSegmentOpacity2DOutline(sid, opacity)


def _original_color(segment) -> tuple[float, float, float]:
    text = _tag(segment, TAG_ORIGINAL_COLOR)
    return tuple(float(c) for c in text.split()) if text else tuple(segment.GetColor())


def restore_colors(segmentation_node) -> int:
    """Put back the colours and opacities saved before scores or a search were shown.
    Returns the number of segments restored; stored scores stay."""
    seg = segmentation_node.GetSegmentation()
    display = _display_node(segmentation_node)
    restored = 0
    was_modifying = segmentation_node.StartModify()
    for i in range(seg.GetNumberOfSegments()):
        sid = seg.GetNthSegmentID(i)
        segment = seg.GetSegment(sid)
        color = _tag(segment, TAG_ORIGINAL_COLOR)
        if color is None:
            continue
        segment.SetColor(*(float(c) for c in color.split()))
        opacity = _tag(segment, TAG_ORIGINAL_OPACITY)
        if opacity:
            o3d, fill, outline = (float(o) for o in opacity.split())
            display.SetSegmentOpacity3D(sid, o3d)
            display.SetSegmentOpacity2DFill(sid, fill)
            display.SetSegmentOpacity2DOutline(sid, outline)
        segment.RemoveTag(TAG_ORIGINAL_COLOR)
        segment.RemoveTag(TAG_ORIGINAL_OPACITY)
        restored += 1
    segmentation_node.RemoveAttribute(ATTR_SHOWN)
    segmentation_node.EndModify(was_modifying)
    return restored


# ------------------------------------------------------------------------- scores
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
        for old in (_tag(segment, TAG_SCORE_KEYS) or "").split(","):
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
        for key in (_tag(segment, TAG_SCORE_KEYS) or "").split(","):
            text = _tag(segment, TAG_SCORE_PREFIX + key) if key else None
            if text:
                row = _decode_row(text)
                out.setdefault(organ, {})[row.finding] = row
    return out


def scored_rows(segmentation_node) -> list[ScoreRow]:
    """All stored score rows, organs in label order, findings in stored order."""
    scores = read_scores(segmentation_node)
    ordered = sorted(scores, key=lambda name: catalogue.organ(name).label_id)
    return [row for organ in ordered for row in scores[organ].values()]


def apply_scores(segmentation_node, rows: list[ScoreRow], finding: str = ANY_LESION,
                 colormap: str = "viridis", dim_opacity: float = DIM_OPACITY) -> ColorLegend:
    """Colour each organ segment by its score for ``finding``; organs below their threshold
    and organs without a score are dimmed (unscored ones also grey). Stores all ``rows`` as
    tags and remembers the original colours for ``restore_colors``."""
    shown = {r.organ: r for r in rows if r.finding == finding}
    if rows and not shown:
        findings = sorted({r.finding for r in rows})
        raise InputError(None, f"no score for finding {finding!r}; scored findings: {', '.join(findings)}")
    score_color(0.0, colormap)  # fails early on an unknown colour map
    store_scores(segmentation_node, rows)
    seg = segmentation_node.GetSegmentation()
    display = _display_node(segmentation_node)
    was_modifying = segmentation_node.StartModify()
    for organ, sid in organ_segments(segmentation_node).items():
        segment = seg.GetSegment(sid)
        _remember_original(segment, display, sid)
        row = shown.get(organ)
        if row is None:
            segment.SetColor(*UNSCORED_COLOR)
            _set_opacity(display, sid, dim_opacity)
            continue
        segment.SetColor(*score_color(row.score, colormap))
        _set_opacity(display, sid, 1.0 if row.flagged else dim_opacity)
    segmentation_node.SetAttribute(ATTR_SHOWN, f"scores:{finding}")
    segmentation_node.EndModify(was_modifying)
    stops = [(float(x), tuple(c)) for x, c in zip(np.linspace(0, 1, len(COLORMAPS[colormap])), COLORMAPS[colormap])]
    return ColorLegend(title=f"TotalFM score: {finding}", colormap=colormap, stops=stops,
                       thresholds={o: r.threshold for o, r in shown.items()}, dim_opacity=dim_opacity)


def highlight(segmentation_node, hits: list[SearchHit], color=HIGHLIGHT_COLOR,
              dim_opacity: float = DIM_OPACITY) -> list[str]:
    """Show the matched organs of a search in ``color`` at full opacity and dim the rest
    (in their original colours). Returns the highlighted organs, best first."""
    matched = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
    seg = segmentation_node.GetSegmentation()
    display = _display_node(segmentation_node)
    segments = organ_segments(segmentation_node)
    was_modifying = segmentation_node.StartModify()
    for organ, sid in segments.items():
        segment = seg.GetSegment(sid)
        _remember_original(segment, display, sid)
        if organ in matched:
            segment.SetColor(*color)
            _set_opacity(display, sid, 1.0)
        else:
            segment.SetColor(*_original_color(segment))
            _set_opacity(display, sid, dim_opacity)
    segmentation_node.SetAttribute(ATTR_SHOWN, "search")
    segmentation_node.EndModify(was_modifying)
    return [organ for organ in matched if organ in segments]


def organ_center_ras(segmentation_node, organ: str) -> tuple[float, float, float]:
    """RAS centre of an organ's segment (centre of its bounding box), for centring views."""
    name = catalogue.organ(organ).name
    sid = organ_segments(segmentation_node).get(name)
    if sid is None:
        raise InputError(segmentation_node.GetName(), f"no segment for organ {name!r}")
    center = segmentation_node.GetSegmentCenterRAS(sid)
    if center is None:
        raise InputError(segmentation_node.GetName(), f"the segment of {name!r} is empty")
    return tuple(float(c) for c in center)


def register_conversion_rules() -> None:
    """Register Slicer's labelmap <-> closed surface converters when they are missing (plain
    Python; Slicer's Segmentations module does it at start-up). Segmentation nodes created
    afterwards can make 3D surfaces."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    present = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for rule_class in ("vtkBinaryLabelmapToClosedSurfaceConversionRule", "vtkClosedSurfaceToBinaryLabelmapConversionRule"):
        if rule_class not in present:
            factory.RegisterConverterRule(getattr(slicer, rule_class)())


def ensure_closed_surfaces(segmentation_node) -> bool:
    """Create the closed-surface (3D) representation of all segments; True on success."""
    return bool(segmentation_node.CreateClosedSurfaceRepresentation())


# -------------------------------------------------------------------------- table
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


def _column_values(table_node, name: str) -> list[str]:
    table = table_node.GetTable()
    column = table.GetColumnByName(name)
    if column is None:
        return []
    return [column.GetValue(i).ToString() if hasattr(column.GetValue(i), "ToString") else str(column.GetValue(i))
            for i in range(column.GetNumberOfTuples())]


def table_organs(table_node) -> list[str]:
    """Structure names of the table rows, top to bottom."""
    return _column_values(table_node, "organ")


def review_marks(table_node) -> dict[str, str]:
    """{structure name: mark} for the organs the reviewer marked."""
    organs = table_organs(table_node)
    marks = _column_values(table_node, TABLE_REVIEW)
    return {o: m for o, m in zip(organs, marks) if m}


def scores_table(scene, rows: list[ScoreRow], table_node=None, review: dict[str, str] | None = None,
                 order: list[str] | None = None):
    """Fill (or create) a table node: one row per organ with one numeric column per finding
    ("any lesion" first), the flagged findings, and the reviewer's mark.

    Rows are ordered by ``order`` (e.g. a search ranking) first, then by falling score of
    the first finding. Marks already in ``table_node`` are kept when it holds the same case
    (``case_id``); ``review`` overrides them.
    """
    case_id = rows[0].case_id if rows else ""
    same_case = table_node is not None and table_node.GetAttribute(ATTR_CASE) == case_id
    marks = review_marks(table_node) if same_case else {}
    for organ, mark in (review or {}).items():
        marks[catalogue.organ(organ).name] = _check_mark(mark)
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", "TotalFM scores")
    findings = row_findings(rows)
    by_organ: dict[str, dict[str, ScoreRow]] = {}
    for row in rows:
        by_organ.setdefault(row.organ, {})[row.finding] = row
    first = findings[0] if findings else None

    def rank(organ: str):
        score = by_organ[organ].get(first).score if first in by_organ[organ] else -1.0
        return -score, catalogue.organ(organ).label_id

    organs = sorted(by_organ, key=rank)
    if order:
        front = [o for o in order if o in by_organ]
        organs = front + [o for o in organs if o not in front]

    table = vtk.vtkTable()
    text_columns = {name: vtk.vtkStringArray() for name in ("organ", "segment")}
    label_ids = vtk.vtkIntArray()
    score_columns = {f: vtk.vtkDoubleArray() for f in findings}
    flagged, reviewed = vtk.vtkStringArray(), vtk.vtkStringArray()
    for name, array in (*text_columns.items(), ("label_id", label_ids), *score_columns.items(),
                        (TABLE_FLAGGED, flagged), (TABLE_REVIEW, reviewed)):
        array.SetName(name)
        table.AddColumn(array)
    for organ in organs:
        o = catalogue.organ(organ)
        text_columns["organ"].InsertNextValue(o.name)
        text_columns["segment"].InsertNextValue(o.display_name)
        label_ids.InsertNextValue(o.label_id)
        for f in findings:
            row = by_organ[organ].get(f)
            score_columns[f].InsertNextValue(row.score if row is not None else float("nan"))
        flagged.InsertNextValue("; ".join(f for f, r in by_organ[organ].items() if r.flagged))
        reviewed.InsertNextValue(marks.get(organ, ""))
    table_node.SetAndObserveTable(table)
    titles = {"organ": "Structure", "segment": "Organ", "label_id": "Label",
              TABLE_FLAGGED: "Flagged", TABLE_REVIEW: "Review"}
    for name, title in titles.items():
        table_node.SetColumnTitle(name, title)
    for f in findings:
        table_node.SetColumnTitle(f, f"Score: {f}")
        table_node.SetColumnDescription(f, f"TotalFM score for '{f}' (0-1)")
    table_node.SetColumnDescription(TABLE_REVIEW, "Reviewer mark: " + " / ".join(REVIEW_MARKS))
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetAttribute(ATTR_FINDINGS, "|".join(findings))
    table_node.SetAttribute(ATTR_CASE, case_id)
    table_node.SetLocked(True)
    table_node.Modified()
    return table_node


def _check_mark(mark: str) -> str:
    mark = (mark or "").strip().lower()
    if mark and mark not in REVIEW_MARKS:
        raise InputError(None, f"review mark {mark!r} is not one of {', '.join(REVIEW_MARKS)}")
    return mark


def set_review(table_node, organ: str, mark: str) -> None:
    """Set an organ's reviewer mark (agree / disagree / unsure; "" clears it)."""
    mark = _check_mark(mark)
    name = catalogue.organ(organ).name
    organs = table_organs(table_node)
    if name not in organs:
        raise InputError(table_node.GetName(), f"organ {name!r} is not in the scores table")
    column = table_node.GetTable().GetColumnByName(TABLE_REVIEW)
    column.SetValue(organs.index(name), mark)
    column.Modified()
    table_node.Modified()


# ------------------------------------------------------------------------- export
def export_csv(rows: list[ScoreRow], path, table_node=None):
    """Write the core CSV columns plus the reviewer's marks (column ``review``) atomically."""
    marks = review_marks(table_node) if table_node is not None else {}
    return write_csv(rows, path, extra_columns={TABLE_REVIEW: [marks.get(r.organ, "") for r in rows]})
