"""Organ catalogue against the installed TotalSegmentator package (ids never retyped)."""
import csv
from importlib import resources

import pytest

from TotalFMLib.vocabulary import catalogue
from TotalFMLib.errors import InputError


def test_ids_and_names_come_from_totalsegmentator():
    from totalsegmentator.map_to_binary import class_map

    total = class_map["total"]
    assert [(o.label_id, o.name) for o in catalogue.organs()] == sorted(total.items())
    assert len(catalogue.organs()) == 117


def test_snomed_codes_and_colours_match_the_package_table():
    table = resources.files("totalsegmentator") / "resources" / "totalsegmentator_snomed_mapping.csv"
    with table.open() as f:
        rows = {r["Structure"]: r for r in csv.DictReader(f)}
    liver = catalogue.organ("liver")
    assert liver.snomed_code == rows["liver"]["SegmentedPropertyTypeCodeSequence.CodeValue"] == "10200004"
    assert ",".join(map(str, liver.color)) == rows["liver"]["DicomRGBColor"]
    kidney = catalogue.organ("kidney_left")
    assert (kidney.display_name, kidney.snomed_modifier) == ("Left kidney", "Left")


@pytest.mark.parametrize("text", ["kidney_left", "Kidney Left", "Left kidney", "left-kidney", "3"])
def test_segment_names_as_other_tools_write_them(text):
    assert catalogue.organ(text).name == "kidney_left"


def test_groups_and_default_set():
    groups = catalogue.groups()
    assert set(groups["lungs"]) == {"lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
                                    "lung_middle_lobe_right", "lung_lower_lobe_right"}
    assert set(groups["kidneys"]) == {"kidney_left", "kidney_right"}
    assert len(groups["ribs"]) == 24 and len(groups["vertebrae"]) == 25
    default = [o.name for o in catalogue.resolve(None)]
    assert "liver" in default and not any(n.startswith(("rib_", "vertebrae_")) for n in default)
    assert [o.name for o in catalogue.resolve("kidneys,liver")] == ["kidney_right", "kidney_left", "liver"]
    assert len(catalogue.resolve("all")) == 117


def test_unknown_organ_is_a_clear_error():
    with pytest.raises(InputError, match="unknown organ 'kidnee'"):
        catalogue.resolve(["kidnee"])


def test_display_names_are_unique_and_say_the_side():
    names = [o.display_name for o in catalogue.organs()]
    assert len(set(names)) == len(names) == 117
    normalised = [catalogue.normalise_name(n) for n in names]
    assert len(set(normalised)) == 117  # each display name finds its own organ again
    assert all(catalogue.match_segment_name(o.display_name) == o for o in catalogue.organs())
    assert catalogue.organ("kidney_cyst_left").display_name == "Left kidney cyst"
    assert catalogue.organ("kidney_cyst_right").display_name == "Right kidney cyst"
    # the side is already in the table's meaning: not said twice
    assert catalogue.organ("lung_middle_lobe_right").display_name == "Middle lobe of right lung"
    for o in catalogue.organs():
        side = o.name.rsplit("_", 1)[-1]
        if side in ("left", "right"):
            assert o.display_name.lower().count(side) == 1, o.display_name


def test_names_shared_by_two_organs_match_neither():
    assert catalogue.match_segment_name("cyst") is None  # a cyst of which kidney?
    assert catalogue.match_segment_name("Kidney cyst") is None
    assert catalogue.match_segment_name("Right kidney cyst").name == "kidney_cyst_right"
    assert catalogue.match_segment_name("kidney cyst left").name == "kidney_cyst_left"


def test_totalsegmentators_tables_read_without_the_package_equal_the_package(monkeypatch):
    """Without the totalsegmentator package, its class maps and SNOMED table come out of its pinned
    source distribution (parsed, never run); they equal what the installed package holds."""
    from TotalFMLib.package_files import PackageIndexUnavailable
    from TotalFMLib.vocabulary import ts_resources

    pytest.importorskip("totalsegmentator")
    from totalsegmentator.map_to_binary import class_map

    installed = (ts_resources.class_maps(), ts_resources.snomed_rows())
    monkeypatch.setattr(ts_resources, "_installed_folder", lambda: None)
    ts_resources.class_maps.cache_clear()
    ts_resources.snomed_rows.cache_clear()
    try:
        try:
            from_index = (ts_resources.class_maps(), ts_resources.snomed_rows())
        except Exception as e:  # only an unreachable index may skip
            if isinstance(e.__cause__, PackageIndexUnavailable) or "package index" in str(e):
                pytest.skip(f"package index unreachable: {e}")
            raise
    finally:
        ts_resources.class_maps.cache_clear()
        ts_resources.snomed_rows.cache_clear()
    assert from_index == installed
    assert from_index[0]["total"] == dict(class_map["total"]) and from_index[0]["total_v1"] == dict(class_map["total_v1"])
    assert len(from_index[0]["total"]) == 117 and from_index[1]["liver"]["SegmentedPropertyTypeCodeSequence.CodeValue"]
