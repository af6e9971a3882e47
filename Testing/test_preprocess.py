"""Organ crops on the real TotalSegmentator example CT, checked against an independent,
deliberately slow reference (full-volume SimpleITK resample, one np.nonzero per organ)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from TotalFMLib.vocabulary import catalogue
from TotalFMLib.errors import Cancelled, InputError
from TotalFMLib.crops.recipe import crop_box, crop_range, resample_case, target_size, window_channels
from TotalFMLib.crops.organ_crops import organ_crops
from TotalFMLib.inputs.volume import Volume

# organs of the example case whose Y/X crops on the fine grid below hit every branch of
# the 192/448 rule: grow (gallbladder), grow shifted to the low edge (lung_upper_lobe_left)
# and to the high edge (rib_right_9), keep (liver), centre-crop (colon, costal_cartilages)
FINE_ORGANS = ["liver", "gallbladder", "lung_upper_lobe_left", "rib_right_9", "colon", "costal_cartilages"]


# ----------------------------------------------------------------- independent reference
def ref_resample(vol: Volume):
    """Both resamples written out from the recipe, without the library."""
    sp = vol.spacing
    new_sp = (max(0.6, sp[0]), max(0.6, sp[1]), max(3.0, sp[2]))
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(vol.shape[::-1], sp, new_sp)]
    return new_sp, size


def ref_resampled(ct: Volume, seg: Volume):
    new_sp, size = ref_resample(ct)
    out = []
    for vol, interp, fill, pixel in ((ct, sitk.sitkLinear, -1000.0, sitk.sitkFloat32),
                                     (seg, sitk.sitkNearestNeighbor, 0.0, sitk.sitkInt16)):
        img = sitk.Cast(sitk.GetImageFromArray(vol.array), pixel)
        img.SetSpacing(ct.spacing)
        img.SetOrigin(ct.origin)
        img.SetDirection(ct.direction)
        res = sitk.Resample(img, size, sitk.Transform(), interp, ct.origin, new_sp, ct.direction, fill, pixel)
        out.append(sitk.GetArrayFromImage(res))
    return out[0], out[1], new_sp


def ref_range(lo, hi, n):
    """The rule as the brief words it: centre = (lo + hi) // 2, start = centre - box // 2."""
    if n <= 192:
        return 0, n
    centre = (lo + hi) // 2
    if hi - lo < 192:
        start = centre - 96
        start = 0 if start < 0 else start
        start = n - 192 if start + 192 > n else start
        return start, start + 192
    if hi - lo > 448:
        return centre - 224, centre + 224
    return lo, hi


def ref_box(labels, label_id):
    z, y, x = np.nonzero(labels == label_id)
    return ((int(z.min()), int(z.max()) + 1),
            ref_range(int(y.min()), int(y.max()) + 1, labels.shape[1]),
            ref_range(int(x.min()), int(x.max()) + 1, labels.shape[2]))


def ref_windows(hu):
    chans = []
    for level, width in ((-600, 1500), (40, 400), (300, 1500)):
        lo, hi = level - width // 2, level + width // 2
        chans.append((np.clip(hu, lo, hi) - np.float32(lo)) / np.float32(hi - lo))
    return np.stack(chans).astype(np.float32)


def ref_crop(hu, labels, name, crop_size=192, frames=32):
    (z0, z1), (y0, y1), (x0, x1) = ref_box(labels, catalogue.organ(name).label_id)
    chans = ref_windows(hu[z0:z1, y0:y1, x0:x1]).transpose(0, 2, 3, 1).copy()  # (3, Y, X, Z)
    return torch.nn.functional.interpolate(torch.from_numpy(chans)[None], size=(crop_size, crop_size, frames),
                                           mode="trilinear", align_corners=False)[0]


def as_tuples(box):
    return tuple((s.start, s.stop) for s in box)


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fine_case(case):
    """The upper abdomen of the real case on a thin-slice grid (0.55 x 0.5 x 2 mm), so that
    the recipe really resamples and the in-plane size exceeds 192 and 448."""
    ct, seg = case
    spacing, out = (0.55, 0.5, 2.0), []
    for vol, interp, fill in ((ct, sitk.sitkLinear, -1000.0), (seg, sitk.sitkNearestNeighbor, 0.0)):
        img = vol.with_array(vol.array[60:]).to_sitk()
        img.SetOrigin(vol.to_sitk().TransformIndexToPhysicalPoint((0, 0, 60)))
        size = [int(round(n * s / t)) for n, s, t in zip(img.GetSize(), img.GetSpacing(), spacing)]
        res = sitk.Resample(img, size, sitk.Transform(), interp, img.GetOrigin(), spacing, img.GetDirection(),
                            fill, img.GetPixelID())
        out.append(Volume.from_sitk(res, source=vol.source))
    return out[0], out[1]


@pytest.fixture(scope="module")
def fine_crops(fine_case):
    return organ_crops(*fine_case, organs=FINE_ORGANS)


@pytest.fixture(scope="module")
def fine_reference(fine_case):
    return ref_resampled(*fine_case)


# ----------------------------------------------------------------- real data
def test_liver_box_shape_and_values_on_the_real_ct(case):
    ct, seg = case
    crops = organ_crops(ct, seg, ["liver"])
    hu, labels, new_sp = ref_resampled(ct, seg)
    assert crops.organs == ["liver"] and crops.missing == []
    assert crops.spacing == pytest.approx(new_sp)
    assert as_tuples(crops.boxes["liver"]) == ref_box(labels, 5)
    img = crops.images[0]
    assert crops.images.shape == (1, 3, 192, 192, 32) and crops.images.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0

    # which input voxels one output voxel reads (align_corners=False, no antialiasing)
    def reads(o, n_in, n_out):
        src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(np.floor(src))
        return sorted({i0, min(i0 + 1, n_in - 1)})

    (z0, z1), (y0, y1), (x0, x1) = ref_box(labels, 5)
    sub_hu, sub_lab = hu[z0:z1, y0:y1, x0:x1], labels[z0:z1, y0:y1, x0:x1]
    shape = sub_hu.shape

    def support(h, w, d):
        idx = np.ix_(reads(d, shape[0], 32), reads(h, shape[1], 192), reads(w, shape[2], 192))
        return sub_hu[idx], sub_lab[idx]

    # a corner of the crop lies in the air outside the body
    air_hu, _ = support(0, 0, 16)
    assert air_hu.max() < -900
    lung_lo, lung_hi = (air_hu.min() + 1350) / 1500, (air_hu.max() + 1350) / 1500
    assert lung_lo - 1e-6 <= float(img[0, 0, 0, 16]) <= lung_hi + 1e-6  # lung window: air ~0.23, not 0
    assert float(img[1, 0, 0, 16]) == 0.0 and float(img[2, 0, 0, 16]) == 0.0  # soft tissue, bone: 0

    # an output voxel that reads liver only: soft-tissue HU in all three windows
    h, w, d = next((h, w, d) for d in range(8, 24) for h in range(40, 150, 3) for w in range(40, 150, 3)
                   if (support(h, w, d)[1] == 5).all())
    liver_hu, _ = support(h, w, d)
    assert -50 < liver_hu.min() and liver_hu.max() < 150
    windowed = ref_windows(liver_hu).reshape(3, -1)
    for c in range(3):
        assert windowed[c].min() - 1e-6 <= float(img[c, h, w, d]) <= windowed[c].max() + 1e-6
    assert 0.8 < float(img[0, h, w, d]) <= 1.0 and 0.25 < float(img[1, h, w, d]) < 0.8
    assert 0.25 < float(img[2, h, w, d]) < 0.4  # bone window floor is -450 HU


def test_default_organs_equal_the_slow_reference(case):
    ct, seg = case
    crops = organ_crops(ct, seg)
    hu, labels, _ = ref_resampled(ct, seg)
    default = [o.name for o in catalogue.resolve(None)]
    present = [n for n in default if (labels == catalogue.organ(n).label_id).any()]
    assert crops.organs == present and len(present) > 10
    assert crops.missing == [n for n in default if n not in present] and "brain" in crops.missing
    for name in ("liver", "kidney_left", "aorta", "urinary_bladder", "lung_lower_lobe_right"):
        assert torch.equal(crops.images[crops.organs.index(name)], ref_crop(hu, labels, name)), name
        assert as_tuples(crops.boxes[name]) == ref_box(labels, catalogue.organ(name).label_id)


def test_smaller_crop_size_and_frames(case):
    ct, seg = case
    crops = organ_crops(ct, seg, ["kidneys", "spleen"], crop_size=96, frames=16)
    hu, labels, _ = ref_resampled(ct, seg)
    assert crops.organs == ["spleen", "kidney_right", "kidney_left"]
    assert crops.images.shape == (3, 3, 96, 96, 16)
    for i, name in enumerate(crops.organs):
        assert torch.equal(crops.images[i], ref_crop(hu, labels, name, 96, 16))


def test_fine_grid_boxes_hit_every_branch(fine_crops, fine_reference):
    _, labels, new_sp = fine_reference
    assert fine_crops.spacing == pytest.approx((0.6, 0.6, 3.0)) and new_sp == pytest.approx((0.6, 0.6, 3.0))
    assert labels.shape[1] > 448 and labels.shape[2] > 448
    lengths = {}
    for name in FINE_ORGANS:
        want = ref_box(labels, catalogue.organ(name).label_id)
        assert as_tuples(fine_crops.boxes[name]) == want, name
        lengths[name] = want[2][1] - want[2][0]
    assert lengths["gallbladder"] == lengths["lung_upper_lobe_left"] == lengths["rib_right_9"] == 192
    assert fine_crops.boxes["lung_upper_lobe_left"][2].start == 0
    assert fine_crops.boxes["rib_right_9"][2].stop == labels.shape[2]
    assert lengths["colon"] == lengths["costal_cartilages"] == 448
    assert 192 < lengths["liver"] < 448


def test_fine_grid_equals_the_slow_reference(fine_crops, fine_reference):
    hu, labels, _ = fine_reference
    for i, name in enumerate(fine_crops.organs):
        assert torch.equal(fine_crops.images[i], ref_crop(hu, labels, name)), name


def test_resample_case_matches_simpleitk(fine_case, fine_reference):
    ct, seg = fine_case
    r_ct, r_seg = resample_case(ct, seg)
    hu, labels, new_sp = fine_reference
    assert r_ct.array.dtype == np.float32 and np.array_equal(r_ct.array, hu)
    assert np.array_equal(r_seg.array, labels)
    assert r_ct.spacing == pytest.approx(new_sp) and r_seg.spacing == pytest.approx(new_sp)
    assert r_ct.origin == pytest.approx(ct.origin) and r_ct.direction == pytest.approx(ct.direction)
    assert r_ct.shape == (52, 505, 610) and r_seg.source == seg.source
    # the loader's voxel counts per organ are of the old grid: not carried over; the rest is
    _, r_seg = resample_case(ct, replace(seg, meta={"organs": {"liver": 1}, "note": "kept"}))
    assert r_seg.meta == {"note": "kept"}


# ----------------------------------------------------------------- the rule on synthetic boxes
@pytest.mark.parametrize("lo, hi, n, want", [
    (10, 50, 150, (0, 150)),      # image <= 192: the whole axis
    (10, 50, 192, (0, 192)),
    (300, 331, 600, (219, 411)),  # grow around the centre; odd leftover goes after the box
    (5, 40, 600, (0, 192)),       # grow, shifted in at the low edge
    (590, 600, 600, (408, 600)),  # grow, shifted in at the high edge
    (100, 400, 600, (100, 400)),  # keep
    (10, 202, 600, (10, 202)),    # exactly 192: keep
    (0, 448, 600, (0, 448)),      # exactly 448: keep
    (50, 550, 600, (76, 524)),    # centre-crop to 448
    (0, 451, 600, (1, 449)),
])
def test_crop_range_branches(lo, hi, n, want):
    assert crop_range(lo, hi, n) == want
    assert ref_range(lo, hi, n) == want  # the test's own wording of the rule agrees


@pytest.mark.parametrize("axis", [1, 2])
def test_synthetic_case_exercises_each_branch(axis):
    # a 0.6 x 0.6 x 3 mm case (resampling keeps the grid): long axis 600, short axis 150
    shape = (6, 600, 150) if axis == 1 else (6, 150, 600)
    labels = np.zeros(shape, np.int16)
    spans = {"spleen": (5, 40), "liver": (50, 550), "stomach": (100, 400), "pancreas": (590, 600),
             "gallbladder": (300, 331)}
    want = {"spleen": (0, 192), "liver": (76, 524), "stomach": (100, 400), "pancreas": (408, 600),
            "gallbladder": (219, 411)}
    for k, (name, (lo, hi)) in enumerate(spans.items()):
        idx = [slice(k, k + 2), slice(20 * k, 20 * k + 10), slice(20 * k, 20 * k + 10)]
        idx[axis] = slice(lo, hi)
        labels[tuple(idx)] = catalogue.organ(name).label_id
    hu = np.where(labels > 0, 50.0, -1000.0).astype(np.float32)
    ct = Volume(hu, spacing=(0.6, 0.6, 3.0), source="synthetic_ct")
    seg = Volume(labels, spacing=(0.6, 0.6, 3.0), source="synthetic_seg")
    crops = organ_crops(ct, seg, list(spans), crop_size=32, frames=8)
    assert crops.organs == ["spleen", "gallbladder", "liver", "stomach", "pancreas"]  # label order
    for name in crops.organs:
        box = as_tuples(crops.boxes[name])
        assert box[0] == (list(spans).index(name), list(spans).index(name) + 2)  # Z: the whole extent
        assert box[axis] == want[name], name
        assert box[3 - axis] == (0, 150), name  # short axis <= 192: all of it
        assert crop_box(tuple(slice(*b) for b in box), shape) == crops.boxes[name]  # idempotent
    assert float(crops.images.min()) >= 0 and float(crops.images.max()) <= 1


# ----------------------------------------------------------------- windows, sizes, errors
def test_window_channels_values():
    hu = np.array([-2000, -1350, -1000, -160, 40, 150, 240, 300, 1050, 3000], np.float32)
    w = window_channels(hu)
    assert w.shape == (3, 10) and w.dtype == np.float32
    np.testing.assert_allclose(w[0], np.clip((hu + 1350) / 1500, 0, 1), rtol=0, atol=1e-7)
    np.testing.assert_allclose(w[1], np.clip((hu + 160) / 400, 0, 1), rtol=0, atol=1e-7)
    np.testing.assert_allclose(w[2], np.clip((hu + 450) / 1500, 0, 1), rtol=0, atol=1e-7)
    assert w[0, 1] == 0 and w[1, 3] == 0 and w[1, 6] == 1 and w[1, 4] == 0.5 and w[2, 8] == 1
    assert np.array_equal(window_channels(hu.reshape(2, 5)), w.reshape(3, 2, 5))


def test_target_size_rounding():
    assert target_size((5, 7, 1), (0.375, 0.375, 1.0), (0.75, 0.75, 3.0)) == (2, 4, 1)  # halves to even; >= 1
    assert target_size((512, 512, 300), (0.7, 0.7, 1.0), (0.7, 0.7, 3.0)) == (512, 512, 100)


def test_missing_and_none_present(case):
    ct, seg = case
    crops = organ_crops(ct, seg, ["brain", "liver", "thyroid_gland"], crop_size=16, frames=4)
    assert crops.organs == ["liver"] and crops.missing == ["thyroid_gland", "brain"]
    with pytest.raises(InputError) as err:
        organ_crops(ct, seg, ["brain", "thyroid_gland"])
    message = str(err.value)
    assert message.startswith(f"{seg.source}: none of the requested organs")
    assert "brain" in message and "present: spleen, kidney_right" in message
    with pytest.raises(InputError, match="unknown organ"):
        organ_crops(ct, seg, ["liverr"])


def test_grid_mismatch_is_an_input_error(case):
    ct, seg = case
    moved = Volume(seg.array, spacing=(2.0, 2.0, 2.0), origin=seg.origin, direction=seg.direction, source="s.nii")
    with pytest.raises(InputError, match="^s.nii: segmentation grid"):
        organ_crops(ct, moved, ["liver"])


def test_progress_and_cancel(case):
    ct, seg = case
    calls = []
    crops = organ_crops(ct, seg, ["kidneys", "liver"], crop_size=16, frames=4,
                        progress=lambda f, msg: calls.append((f, msg)))
    assert [f for f, _ in calls] == pytest.approx([1 / 3, 2 / 3, 1.0])
    # once per organ, as each is finished (row blocks finish organs in any order)
    assert sorted(m for _, m in calls) == sorted(f"cropped {n}" for n in crops.organs)
    calls.clear()
    crops = organ_crops(ct, seg, ["kidneys", "liver", "aorta"], progress=lambda f, msg: calls.append((f, msg)))
    assert [f for f, _ in calls] == pytest.approx([1 / 4, 2 / 4, 3 / 4, 1.0])
    assert sorted(m for _, m in calls) == sorted(f"cropped {n}" for n in crops.organs)

    asked = []

    def cancel_on_third_ask():
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(Cancelled):
        organ_crops(ct, seg, ["kidneys", "liver"], crop_size=16, frames=4, cancel=cancel_on_third_ask)
    with pytest.raises(Cancelled):
        organ_crops(ct, seg, ["liver"], cancel=lambda: True)


@pytest.mark.parametrize("threads", [1, 2])
def test_in_threads_keeps_order_and_stops_when_done_raises(threads, torch_threads):
    from TotalFMLib.crops.organ_crops import _in_threads

    torch.set_num_threads(threads)
    assert _in_threads(lambda c: c * c, list(range(6))) == [0, 1, 4, 9, 16, 25]
    ran, finished = [], []

    def done(i):
        finished.append(i)
        if i == 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        _in_threads(lambda c: ran.append(c) or c, list(range(50)), done=done)
    assert finished == [0, 1]
    if threads == 1:
        assert ran == [0, 1]  # on one thread nothing after the cancel runs


def test_float_label_maps():
    labels = np.zeros((4, 50, 60), np.float32)
    labels[1:3, 10:20, 30:40] = 5
    ct = Volume(np.full(labels.shape, 40, np.float32), spacing=(1.0, 1.0, 3.0), source="c.nii")
    crops = organ_crops(ct, Volume(labels, spacing=(1.0, 1.0, 3.0)), ["liver"], crop_size=8, frames=2)
    assert as_tuples(crops.boxes["liver"]) == ((1, 3), (0, 50), (0, 60))
    want = torch.tensor([(40 + 1350) / 1500, (40 + 160) / 400, (40 + 450) / 1500]).reshape(3, 1, 1, 1)
    torch.testing.assert_close(crops.images[0], want.expand(3, 8, 8, 2), rtol=0, atol=1e-6)
    labels[0, 0, 0] = 0.5
    with pytest.raises(InputError, match="^s.nii: segmentation holds non-integer labels"):
        organ_crops(ct, Volume(labels, spacing=(1.0, 1.0, 3.0), source="s.nii"), ["liver"])


def test_label_scan_in_slabs_equals_find_objects(torch_threads):
    from scipy import ndimage

    from TotalFMLib.crops.organ_crops import _find_boxes

    labels = np.zeros((40, 360, 320), np.int16)  # > 4M voxels: scanned in Z slabs on the worker threads
    labels[3:5, 100:120, 7:9] = 5      # in one slab only
    labels[12:30, 5:6, 300:320] = 2    # across slabs
    labels[39, 359, 319] = 117         # the last voxel
    labels[20:22, 200:210, 0:1] = 5    # a second piece of label 5
    for threads in (1, 2):
        torch.set_num_threads(threads)
        assert _find_boxes(labels, 117) == ndimage.find_objects(labels, max_label=117)
    assert _find_boxes(np.zeros_like(labels), 117) == [None] * 117


def test_window_table_is_the_recipe():
    from TotalFMLib.crops.ct_windows import WINDOWS, window_range

    assert [w for w, _, _ in WINDOWS] == ["lung", "soft_tissue", "bone"]
    assert window_range("soft_tissue") == (-160, 240) and window_range("lung") == (-1350, 150)
    with pytest.raises(KeyError, match="unknown window"):
        window_range("brain")
