"""Organ segments: which catalogue organ a segment stands for, label maps <-> segmentation
nodes, and a segment's centre.

A segmentation made here carries, per segment (all saved with the scene): segment ID = the
TotalSegmentator structure name ("kidney_left"), segment name = the catalogue's display name
("Left kidney"), colour = the TotalSegmentator SNOMED table colour; tags ``TerminologyEntry``
(Slicer's terminology string, DICOM context), ``TotalFM.structure`` and ``TotalFM.labelId``.
"""
from __future__ import annotations

import numpy as np
import vtk

import slicer
from TotalFMLib.errors import InputError
from TotalFMLib.inputs.volume import Volume
from TotalFMLib.vocabulary import catalogue
from TotalFMLib.vocabulary.terminology import TAG as TAG_TERMINOLOGY
from TotalFMLib.vocabulary.terminology import organ_from_terminology, terminology_entry

from .geometry import _to_vtk_matrix, check_untransformed, ijk_to_ras, image_data, volume_from_volume_node

TAG_STRUCTURE = "TotalFM.structure"
TAG_LABEL_ID = "TotalFM.labelId"


def segment_tag(segment, name: str) -> str | None:
    """The value of a segment's tag, None when it has none."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def segment_organ(segment, segment_id: str = "") -> catalogue.Organ | None:
    """The catalogue organ a segment stands for: by its TotalFM tag, its terminology,
    its segment ID, then its name; None when it is no TotalSegmentator structure."""
    structure = segment_tag(segment, TAG_STRUCTURE)
    if structure:
        found = catalogue.match_segment_name(structure)
        if found is not None:
            return found
    entry = segment_tag(segment, TAG_TERMINOLOGY)
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
    image = image_data(array.astype(dtype), slicer.vtkOrientedImageData())
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
    check_untransformed(segmentation_node)
    matched = organ_segments(segmentation_node)
    if not matched:
        segmentation = segmentation_node.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        groups = catalogue.group_segment_hint(names)
        raise InputError(where, "no segment is a TotalSegmentator structure (by name, ID or terminology); "
                                + (groups if groups else "segment the CT with TotalSegmentator first"))
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
