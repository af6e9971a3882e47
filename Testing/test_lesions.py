"""Lesion insertion on the real TotalSegmentator example CT (3 mm abdomen-pelvis, 62 organs)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from TotalFMLib.vocabulary import catalogue
from TotalFMLib.errors import InputError
from TotalFMLib.training import lesions as L
from TotalFMLib.training import augment as A


def _id(name):
    return catalogue.organ(name).label_id


def _untouched_outside(before, after, keep):
    return np.array_equal(before[~keep], after[~keep])


@pytest.mark.parametrize("organ", ["liver", "spleen", "kidney_right"])
def test_hypodense_lesion_is_darker_and_inside_the_organ(case, organ):
    ct, seg = case
    ct0, lab0 = ct.array.copy(), seg.array.copy()
    new, labels, rec = L.insert_focal_lesion(ct.array, seg.array, ct.spacing, organ, np.random.default_rng(1))
    organ_mask = seg.array == _id(organ)
    assert np.array_equal(ct.array, ct0) and np.array_equal(seg.array, lab0)  # inputs untouched
    assert rec.organ == organ and rec.mask.any()
    assert rec.finding == ("renal hypodensities" if organ.startswith("kidney") else "hypodense lesion")
    assert not (rec.mask & ~organ_mask).any()                  # stays inside the organ
    assert _untouched_outside(ct.array, new, organ_mask)         # nothing changes outside it
    assert new[rec.mask].mean() < ct.array[rec.mask].mean() - 10
    assert np.array_equal(labels, seg.array)
    assert 8 <= rec.params["diameter_mm"] <= 31 and rec.params["contrast_hu"] < 0


def test_hyperdense_lesion_is_brighter(case):
    ct, seg = case
    new, _, rec = L.insert_focal_lesion(ct.array, seg.array, ct.spacing, "liver", np.random.default_rng(2),
                                        kind="hyperdense", diameter_mm=20, contrast_hu=60)
    assert rec.finding == "hyperdense lesion"
    gain = new[rec.mask].mean() - ct.array[rec.mask].mean()
    assert 30 < gain < 70


@pytest.mark.parametrize("organ, finding", [("kidney_left", "stone"), ("gallbladder", "gallstones"),
                                            ("urinary_bladder", "stone")])
def test_stones_are_very_dense_foci_in_the_organ(case, organ, finding):
    ct, seg = case
    new, _, rec = L.insert_stones(ct.array, seg.array, ct.spacing, organ, np.random.default_rng(3),
                                  direction=ct.direction)
    organ_mask = seg.array == _id(organ)
    assert rec.finding == finding and 1 <= len(rec.params["stones"]) <= 3
    assert new[rec.mask].max() > 300 and not (rec.mask & ~organ_mask).any()
    assert _untouched_outside(ct.array, new, organ_mask)
    assert all(300 <= s["hu"] <= 1200 for s in rec.params["stones"])


def test_gallstones_lie_in_the_dependent_half(case):
    ct, seg = case
    gb = seg.array == _id("gallbladder")
    # example CT direction is (-1, -1, 1): the array's Y index grows anteriorly, so posterior = small Y
    assert ct.direction[4] == -1
    for seed in range(4):
        _, _, rec = L.insert_stones(ct.array, seg.array, ct.spacing, "gallbladder", np.random.default_rng(seed),
                                    count=1, direction=ct.direction)
        y = rec.params["stones"][0]["center_voxel"][1]
        assert y <= np.median(np.nonzero(gb)[1])


def test_enlargement_grows_the_organ_and_spares_bone(case):
    ct, seg = case
    new, labels, rec = L.enlarge_organ(ct.array, seg.array, ct.spacing, "spleen", np.random.default_rng(4))
    before, after = int((seg.array == _id("spleen")).sum()), int((labels == _id("spleen")).sum())
    assert rec.finding == "splenomegaly" and after == rec.params["voxels_after"]
    s = rec.params["scale"]
    assert 1.15 <= s <= 1.35 and before * 1.2 < after < before * s ** 3 * 1.1
    rigid = np.isin(seg.array, L._rigid_ids())
    assert np.array_equal(labels[rigid], seg.array[rigid]) and np.array_equal(new[rigid], ct.array[rigid])
    grown = (labels == _id("spleen")) & (seg.array != _id("spleen"))
    assert abs(float(np.median(new[grown])) - float(np.median(ct.array[seg.array == _id("spleen")]))) < 20


def test_steatosis_lowers_liver_density_only(case):
    ct, seg = case
    liver = seg.array == _id("liver")
    new, _, rec = L.diffuse_density_change(ct.array, seg.array, ct.spacing, "liver", np.random.default_rng(5))
    assert rec.finding == "hepatic steatosis" and -50 <= rec.params["delta_hu"] <= -20
    drop = ct.array[liver].mean() - new[liver].mean()
    assert 0.6 * -rec.params["delta_hu"] < drop < 1.1 * -rec.params["delta_hu"]
    assert _untouched_outside(ct.array, new, liver)


def test_ascites_is_fluid_next_to_the_liver_outside_organs(case):
    ct, seg = case
    new, labels, rec = L.insert_ascites(ct.array, seg.array, ct.spacing, "liver", np.random.default_rng(6))
    assert rec.finding == "ascites" and rec.mask.sum() > 50
    assert (seg.array[rec.mask] == 0).all() and np.array_equal(labels, seg.array)
    assert -5 < new[rec.mask].mean() < 30 < ct.array[rec.mask].std() + 30
    dist = ndimage.distance_transform_edt(seg.array != _id("liver"), sampling=ct.spacing[::-1])
    assert dist[rec.mask].max() <= rec.params["thickness_mm"] + 1e-3


def test_pleural_effusion_is_posterior_fluid_in_the_lower_lobe(case):
    ct, seg = case
    lobe = seg.array == _id("lung_lower_lobe_right")
    new, labels, rec = L.insert_pleural_effusion(ct.array, seg.array, ct.spacing, "lung_lower_lobe_right",
                                                 np.random.default_rng(7), direction=ct.direction)
    assert rec.finding == "pleural effusion"
    assert (rec.mask <= lobe).all() and -5 < new[rec.mask].mean() < 30 and ct.array[rec.mask].mean() < -400
    assert (labels[rec.mask] == 0).all()                     # the fluid is no longer lung
    y_fluid, y_lobe = np.nonzero(rec.mask)[1].mean(), np.nonzero(lobe)[1].mean()
    assert y_fluid < y_lobe  # posterior = small Y index for this direction


def test_atherosclerosis_puts_dense_plaques_on_the_aortic_wall(case):
    ct, seg = case
    aorta = seg.array == _id("aorta")
    new, _, rec = L.insert_calcification(ct.array, seg.array, ct.spacing, "aorta", np.random.default_rng(8))
    assert rec.finding == "atherosclerosis" and 3 <= len(rec.params["plaques"]) <= 10
    assert new[rec.mask].max() > 300 and (rec.mask <= aorta).all()
    wall = aorta & ~ndimage.binary_erosion(aorta)
    assert all(wall[tuple(p["center_voxel"])] for p in rec.params["plaques"])


def test_deformation_keeps_labels_aligned_with_the_ct(case):
    ct, seg = case
    rng = np.random.default_rng(9)
    # a CT that *is* its label map: after warping, both must still agree voxel by voxel
    coded = seg.array.astype(np.float32) * 10
    warped, labels, params = A.random_deformation(coded, seg.array, ct.spacing, rng, max_displacement_mm=6)
    assert 0 < params["largest_displacement_mm"] <= 6
    changed = (labels != seg.array).mean()
    assert changed > 0.005                                   # it moved something
    interior = (labels > 0) & (ndimage.minimum_filter(labels, 3) == ndimage.maximum_filter(labels, 3))
    agree = np.isclose(warped[interior], labels[interior] * 10, atol=1e-3).mean()
    assert agree > 0.999
    # a second, independent field for the labels would not agree like that
    _, other, _ = A.random_deformation(coded, seg.array, ct.spacing, np.random.default_rng(99))
    assert np.isclose(warped[interior], other[interior] * 10, atol=1e-3).mean() < agree - 0.02
    # real CT: every large organ keeps its mean density
    new, labels, _ = A.random_deformation(ct.array, seg.array, ct.spacing, np.random.default_rng(9))
    for organ in ("liver", "spleen", "urinary_bladder", "vertebrae_L3"):
        a = ct.array[seg.array == _id(organ)].mean()
        b = new[labels == _id(organ)].mean()
        assert abs(a - b) < 0.1 * abs(a) + 10, organ
    zero, same_labels, _ = A.random_deformation(ct.array, seg.array, ct.spacing, rng, max_displacement_mm=0)
    assert np.array_equal(zero, ct.array) and np.array_equal(same_labels, seg.array)


def test_simulated_contrast_brightens_vessels_most(case):
    ct, seg = case
    new, params = A.random_enhancement(ct.array, seg.array, ct.spacing, np.random.default_rng(12), phase=1.0)
    gain = {o: float(new[seg.array == _id(o)].mean() - ct.array[seg.array == _id(o)].mean())
            for o in ("aorta", "kidney_left", "liver", "gluteus_maximus_left")}
    assert params["phase"] == 1.0 and 100 * 0.8 < gain["aorta"] and gain["aorta"] > gain["liver"] > 10
    assert gain["kidney_left"] > gain["liver"] and abs(gain["gluteus_maximus_left"]) < 1
    assert set(params["offsets_hu"]) >= {"aorta", "liver", "spleen"} and "heart" not in params["offsets_hu"]
    far = ndimage.distance_transform_edt(seg.array == 0) > 4  # unlabelled, away from every organ
    assert np.abs(new[far] - ct.array[far]).max() < 0.5


def test_a_wider_simulated_contrast_reaches_further_from_the_same_draws(case):
    ct, seg = case
    _, base = A.random_enhancement(ct.array, seg.array, ct.spacing, np.random.default_rng(12), phase=1.0)
    _, same = A.random_enhancement(ct.array, seg.array, ct.spacing, np.random.default_rng(12), phase=1.0, reach=1.0)
    _, wide = A.random_enhancement(ct.array, seg.array, ct.spacing, np.random.default_rng(12), phase=1.0, reach=1.5)
    assert same == base                                     # reach 1: the benchmark as it was built
    for organ, hu in base["offsets_hu"].items():            # the same draw, further up a longer range
        assert wide["offsets_hu"][organ] >= hu
    assert wide["offsets_hu"]["kidney_left"] > base["offsets_hu"]["kidney_left"]
    assert A.largest_enhancement_hu("kidney_left", reach=1.5) == 270.0
    assert A.largest_enhancement_hu("urinary_bladder", reach=1.5) == 0.0


def test_a_washout_brings_enhanced_solid_organs_to_unenhanced_levels(case):
    ct, seg = case
    enhanced, _ = A.random_enhancement(ct.array, seg.array, ct.spacing, np.random.default_rng(12), phase=1.0)
    washed, params = A.random_washout(enhanced, seg.array, ct.spacing, np.random.default_rng(3))

    def median(array, organ):
        return float(np.median(array[seg.array == _id(organ)]))

    for organ, (low, high) in (("kidney_left", (10, 35)), ("spleen", (30, 50)), ("liver", (40, 65))):
        assert median(enhanced, organ) > high + 10                     # enhanced beyond the unenhanced range
        assert low - 1 <= median(washed, organ) <= high + 1, organ      # ... and back inside it
        assert abs(median(washed, organ) - params["levels_hu"][organ]) < 1
        spread = [np.subtract(*np.percentile(a[seg.array == _id(organ)], [90, 10])) for a in (enhanced, washed)]
        assert spread[1] == pytest.approx(params["scales"][organ] * spread[0], rel=1e-3)   # uptake taken out evenly
    assert median(washed, "aorta") == median(enhanced, "aorta")         # vessels stay enhanced
    far = ndimage.distance_transform_edt(~np.isin(seg.array, [_id(o) for o in params["offsets_hu"]])) > 4
    assert np.abs(washed[far] - enhanced[far]).max() < 0.5
    # an organ is never raised: at or below the level drawn, it is left as it is
    for seed in range(4):
        _, native = A.random_washout(ct.array, seg.array, ct.spacing, np.random.default_rng(seed))
        for organ, offset in native["offsets_hu"].items():
            assert offset == pytest.approx(min(0.0, native["levels_hu"][organ] - median(ct.array, organ)))
    assert any(v == 0 for v in native["offsets_hu"].values())


def test_noise_and_seeds(case):
    ct, seg = case
    noisy, sigma = A.add_noise(ct.array, np.random.default_rng(10), sigma_hu=8.0)
    assert abs(float((noisy - ct.array).std()) - 8.0) < 0.5
    a = L.insert_finding(ct.array, seg.array, ct.spacing, "kidney_left", "stone", np.random.default_rng(11))
    b = L.insert_finding(ct.array, seg.array, ct.spacing, "kidney_left", "stone", np.random.default_rng(11))
    assert np.array_equal(a[0], b[0]) and a[2].as_dict() == b[2].as_dict()


def test_registry_uses_finding_catalogue_names(case):
    from TotalFMLib.vocabulary.findings import find

    for finding, (_, organs) in L.INSERTIONS.items():
        f = find(finding)
        assert f.finding == finding                          # canonical name, not a synonym
        assert set(organs) <= set(f.organs), finding         # scored on the organs we insert into
    ct, seg = case
    with pytest.raises(InputError, match="cannot insert"):
        L.insert_finding(ct.array, seg.array, ct.spacing, "liver", "stone", np.random.default_rng(0))
    with pytest.raises(InputError, match="voxels"):
        L.insert_focal_lesion(ct.array, seg.array, ct.spacing, "heart", np.random.default_rng(0))
    with pytest.raises(InputError, match="one shape"):
        L.insert_focal_lesion(ct.array, seg.array[:-1], ct.spacing, "liver", np.random.default_rng(0))


def test_the_benchmark_can_ask_hypodense_lesions_for_less_contrast(case):
    from TotalFMLib.training.benchmark_data import BenchmarkConfig, hypodense_range

    ct, seg = case
    liver = float(np.median(ct.array[seg.array == _id("liver")]))   # about 50 HU above water, unenhanced
    asked = {}
    for contrast in ((20.0, 25.0), (50.0, 110.0)):
        _, _, rec = L.insert_finding(ct.array, seg.array, ct.spacing, "liver", "hypodense lesion",
                                     np.random.default_rng(4), hypodense_contrast_hu=contrast)
        asked[contrast] = -rec.params["contrast_hu"]
    assert 20.0 <= asked[(20.0, 25.0)] <= 25.0                        # a faint lesion, as asked
    assert 20.0 <= asked[(50.0, 110.0)] <= liver + 1e-3                 # no lower than water
    # the same draws either way: only the contrast differs (the rest of a benchmark's cases stay as they were)
    a = L.insert_finding(ct.array, seg.array, ct.spacing, "liver", "hypodense lesion", np.random.default_rng(4),
                         hypodense_contrast_hu=(20.0, 25.0))[2].params
    b = L.insert_finding(ct.array, seg.array, ct.spacing, "liver", "hypodense lesion",
                         np.random.default_rng(4))[2].params
    assert a["center_voxel"] == b["center_voxel"] and a["diameter_mm"] == b["diameter_mm"]
    assert BenchmarkConfig().hypodense_contrast_hu == L.FOCAL_CONTRAST_HU == (50.0, 110.0)
    assert hypodense_range("20,110") == (20.0, 110.0)
    for bad in ("10,110", "60,50", "20"):
        with pytest.raises(InputError, match="--hypodense-contrast"):
            hypodense_range(bad)
