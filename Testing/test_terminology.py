"""SNOMED terminology in Slicer's notation (TotalFMLib.vocabulary.terminology) against the package's table,
Slicer's own terminology logic (slicer-core) and .seg.nrrd files written by slicerio."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from TotalFMLib.vocabulary import catalogue, terminology
from TotalFMLib.vocabulary.catalogue import Code
from TotalFMLib.inputs.ct import load_ct
from TotalFMLib.inputs.segmentation import load_segmentation

CODED = [o for o in catalogue.organs() if o.snomed_code]


def test_every_coded_organ_round_trips_through_its_entry():
    assert len(CODED) == 117
    for organ in CODED:
        entry = terminology.terminology_entry(organ)
        assert entry.count("~") == 6
        assert terminology.format_entry(terminology.parse_entry(entry)) == entry
        assert terminology.organ_from_terminology(entry) == organ, organ.name
    cysts = [terminology.organ_from_terminology(terminology.terminology_entry(f"kidney_cyst_{side}"))
             for side in ("left", "right")]
    assert [o.name for o in cysts] == ["kidney_cyst_left", "kidney_cyst_right"]


def test_entry_holds_the_package_table_codes():
    entry = terminology.terminology_entry("kidney_left")
    assert entry == ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure"
                     "~SCT^64033007^Kidney~SCT^7771000^Left~Anatomic codes - DICOM master list~^^~^^")
    cyst = terminology.parse_entry(terminology.terminology_entry("kidney_cyst_right"))
    assert cyst.category == Code("SCT", "49755003", "Morphologically Altered Structure")
    assert cyst.type.meaning == "Cyst" and cyst.type_modifier == Code()
    assert cyst.region == Code("SCT", "64033007", "Kidney") and cyst.region_modifier.meaning == "Right"


def test_slicer_reads_and_writes_the_same_entry():
    slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    for organ in CODED:
        entry = terminology.terminology_entry(organ)
        parsed = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(entry, parsed), organ.name
        assert parsed.GetTypeObject().GetCodeValue() == organ.snomed_code
        assert (parsed.GetTypeModifierObject().GetCodeValue() or "") == organ.snomed_type_modifier.value
        assert (parsed.GetAnatomicRegionObject().GetCodeValue() or "") == organ.snomed_region.value
        assert logic.SerializeTerminologyEntry(parsed) == entry


def test_partial_and_ambiguous_codes():
    kidney = catalogue.organ("kidney_left")
    find = terminology.organ_from_terminology
    assert find({"type": kidney.snomed_code}) is None  # left or right?
    assert find({"type": kidney.snomed_code, "type_modifier": "7771000"}) == kidney
    assert find({"type": ("SRT", kidney.snomed_code, "Kidney"), "type_modifier": ("SRT", "24028007", "Right")}).name \
        == "kidney_right"  # the old SNOMED designator names the same codes
    assert find({"type": ("LN", kidney.snomed_code, "Kidney"), "type_modifier": "7771000"}) is None
    assert find({"type": "367643001", "region": "64033007"}) is None  # a kidney cyst, side unknown
    assert find({"type": "367643001", "region": "64033007", "region_modifier": "7771000"}).name == "kidney_cyst_left"
    assert find({"region": "64033007", "region_modifier": "7771000"}) is None  # no type: no organ
    liver = catalogue.organ("liver")
    assert find({"type": liver.snomed_code, "type_modifier": "7771000"}) is None  # a left liver is no catalogue organ
    assert find({"category": "49755003", "type": liver.snomed_code}) is None  # category must agree too
    assert find("not a terminology") is None and find("") is None
    tags = f"Other:x|{terminology.TAG}:{terminology.terminology_entry(liver)}|More:y|"
    assert find(tags) == liver
    with pytest.raises(ValueError, match="unknown terminology fields"):
        find({"organ": "liver"})


def test_seg_nrrd_segments_found_by_terminology_alone(tmp_path, sample):
    from test_loading import write_seg_nrrd

    ct = load_ct(sample("example_ct_sm"))
    boxes = []
    for i in range(3):
        mask = np.zeros(ct.shape, bool)
        mask[2:10, 10 + 30 * i:30 + 30 * i, 20:60] = True
        boxes.append(mask)

    def codes(organ: str) -> dict:
        term = terminology.organ_terminology(organ)
        fields = {"category": term.category, "type": term.type, "typeModifier": term.type_modifier,
                  "anatomicRegion": term.region, "anatomicRegionModifier": term.region_modifier}
        return {k: list(v) for k, v in fields.items() if v.value}

    path = write_seg_nrrd(tmp_path / "coded.seg.nrrd", boxes[0].astype(np.int16), ct, [
        ({"id": "s4", "name": "Segment_4", "terminology": codes("spleen")}, boxes[0]),
        ({"id": "s5", "name": "Segment_5", "terminology": codes("kidney_cyst_left")}, boxes[1]),
        ({"id": "s6", "name": "Segment_6", "terminology": codes("kidney_cyst_right")}, boxes[2]),
    ])
    seg = load_segmentation(path, ct)
    assert seg.meta["segments"] == {"Segment_4": "spleen", "Segment_5": "kidney_cyst_left",
                                    "Segment_6": "kidney_cyst_right"}
    assert seg.meta["matched_by_terminology"] == ["Segment_4", "Segment_5", "Segment_6"]
    for name, mask in zip(("spleen", "kidney_cyst_left", "kidney_cyst_right"), boxes):
        np.testing.assert_array_equal(seg.array == catalogue.organ(name).label_id, mask)


def test_module_is_light():
    code = ("import sys, TotalFMLib.vocabulary.terminology; "
            "print(sorted(m for m in ('torch', 'SimpleITK', 'vtk', 'slicer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
