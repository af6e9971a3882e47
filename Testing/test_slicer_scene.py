"""The MRML layer (TotalFMSlicer/TotalFMSlicerLib) against real slicer-core nodes and the real example CT."""
from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core wheel (pip install slicer-core) not installed")
sitk = pytest.importorskip("SimpleITK")
vtk = pytest.importorskip("vtk")

from TotalFMLib.vocabulary import catalogue  # noqa: E402
from TotalFMLib.errors import InputError  # noqa: E402
from TotalFMLib.results import ANY_LESION, ScoreRow, SearchHit  # noqa: E402
from TotalFMLib.inputs.volume import Volume  # noqa: E402
from TotalFMLib.vocabulary import terminology  # noqa: E402
from TotalFMSlicerLib import colouring, geometry, score_store, scores_table, segments  # noqa: E402

CREATED = "2026-01-02T03:04:05+00:00"


@pytest.fixture(scope="module")
def ct(example_ct_path):
    return Volume.from_sitk(sitk.ReadImage(str(example_ct_path)), str(example_ct_path))


@pytest.fixture(scope="module")
def seg(example_seg_path):
    return Volume.from_sitk(sitk.ReadImage(str(example_seg_path)), str(example_seg_path))


@pytest.fixture()
def case(ct, seg):
    """A fresh scene with the CT node and the TotalSegmentator segmentation imported."""
    scene = slicer.vtkMRMLScene()
    ct_node = geometry.volume_node_from_volume(scene, ct, "example_ct")
    seg_node = segments.segmentation_from_labelmap(scene, seg, ct_node, "example_seg")
    return scene, ct_node, seg_node


def present_organs(seg: Volume) -> list[str]:
    ids = [int(v) for v in np.unique(seg.array) if v != 0]
    return [catalogue.organ(i).name for i in ids]


def make_rows(organs: list[str], findings=(ANY_LESION, "hepatic steatosis")) -> list[ScoreRow]:
    """Score rows shaped like the scorer's output: probability-like scores, threshold 0.5."""
    rng = np.random.default_rng(7)
    rows = []
    for organ in organs:
        o = catalogue.organ(organ)
        for finding in findings:
            if finding != ANY_LESION and organ != "liver":
                continue
            score = 0.83 if organ == "liver" else float(rng.uniform(0.05, 0.7))
            similarity = float(np.log(score / (1 - score)) / 20.0)
            rows.append(ScoreRow("example", o.name, o.label_id, o.snomed_code, finding, score, similarity,
                                 0.5, score >= 0.5, "totalfm-demo", "0" * 64, CREATED))
    return rows


DEFAULT_PRESENT = ["liver", "spleen", "kidney_left", "kidney_right", "pancreas", "aorta", "gallbladder",
                   "stomach", "colon", "urinary_bladder"]


# ------------------------------------------------------------------------- geometry
def test_volume_node_round_trip_real_ct(ct):
    scene = slicer.vtkMRMLScene()
    node = geometry.volume_node_from_volume(scene, ct, "ct")
    back = geometry.volume_from_volume_node(node)
    assert back.same_grid(ct, tol=1e-6)
    assert back.array.dtype == ct.array.dtype and np.array_equal(back.array, ct.array)
    # the node's IJK->RAS maps voxels where SimpleITK puts them (LPS), with x and y negated
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    image = ct.to_sitk()
    for index in [(0, 0, 0), (121, 0, 0), (5, 77, 30), (121, 100, 111)]:
        ras = m.MultiplyPoint((*index, 1.0))[:3]
        lps = image.TransformIndexToPhysicalPoint(index)
        assert np.allclose(ras, (-lps[0], -lps[1], lps[2]), atol=1e-4)


def test_oblique_geometry_round_trip():
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    flip_z = np.diag([1.0, 1.0, -1.0])  # a left-handed (e.g. feet-first) direction as well
    for direction in (rotation, rotation @ flip_z):
        array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
        vol = Volume(array, spacing=(0.7, 0.8, 2.5), origin=(-12.5, 40.25, 3.0),
                     direction=tuple(direction.ravel()))
        scene = slicer.vtkMRMLScene()
        node = geometry.volume_node_from_volume(scene, vol, "oblique")
        back = geometry.volume_from_volume_node(node)
        assert np.allclose(back.spacing, vol.spacing) and np.allclose(back.origin, vol.origin)
        assert np.allclose(back.direction, vol.direction)
        assert np.array_equal(back.array, array)
        m = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(m)
        image = vol.to_sitk()
        for index in [(0, 0, 0), (5, 0, 0), (0, 4, 0), (5, 4, 3)]:
            lps = image.TransformIndexToPhysicalPoint(index)
            assert np.allclose(m.MultiplyPoint((*index, 1.0))[:3], (-lps[0], -lps[1], lps[2]), atol=1e-6)
        # the value at a voxel is the value SimpleITK holds at that voxel
        assert array[3, 4, 5] == image[5, 4, 3]


def test_transformed_node_is_refused(ct):
    scene = slicer.vtkMRMLScene()
    node = geometry.volume_node_from_volume(scene, ct, "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="moved: .*transform"):
        geometry.volume_from_volume_node(node)


# ---------------------------------------------------------------- segmentation import
def test_segmentation_has_names_colours_and_terminology(case, seg):
    scene, ct_node, seg_node = case
    segmentation = seg_node.GetSegmentation()
    organs = present_organs(seg)
    assert len(organs) == 61
    assert segmentation.GetNumberOfSegments() == len(organs)
    assert segmentation.GetNumberOfLayers() == 1  # one shared labelmap, as Slicer imports do
    liver = segmentation.GetSegment("liver")
    assert liver.GetName() == "Liver"
    assert np.allclose(liver.GetColor(), np.array(catalogue.organ("liver").color) / 255.0)
    kidney = segmentation.GetSegment("kidney_left")
    assert kidney.GetName() == "Left kidney"
    assert np.allclose(kidney.GetColor(), np.array(catalogue.organ("kidney_left").color) / 255.0)
    assert segmentation.GetSegment("kidney_right").GetColor() != kidney.GetColor()

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    for organ in organs:
        segment = segmentation.GetSegment(organ)
        assert segment.GetLabelValue() == catalogue.organ(organ).label_id
        entry = slicer.vtkSlicerTerminologyEntry()
        assert segment.HasTag("TerminologyEntry")
        assert logic.DeserializeTerminologyEntry(segment.GetTerminology(), entry)
        assert entry.GetTypeObject().GetCodeValue() == catalogue.organ(organ).snomed_code
        assert entry.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
        assert logic.SerializeTerminologyEntry(entry) == segment.GetTerminology()
        value = vtk.reference("")
        assert segment.GetTag("TotalFM.labelId", value) and int(str(value)) == catalogue.organ(organ).label_id
    entry = slicer.vtkSlicerTerminologyEntry()
    logic.DeserializeTerminologyEntry(kidney.GetTerminology(), entry)
    assert entry.GetTypeModifierObject().GetCodeMeaning() == "Left"
    assert entry.GetTypeModifierObject().GetCodeValue() == "7771000"


def test_labelmap_round_trip_is_voxel_identical(case, seg, ct):
    scene, ct_node, seg_node = case
    back = segments.labelmap_from_segmentation(seg_node, ct_node)
    assert back.same_grid(ct, tol=1e-6)
    assert back.array.dtype == np.int16
    assert np.array_equal(back.array, seg.array.astype(np.int16))
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0  # temp node removed


def test_labelmap_from_segments_named_by_other_tools(ct, seg):
    """A segmentation imported the plain Slicer way (random segment IDs, "Label_N" names),
    then named as TotalSegmentator's extension names segments, or given terminology only;
    segments that are no organ are ignored."""
    scene = slicer.vtkMRMLScene()
    ct_node = geometry.volume_node_from_volume(scene, ct, "ct")
    named = {"liver": "Liver", "kidney_left": "Kidney left", "spleen": "spleen"}
    coded = ["kidney_right", "aorta"]
    keep = [catalogue.organ(o).label_id for o in [*named, *coded]]
    subset = seg.with_array(np.where(np.isin(seg.array, keep), seg.array, 0).astype(np.int16))
    label_node = geometry.volume_node_from_volume(scene, subset, "labels", "vtkMRMLLabelMapVolumeNode")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "imported")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, seg_node, "")
    segmentation = seg_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 5
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        segment = segmentation.GetSegment(sid)
        assert segments.segment_organ(segment, sid) is None  # "Label_5" and a random ID say nothing
        organ = catalogue.organ(segment.GetLabelValue())
        if organ.name in named:
            segment.SetName(named[organ.name])
        else:
            segment.SetTerminology(terminology.terminology_entry(organ))
    segmentation.AddEmptySegment("lesion1", "Lesion 1")
    matched = segments.organ_segments(seg_node)
    assert sorted(matched) == sorted([*named, *coded])
    assert not any(sid in named or sid in coded for sid in matched.values())
    back = segments.labelmap_from_segmentation(seg_node, ct_node)
    assert back.same_grid(ct, tol=1e-6)
    assert np.array_equal(back.array, subset.array)


def test_segments_matched_by_terminology_alone(case):
    scene, ct_node, seg_node = case
    segment = seg_node.GetSegmentation().GetSegment("kidney_left")
    for tag in ("TotalFM.structure", "TotalFM.labelId"):
        segment.RemoveTag(tag)
    segment.SetName("Segment_7")
    assert segments.segment_organ(segment, "Segment_7").name == "kidney_left"
    # a kidney cyst differs from a kidney only by its category and anatomic region
    cyst = slicer.vtkSegment()
    cyst.SetTerminology(terminology.terminology_entry("kidney_cyst_right"))
    assert segments.segment_organ(cyst, "x").name == "kidney_cyst_right"


def test_no_organ_segment_is_an_input_error(ct):
    scene = slicer.vtkMRMLScene()
    ct_node = geometry.volume_node_from_volume(scene, ct, "ct")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my drawing")
    seg_node.GetSegmentation().AddEmptySegment("blob", "Blob")
    with pytest.raises(InputError, match="my drawing: no segment"):
        segments.labelmap_from_segmentation(seg_node, ct_node)


def test_unknown_labels_are_an_input_error(seg):
    scene = slicer.vtkMRMLScene()
    bad = seg.with_array(np.where(seg.array == 5, 200, seg.array).astype(np.int16))
    bad.source = "odd_seg.nii.gz"
    with pytest.raises(InputError, match=r"odd_seg.nii.gz: label values \[200\]"):
        segments.segmentation_from_labelmap(scene, bad, None)


def test_organ_center_is_the_segment_box_centre(case, seg):
    scene, ct_node, seg_node = case
    center = segments.organ_center_ras(seg_node, "liver")
    z, y, x = np.nonzero(seg.array == catalogue.organ("liver").label_id)
    image = seg.to_sitk()
    corners = [image.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k)))
               for i, j, k in [(x.min(), y.min(), z.min()), (x.max(), y.max(), z.max())]]
    lps = np.mean(corners, axis=0)
    assert np.allclose(center, (-lps[0], -lps[1], lps[2]), atol=3.1)  # within one voxel (3 mm)
    assert np.allclose(segments.organ_center_ras(seg_node, "Liver"), center)
    with pytest.raises(InputError, match="no segment for organ 'brain'"):
        segments.organ_center_ras(seg_node, "brain")


# ----------------------------------------------------------------------- colouring
def test_apply_scores_colours_dims_and_stores(case, seg):
    scene, ct_node, seg_node = case
    organs = [o for o in DEFAULT_PRESENT if o in present_organs(seg)]
    rows = make_rows(organs)
    legend = colouring.apply_scores(seg_node, rows, ANY_LESION, colormap="viridis")
    segmentation = seg_node.GetSegmentation()
    display = seg_node.GetDisplayNode()
    shown = {r.organ: r for r in rows if r.finding == ANY_LESION}
    assert any(r.flagged for r in shown.values()) and any(not r.flagged for r in shown.values())
    for organ, row in shown.items():
        color = segmentation.GetSegment(organ).GetColor()
        assert np.allclose(color, colouring.score_color(row.score, "viridis"))
        assert np.allclose(color, legend.color(row.score))
        expected = 1.0 if row.flagged else colouring.DIM_OPACITY
        assert display.GetSegmentOpacity3D(organ) == pytest.approx(expected)
        assert display.GetSegmentOpacity2DFill(organ) == pytest.approx(expected)
    # organs with no score: grey and dim
    assert np.allclose(segmentation.GetSegment("vertebrae_L1").GetColor(), colouring.UNSCORED_COLOR)
    assert display.GetSegmentOpacity3D("vertebrae_L1") == pytest.approx(colouring.DIM_OPACITY)
    assert seg_node.GetAttribute("TotalFM.shown") == f"scores:{ANY_LESION}"
    assert legend.thresholds["liver"] == 0.5 and legend.stops[0][0] == 0.0 and legend.stops[-1][0] == 1.0
    # the colour ramp runs dark to bright, so higher scores stand out
    lum = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in (colouring.score_color(v) for v in np.linspace(0, 1, 11))]
    assert all(a < b for a, b in zip(lum, lum[1:]))

    # showing another finding recolours from the same stored rows
    colouring.apply_scores(seg_node, rows, "hepatic steatosis")
    assert np.allclose(segmentation.GetSegment("liver").GetColor(), colouring.score_color(0.83))
    assert np.allclose(segmentation.GetSegment("spleen").GetColor(), colouring.UNSCORED_COLOR)
    with pytest.raises(InputError, match="no score for finding 'ascites'"):
        colouring.apply_scores(seg_node, rows, "ascites")
    with pytest.raises(InputError, match="unknown colour map"):
        colouring.apply_scores(seg_node, rows, ANY_LESION, colormap="jet")


def test_restore_colors_is_exact(case, seg):
    scene, ct_node, seg_node = case
    segmentation = seg_node.GetSegmentation()
    display = seg_node.GetDisplayNode()
    display.SetSegmentOpacity3D("spleen", 0.7)  # a user's own setting must come back too
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    before = {sid: (segmentation.GetSegment(sid).GetColor(), display.GetSegmentOpacity3D(sid),
                    display.GetSegmentOpacity2DFill(sid), display.GetSegmentOpacity2DOutline(sid)) for sid in ids}
    rows = make_rows([o for o in DEFAULT_PRESENT if o in present_organs(seg)])
    colouring.apply_scores(seg_node, rows)
    colouring.highlight(seg_node, [SearchHit("kidney_left", 2, 0.4, 1, True)])
    colouring.apply_scores(seg_node, rows, "hepatic steatosis")
    assert segmentation.GetSegment("spleen").GetColor() != before["spleen"][0]
    assert colouring.restore_colors(seg_node) == len(ids)
    after = {sid: (segmentation.GetSegment(sid).GetColor(), display.GetSegmentOpacity3D(sid),
                   display.GetSegmentOpacity2DFill(sid), display.GetSegmentOpacity2DOutline(sid)) for sid in ids}
    assert after == before
    assert seg_node.GetAttribute("TotalFM.shown") is None
    assert not segmentation.GetSegment("liver").HasTag("TotalFM.originalColor")
    assert score_store.read_scores(seg_node)["liver"][ANY_LESION].score == pytest.approx(0.83)  # scores stay
    assert colouring.restore_colors(seg_node) == 0


def test_highlight_search_hits(case):
    scene, ct_node, seg_node = case
    segmentation = seg_node.GetSegmentation()
    display = seg_node.GetDisplayNode()
    hits = [SearchHit("kidney_right", 3, 0.41, 2, True), SearchHit("kidney_left", 2, 0.43, 1, True),
            SearchHit("liver", 5, 0.12, 3, False), SearchHit("brain", 90, 0.30, 4, True)]
    shown = colouring.highlight(seg_node, hits)
    assert shown == ["kidney_left", "kidney_right"]  # best first; brain has no segment here
    for organ in shown:
        assert np.allclose(segmentation.GetSegment(organ).GetColor(), colouring.HIGHLIGHT_COLOR)
        assert display.GetSegmentOpacity3D(organ) == 1.0
    liver = segmentation.GetSegment("liver")
    assert np.allclose(liver.GetColor(), np.array(catalogue.organ("liver").color) / 255.0)
    assert display.GetSegmentOpacity3D("liver") == pytest.approx(colouring.DIM_OPACITY)
    assert seg_node.GetAttribute("TotalFM.shown") == "search"


# ---------------------------------------------------------------- tags, table, review
def test_read_scores_returns_the_stored_rows(case, seg):
    scene, ct_node, seg_node = case
    rows = make_rows([o for o in DEFAULT_PRESENT if o in present_organs(seg)])
    assert score_store.store_scores(seg_node, rows) == len({r.organ for r in rows})
    stored = score_store.read_scores(seg_node)
    assert stored["liver"]["hepatic steatosis"] == next(r for r in rows if r.finding == "hepatic steatosis")
    assert sorted(score_store.scored_rows(seg_node), key=lambda r: (r.organ, r.finding)) == \
        sorted(rows, key=lambda r: (r.organ, r.finding))
    # a new run replaces the old scores, findings it did not score disappear
    score_store.store_scores(seg_node, [r for r in rows if r.finding == ANY_LESION])
    assert list(score_store.read_scores(seg_node)["liver"]) == [ANY_LESION]


def test_scores_table_rows_columns_and_review(case, seg):
    scene, ct_node, seg_node = case
    organs = [o for o in DEFAULT_PRESENT if o in present_organs(seg)]
    rows = make_rows(organs)
    table = scores_table.scores_table(scene, rows, review={"spleen": "Agree"})
    assert table.GetNumberOfRows() == len(organs)
    names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert names == ["organ", "segment", "label_id", ANY_LESION, "hepatic steatosis", "flagged", "review"]
    listed = scores_table.table_organs(table)
    scores = {r.organ: r.score for r in rows if r.finding == ANY_LESION}
    assert listed == sorted(organs, key=lambda o: -scores[o])  # most suspicious first
    liver_row = listed.index("liver")
    assert float(table.GetCellText(liver_row, 3)) == pytest.approx(0.83)
    assert float(table.GetCellText(liver_row, 4)) == pytest.approx(0.83)
    assert table.GetCellText(liver_row, 1) == "Liver"
    assert table.GetCellText(liver_row, 5) == f"{ANY_LESION}; hepatic steatosis"
    spleen_row = listed.index("spleen")
    assert np.isnan(float(table.GetCellText(spleen_row, 4)))  # not scored for steatosis
    assert scores_table.review_marks(table) == {"spleen": "agree"}

    scores_table.set_review(table, "liver", "disagree")
    scores_table.set_review(table, "Left kidney", "unsure")
    scores_table.set_review(table, "spleen", "")
    assert scores_table.review_marks(table) == {"liver": "disagree", "kidney_left": "unsure"}
    with pytest.raises(InputError, match="review mark 'maybe'"):
        scores_table.set_review(table, "liver", "maybe")
    with pytest.raises(InputError, match="'brain' is not in the scores table"):
        scores_table.set_review(table, "brain", "agree")

    # refilling (a new run, a search order) keeps the marks; the order puts hits first
    again = scores_table.scores_table(scene, rows, table_node=table, order=["kidney_right", "kidney_left"])
    assert again is table
    assert scores_table.table_organs(table)[:2] == ["kidney_right", "kidney_left"]
    assert scores_table.review_marks(table) == {"liver": "disagree", "kidney_left": "unsure"}
    # another case in the same table starts without marks
    other = [dataclasses.replace(r, case_id="another case") for r in rows]
    scores_table.scores_table(scene, other, table_node=table)
    assert scores_table.review_marks(table) == {}


def test_scene_save_and_reload_keeps_scores_colours_and_marks(case, seg, tmp_path):
    scene, ct_node, seg_node = case
    rows = make_rows([o for o in DEFAULT_PRESENT if o in present_organs(seg)])
    colouring.apply_scores(seg_node, rows)
    table = scores_table.scores_table(scene, rows)
    scores_table.set_review(table, "liver", "agree")
    colors = {o: seg_node.GetSegmentation().GetSegment(o).GetColor() for o in ("liver", "spleen")}

    # what Slicer's "Save scene as .mrb" does: write the scene and its storage nodes to a folder
    app_logic = slicer.vtkMRMLApplicationLogic()
    app_logic.SetMRMLScene(scene)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert app_logic.SaveSceneToSlicerDataBundleDirectory(str(bundle), None)
    mrml = next(bundle.glob("*.mrml"))
    written = sorted(p.name for p in (bundle / "Data").iterdir())
    assert written == ["TotalFM scores.schema.tsv", "TotalFM scores.tsv", "example_ct.nrrd", "example_seg.seg.nrrd"]

    reloaded = slicer.vtkMRMLScene()
    reloaded.SetURL(str(mrml))
    assert reloaded.Connect()
    seg2 = reloaded.GetFirstNodeByName("example_seg")
    table2 = reloaded.GetFirstNodeByName("TotalFM scores")
    ct2 = reloaded.GetFirstNodeByName("example_ct")
    stored = score_store.read_scores(seg2)
    assert stored["liver"][ANY_LESION] == next(r for r in rows if r.organ == "liver" and r.finding == ANY_LESION)
    assert sorted(score_store.scored_rows(seg2), key=lambda r: (r.organ, r.finding)) == \
        sorted(rows, key=lambda r: (r.organ, r.finding))
    for organ, color in colors.items():
        assert np.allclose(seg2.GetSegmentation().GetSegment(organ).GetColor(), color, atol=1e-5)
    assert seg2.GetAttribute("TotalFM.shown") == f"scores:{ANY_LESION}"
    assert scores_table.review_marks(table2) == {"liver": "agree"}
    assert scores_table.table_organs(table2) == scores_table.table_organs(table)
    # the original colours come back after a reload as well
    colouring.restore_colors(seg2)
    assert np.allclose(seg2.GetSegmentation().GetSegment("liver").GetColor(),
                       np.array(catalogue.organ("liver").color) / 255.0, atol=1e-5)
    assert np.array_equal(segments.labelmap_from_segmentation(seg2, ct2).array, seg.array)


def test_csv_export_with_reviewer_marks(case, seg, tmp_path):
    pytest.importorskip("TotalFMLib.outputs.export")
    scene, ct_node, seg_node = case
    rows = make_rows([o for o in DEFAULT_PRESENT if o in present_organs(seg)])
    colouring.apply_scores(seg_node, rows)
    table = scores_table.scores_table(scene, rows)
    scores_table.set_review(table, "liver", "agree")
    scores_table.set_review(table, "spleen", "disagree")
    path = tmp_path / "out" / "scores.csv"
    scores_table.export_csv(score_store.scored_rows(seg_node), path, table)
    with open(path, newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    from TotalFMLib.results import SCORE_COLUMNS

    assert list(records[0]) == [*SCORE_COLUMNS, "review"]
    assert len(records) == len(rows)
    marks = {(r["organ"], r["finding"]): r["review"] for r in records}
    assert marks[("liver", ANY_LESION)] == "agree" and marks[("liver", "hepatic steatosis")] == "agree"
    assert marks[("spleen", ANY_LESION)] == "disagree"
    assert marks[("pancreas", ANY_LESION)] == ""
    liver = next(r for r in records if r["organ"] == "liver" and r["finding"] == ANY_LESION)
    assert float(liver["score"]) == pytest.approx(0.83) and liver["flagged"] == "true"
    assert [p.name for p in path.parent.iterdir()] == ["scores.csv"]  # no temp file left behind
    assert os.path.getsize(path) > 0


# --------------------------------------------------------------- with a real model
def test_model_scores_and_search_on_volumes_read_from_nodes(case, tiny_checkpoint, monkeypatch, tmp_path):
    """The module's path: volumes read back from the nodes -> the facade -> colours, table, highlight."""
    from TotalFMLib import TotalFM

    monkeypatch.setenv("TOTALFM_HOME", str(tmp_path))
    model = TotalFM.load(tiny_checkpoint, device="cpu")
    scene, ct_node, seg_node = case
    ct = geometry.volume_from_volume_node(ct_node)
    seg = segments.labelmap_from_segmentation(seg_node, ct_node)
    embeddings = model.encode_image(ct, seg, organs=["liver", "spleen", "kidneys", "pancreas"])
    assert sorted(embeddings) == sorted(["liver", "spleen", "kidney_left", "kidney_right", "pancreas"])
    rows = model.score(embeddings, case_id="example")
    assert {r.finding for r in rows} >= {ANY_LESION}
    legend = colouring.apply_scores(seg_node, rows)
    segmentation = seg_node.GetSegmentation()
    for row in (r for r in rows if r.finding == ANY_LESION):
        assert np.allclose(segmentation.GetSegment(row.organ).GetColor(), legend.color(row.score))
    table = scores_table.scores_table(scene, rows)
    assert sorted(scores_table.table_organs(table)) == sorted(embeddings)
    assert score_store.scored_rows(seg_node) == sorted(rows, key=lambda r: catalogue.organ(r.organ).label_id)

    hits = model.search(embeddings, "kidney stone", threshold=-1e9)  # a random tiny model: the top 3 match
    matched = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
    assert matched and colouring.highlight(seg_node, hits) == matched
    assert np.allclose(segmentation.GetSegment(matched[0]).GetColor(), colouring.HIGHLIGHT_COLOR)
