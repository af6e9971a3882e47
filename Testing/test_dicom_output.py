"""DICOM in and out on the real example series: which series of a study is scored, and the
SEG + SR written from a scored case pass dicom3tools' dciodvfy and read back (highdicom,
pydicom) to the values of the CSV.
"""
from __future__ import annotations

import csv
import shutil
import subprocess

import numpy as np
import pytest

from dicom_study import study_with_extras
from orthanc_server import require
from TotalFMLib.errors import InputError


@pytest.fixture(scope="module")
def study(tmp_path_factory, dicom_base):
    """A study folder: the example series with UIDs, a lung reconstruction, a localizer, a capture."""
    return study_with_extras(dicom_base[0], tmp_path_factory.mktemp("dicom") / "study")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, study, dicom_base):
    """`totalfm analyze --dicom-out` (and --csv) on the study: (out folder, CLI stdout)."""
    from TotalFMLib.cli import main

    out = tmp_path_factory.mktemp("dicom_out")
    assert main(["analyze", "--ct", str(study), "--seg", str(dicom_base[1]), "--dicom-out", str(out),
                 "--csv", str(out / "scores.csv"), "-q"]) == 0
    return out


def test_study_folder_scores_the_soft_tissue_series(study):
    from TotalFMLib.inputs.ct import load_ct

    ct = load_ct(study)
    assert ct.shape == (20, 512, 512)
    assert all("/soft/" in f for f in ct.meta["files"])
    note = ct.meta["note"]
    assert "'CT Body 3.0'" in note and "soft-tissue" in note and "2 usable series" in note
    assert "(localizer)" in note and "(secondary capture)" in note
    # the lung series has thinner nominal slices: the kernel decides first
    assert "Lung 1.0" in str(ct.meta["series"]) or len(ct.meta["series"]) == 4


def _copy(study, tmp_path, name="s"):
    target = tmp_path / name
    shutil.copytree(study / "soft", target)
    return target


def test_refusals_of_unusable_studies(study, tmp_path):
    import pydicom

    from TotalFMLib.inputs.ct import load_ct

    def refused(folder, *words):
        with pytest.raises(InputError) as e:
            load_ct(folder)
        message = str(e.value)
        assert "\n" not in message and str(folder) in message
        for w in words:
            assert w in message, message

    gap = _copy(study, tmp_path, "gap")
    for f in sorted(gap.iterdir(), key=lambda f: -float(pydicom.dcmread(f).ImagePositionPatient[2]))[8:10]:
        f.unlink()
    refused(gap, "missing slices", "2 mm apart", "about 2 missing")

    mixed = _copy(study, tmp_path, "mixed")
    f = sorted(mixed.iterdir())[5]
    ds = pydicom.dcmread(f)
    ds.PixelSpacing = [0.7, 0.7]
    ds.save_as(f)
    refused(mixed, "different sizes", "0.7x0.7 mm")

    only_extras = tmp_path / "extras"
    shutil.copytree(study / "scout", only_extras / "scout")
    shutil.copytree(study / "capture", only_extras / "capture")
    refused(only_extras, "no usable CT series", "(localizer)", "(secondary capture)")


def test_dicom_output_needs_uids(dicom_base, tmp_path, capsys):
    """The public example series has blank UIDs: refused before the model loads, nothing written."""
    from TotalFMLib.cli import main

    out = tmp_path / "out"
    assert main(["analyze", "--ct", str(dicom_base[0]), "--seg", str(dicom_base[1]), "--dicom-out", str(out),
                 "--csv", str(tmp_path / "s.csv"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "StudyInstanceUID" in err[0] and "reference the source series" in err[0]
    assert "loading" not in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "s.csv").exists()


def test_dicom_output_needs_a_dicom_ct(example_ct_path, example_seg_path, tmp_path, capsys):
    from TotalFMLib.cli import main

    assert main(["analyze", "--ct", str(example_ct_path), "--seg", str(example_seg_path), "--dicom-out",
                 str(tmp_path / "o"), "-q"]) == 2
    assert "DICOM output needs a CT read from a DICOM series folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["organs_seg.dcm", "findings_sr.dcm"])
def test_dciodvfy_finds_no_error(exported, name):
    dciodvfy = require("dciodvfy")
    run = subprocess.run([dciodvfy, str(exported / name)], capture_output=True, text=True, timeout=120)
    report = (run.stdout + run.stderr).splitlines()
    errors = [line for line in report if line.startswith("Error")]
    assert not errors, "\n".join(errors)
    assert any(line.strip() in ("Segmentation", "Comprehensive3DSR") for line in report), report[-5:]


def _rows(exported):
    with open(exported / "scores.csv") as f:
        return list(csv.DictReader(f))


def test_seg_reads_back_to_the_organs(exported, study, dicom_base):
    import highdicom as hd
    import pydicom

    from TotalFMLib.inputs.case import load_case
    from TotalFMLib.vocabulary import catalogue

    seg = hd.seg.segread(exported / "organs_seg.dcm")
    organs = sorted({r["organ"] for r in _rows(exported)}, key=lambda o: catalogue.organ(o).label_id)
    assert [d.segment_label for d in seg.SegmentSequence] == [catalogue.organ(o).display_name for o in organs]
    case = load_case(study, dicom_base[1])
    source = [pydicom.dcmread(f, stop_before_pixels=True) for f in case.ct.meta["files"]]
    assert seg.StudyInstanceUID == source[0].StudyInstanceUID
    assert {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence} == {source[0].SeriesInstanceUID}
    for number, name in enumerate(organs, start=1):
        organ = catalogue.organ(name)
        desc = seg.get_segment_description(number)
        assert desc.segmented_property_type.value == organ.snomed_type.value
        assert desc.segmented_property_category.value == organ.snomed_category.value
        from highdicom.color import CIELabColor

        rgb = CIELabColor.from_dicom_value(tuple(desc.RecommendedDisplayCIELabValue)).to_rgb()
        assert rgb == pytest.approx(organ.color, abs=1)
        modifier = desc.SegmentedPropertyTypeCodeSequence[0].get("SegmentedPropertyTypeModifierCodeSequence")
        assert (modifier[0].CodeValue if modifier else "") == organ.snomed_type_modifier.value
    # every voxel of every segment, slice by slice in the source's order
    mask = seg.get_pixels_by_source_instance([d.SOPInstanceUID for d in source], combine_segments=True,
                                              relabel=False, skip_overlap_checks=True)
    expected = np.zeros_like(case.seg.array, dtype=np.int64)
    for number, name in enumerate(organs, start=1):
        expected[case.seg.array == catalogue.organ(name).label_id] = number
    np.testing.assert_array_equal(mask, expected)


def test_sr_reads_back_to_the_scores(exported):
    import highdicom as hd

    from TotalFMLib.outputs.dicom_sr import SCHEME, finding_code

    sr = hd.sr.srread(exported / "findings_sr.dcm")
    seg = hd.seg.segread(exported / "organs_seg.dcm")
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == SCHEME
    groups = sr.content.get_volumetric_roi_measurement_groups()
    rows = _rows(exported)
    assert len(groups) == len({r["organ"] for r in rows})
    read = {}
    for number, group in enumerate(groups, start=1):
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID and ref.referenced_segment_numbers == [number]
        label = seg.get_segment_description(number).segment_label
        assert group.finding_sites[0].value.value == seg.get_segment_description(number).segmented_property_type.value
        flags = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
        for m in group.get_measurements():
            assert m.unit.value == "{probability}" and m.name.value == finding_code(m.name.meaning)
            read[(label, m.name.meaning)] = (m.value, flags[m.name.meaning])
    from TotalFMLib.vocabulary import catalogue

    expected = {(catalogue.organ(r["organ"]).display_name, r["finding"]):
                (float(r["score"]), {"true": "Present", "false": "Absent"}[r["flagged"]]) for r in rows}
    assert read.keys() == expected.keys()
    for key, (score, flag) in expected.items():
        assert read[key][0] == pytest.approx(score, abs=1e-6) and read[key][1] == flag, key


def test_review_marks_go_into_the_sr(study, dicom_base, tmp_path):
    import highdicom as hd

    from TotalFMLib.outputs.dicom_export import write_dicom
    from TotalFMLib.pipeline import analyze, open_case
    from TotalFMLib.totalfm import TotalFM

    case = open_case(study, dicom_base[1])
    result = analyze(TotalFM.load("demo"), case, organs=["liver", "spleen"], findings=["any lesion"])
    flags = {"liver": True, "spleen": False}  # both ways, whatever the demo model says here
    for row in result.rows:
        row.flagged = flags[row.organ]
    done = write_dicom(result, case, tmp_path, marks={"liver": "disagree"})
    sr = hd.sr.srread(done.sr)
    marks, present = {}, {}
    for group in sr.content.get_volumetric_roi_measurement_groups():
        for e in group.get_qualitative_evaluations():
            if e.name.value == "review":
                marks[group.tracking_identifier] = e.value.value
            else:
                present[group.tracking_identifier] = (e.name.meaning, e.value.value, e.value.meaning)
    assert marks == {"Liver": "disagree"}
    assert present == {"Liver": ("any lesion", "52101004", "Present"), "Spleen": ("any lesion", "2667000", "Absent")}
    with pytest.raises(ValueError, match="agree, disagree, unsure"):
        write_dicom(result, case, tmp_path / "bad", marks={"liver": "maybe"})
    assert not (tmp_path / "bad").exists()
