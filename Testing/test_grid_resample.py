"""Region resampling (grid_resample) against SimpleITK's whole-volume Resample on real CTs.

The promise is bit-equality (a stronger form of the documented tolerance, max |diff| <=
1e-3 HU): every resampled HU value, every label and every organ box equal SimpleITK's.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from TotalFMLib.crops.grid_resample import GridMap
from TotalFMLib.inputs.ct import load_ct
from TotalFMLib.inputs.segmentation import load_segmentation
from TotalFMLib.crops.organ_crops import organ_crops
from TotalFMLib.crops.recipe import resample_case, target_size, target_spacing
from TotalFMLib.inputs.volume import Volume

TOLERANCE_HU = 1e-3  # the documented tolerance; the tests below find exact equality


def grid_of(ct: Volume) -> GridMap:
    spacing = target_spacing(ct.spacing)
    return GridMap.probe(ct.spacing, ct.origin, ct.direction, ct.shape, spacing,
                         target_size(ct.shape[::-1], ct.spacing, spacing))


def assert_matches_simpleitk(ct: Volume, seg: Volume, regions=()):
    grid = grid_of(ct)
    assert grid is not None
    want_hu, want_labels = (v.array for v in resample_case(ct, seg))
    hu = grid.linear(ct.array)
    assert hu.dtype == np.float32 and hu.shape == want_hu.shape
    assert float(np.abs(hu - want_hu).max()) <= TOLERANCE_HU
    assert np.array_equal(hu, want_hu)
    assert np.array_equal(grid.nearest(seg.array), want_labels)
    for region in regions:
        assert np.array_equal(grid.linear(ct.array, region), want_hu[region]), region
        assert np.array_equal(grid.linear(ct.array, region, copy=False), want_hu[region]), region
    return grid


def resampled_case(case, spacing, first_slice=0):
    """The real case resampled by SimpleITK onto another grid (so the recipe must interpolate)."""
    out = []
    for vol, interp, fill in ((case[0], sitk.sitkLinear, -1000.0), (case[1], sitk.sitkNearestNeighbor, 0.0)):
        img = vol.with_array(vol.array[first_slice:]).to_sitk()
        img.SetOrigin(vol.to_sitk().TransformIndexToPhysicalPoint((0, 0, first_slice)))
        size = [int(round(n * s / t)) for n, s, t in zip(img.GetSize(), img.GetSpacing(), spacing)]
        res = sitk.Resample(img, size, sitk.Transform(), interp, img.GetOrigin(), spacing, img.GetDirection(),
                            fill, img.GetPixelID())
        out.append(Volume.from_sitk(res, source=vol.source))
    return out[0], out[1]


def test_identity_grid_is_the_volume_itself(case):
    ct, seg = case  # 3 mm: the recipe keeps the grid
    grid = assert_matches_simpleitk(*case)
    assert all(not a.frac.any() for a in grid.axes)
    assert np.shares_memory(grid.nearest(seg.array), seg.array)  # a view, no copy


def test_interpolating_every_axis_with_ties(case):
    # 0.55 x 0.5 x 2 mm -> 0.6 x 0.6 x 3 mm: real weights on all axes, z positions k * 1.5 are
    # nearest-neighbour ties that ITK's own rounding decides
    ct, seg = resampled_case(case, (0.55, 0.5, 2.0), first_slice=60)
    z, y, x = ct.shape
    grid = assert_matches_simpleitk(ct, seg, regions=[
        (slice(3, 20), slice(100, 301), slice(7, 450)), (slice(0, 1), slice(0, 1), slice(0, 1))])
    assert all(a.frac.any() for a in grid.axes)
    assert np.any(grid.axes[0].frac == 0.5)


def test_integer_ratio_with_rounding_noise(case):
    # an in-plane spacing the recipe keeps but that is no binary fraction (0.715 mm): ITK's
    # positions are k plus or minus ~1e-16, the weights are noise; zeros and tiny values take
    # the exact float64 path
    ct, seg = case
    array = ct.array.copy()
    array[40:60, 50, 60:70] = 0.0
    array[40:60, 51, 60:70] = 1e-12
    array[40:60, 52, 60:70] = -3e-7
    thin = Volume(array, spacing=(0.715, 0.715, 1.5), origin=(ct.origin[0], ct.origin[1], ct.origin[2] + 0.1),
                  direction=ct.direction, source="thin")
    thin_seg = Volume(seg.array, spacing=thin.spacing, origin=thin.origin, direction=thin.direction)
    grid = assert_matches_simpleitk(thin, thin_seg, regions=[(slice(20, 31), slice(40, 60), slice(55, 75))])
    noise = [int(np.sum(((a.frac > 0) & (a.frac < 1e-9)) | (a.frac > 1 - 1e-9))) for a in grid.axes]
    assert sum(noise) > 20, noise


def test_real_dicom_series(sample):
    ct = load_ct(sample("example_ct_dicom"))  # 0.98 x 0.98 x 2 mm, 512 x 512
    seg = load_segmentation(sample("example_seg_dicom"), ct)
    assert_matches_simpleitk(ct, seg, regions=[(slice(2, 9), slice(100, 400), slice(50, 300))])


def test_oblique_direction_falls_back_to_simpleitk(case):
    ct, seg = case
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    tilted = Volume(ct.array, spacing=(0.5, 0.5, 2.0), origin=ct.origin, direction=direction, source="ct")
    tilted_seg = Volume(seg.array, spacing=tilted.spacing, origin=ct.origin, direction=direction, source="seg")
    assert grid_of(tilted) is None
    crops = organ_crops(tilted, tilted_seg, ["liver"], crop_size=32, frames=8)
    hu, labels = (v.array for v in resample_case(tilted, tilted_seg))
    z, y, x = np.nonzero(labels == 5)
    assert crops.boxes["liver"][0] == slice(int(z.min()), int(z.max()) + 1)
    assert crops.images.shape == (1, 3, 32, 32, 8)


def test_organ_crops_on_thin_slices_equal_the_whole_volume_path(case):
    """The crops built from regions equal crops cut from SimpleITK's whole resampled volume."""
    from TotalFMLib.crops.recipe import crop_box, crop_tensor

    ct, seg = resampled_case(case, (0.8, 0.8, 1.25), first_slice=70)
    crops = organ_crops(ct, seg, ["liver", "kidneys", "spleen", "aorta"], crop_size=64, frames=16)
    hu, labels = (v.array for v in resample_case(ct, seg))
    from scipy import ndimage

    boxes = ndimage.find_objects(labels, max_label=117)
    from TotalFMLib.vocabulary import catalogue

    for i, name in enumerate(crops.organs):
        box = crop_box(boxes[catalogue.organ(name).label_id - 1], labels.shape)
        assert crops.boxes[name] == box, name
        assert torch.equal(crops.images[i], crop_tensor(hu[box], 64, 16)), name


def test_linear_view_only_where_resampling_picks_voxels(case):
    ct, seg = case
    # 1 mm slices -> 3 mm: every third slice, nothing interpolated
    thin = Volume(np.repeat(ct.array, 3, axis=0), spacing=(ct.spacing[0], ct.spacing[1], 1.0), origin=ct.origin,
                  direction=ct.direction, source="thin")
    thin_seg = Volume(np.repeat(seg.array, 3, axis=0), spacing=thin.spacing, origin=thin.origin,
                      direction=thin.direction)
    grid = assert_matches_simpleitk(thin, thin_seg)
    view = grid.linear_view(thin.array)
    assert view is not None and np.shares_memory(view, thin.array)
    assert np.array_equal(view, grid.linear(thin.array))
    assert grid.linear_view(thin.array.astype(np.int16)) is None  # a cast is no view
    moved, moved_seg = resampled_case(case, (0.55, 0.5, 2.0), first_slice=60)
    assert grid_of(moved).linear_view(moved.array) is None  # interpolates


def test_integer_ct_is_cast_only_where_read(case):
    ct, seg = resampled_case(case, (0.55, 0.5, 2.0), first_slice=60)
    grid = grid_of(ct)
    as_int = np.rint(ct.array).astype(np.int16)
    region = (slice(3, 20), slice(100, 301), slice(7, 450))
    want = grid.linear(as_int.astype(np.float32), region)
    assert np.array_equal(grid.linear(as_int, region), want)
    assert np.array_equal(grid.linear(as_int, region, copy=False), want)
