"""Loading CTs and segmentations from the real sample files, and the InputErrors for bad input.

Independent readers check the results: nibabel for NIfTI, pydicom (+ pylibjpeg-openjpeg)
for the JPEG2000 DICOM series, pynrrd for NRRD headers, slicerio writes the .seg.nrrd
files that the loader reads back.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from TotalFMLib.vocabulary import catalogue
from TotalFMLib.errors import InputError
from TotalFMLib.inputs.case import load_case, validate_case
from TotalFMLib.inputs.ct import load_ct
from TotalFMLib.inputs.segmentation import load_segmentation
from TotalFMLib.inputs.volume import Volume


# ----------------------------------------------------------------------------- helpers
def ids_of(*names: str) -> set[int]:
    return {catalogue.organ(n).label_id for n in names}


def nib_zyx(path: Path) -> np.ndarray:
    """Voxels as nibabel reads them, in SimpleITK's (Z, Y, X) index order."""
    return np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0)


def write_like(array: np.ndarray, like: Path, path: Path, **geometry) -> Path:
    """Write array with the geometry of the image file `like`, optionally overridden."""
    ref = sitk.ReadImage(str(like))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(geometry.get("spacing", ref.GetSpacing()))
    image.SetOrigin(geometry.get("origin", ref.GetOrigin()))
    image.SetDirection(geometry.get("direction", ref.GetDirection()))
    sitk.WriteImage(image, str(path))
    return path


def raises(fn, *args, words: tuple[str, ...], name: str) -> str:
    """fn(*args) raises an InputError naming `name` and containing every word; returns it."""
    with pytest.raises(InputError) as info:
        fn(*args)
    message = str(info.value)
    print(message)
    assert "\n" not in message, message
    assert name in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def ct_sm(sample) -> Volume:
    return load_ct(sample("example_ct_sm"))


@pytest.fixture(scope="module")
def seg_sm_path(sample) -> Path:
    return sample("example_seg_sm")


# ----------------------------------------------------------------------------- CT
def test_nifti_ct_and_multilabel_segmentation(sample):
    ct_path, seg_path = sample("example_ct"), sample("example_seg")
    ct = load_ct(ct_path)
    assert ct.array.dtype == np.float32 and ct.source == str(ct_path)
    np.testing.assert_array_equal(ct.array, nib_zyx(ct_path))
    np.testing.assert_allclose(ct.spacing, nib.load(str(ct_path)).header.get_zooms(), rtol=1e-6)
    assert ct.array.min() < -1000 and 1000 < ct.array.max() < 4000  # air and bone in HU

    seg = load_segmentation(seg_path, ct)
    assert seg.array.dtype == np.int16 and seg.same_grid(ct) and seg.shape == ct.shape
    raw = nib_zyx(seg_path)
    np.testing.assert_array_equal(seg.array, raw)
    present = set(np.unique(raw).tolist()) - {0}
    assert {catalogue.organ(n).label_id for n in seg.meta["organs"]} == present
    assert ids_of("liver", "spleen", "kidney_left", "kidney_right", "aorta", "pancreas",
                  "urinary_bladder") <= present
    # the liver is soft tissue, the lungs hold air
    assert 0 < np.median(ct.array[seg.array == catalogue.organ("liver").label_id]) < 200
    assert np.median(ct.array[seg.array == catalogue.organ("lung_lower_lobe_right").label_id]) < -600


def test_other_ct_formats_round_trip(tmp_path, ct_sm, sample):
    for suffix in (".mha", ".mhd", ".nrrd", ".nhdr"):
        path = write_like(ct_sm.array.astype(np.int16), sample("example_ct_sm"), tmp_path / f"ct{suffix}")
        got = load_ct(path)
        assert got.meta["format"] in ("MetaImage", "NRRD")
        np.testing.assert_array_equal(got.array, ct_sm.array)
        assert got.same_grid(ct_sm), suffix


@pytest.mark.parametrize("name", ["example_ct", "example_ct_sm", "chest_cta", "ct_chest_nrrd"])
def test_real_cts_pass_the_ct_rule(sample, name):
    ct = load_ct(sample(name))
    validate_case(ct)
    assert load_ct(ct) is ct  # a Volume is passed through


def test_dicom_series_in_hounsfield_units(sample):
    import pydicom

    folder = sample("example_ct_dicom")
    ct = load_ct(folder)
    assert ct.shape == (20, 512, 512) and ct.meta["format"] == "DICOM" and ct.meta["modality"] == "CT"
    np.testing.assert_allclose(ct.spacing, (0.9765625, 0.9765625, 2.0))
    assert ct.array.min() == -1024 and np.percentile(ct.array, 1) <= -900  # air after rescale
    # one slice decoded independently (pydicom + pylibjpeg-openjpeg) with the rescale applied
    ds = pydicom.dcmread(sorted(folder.iterdir())[3])
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    k = int(round((float(ds.ImagePositionPatient[2]) - ct.origin[2]) / ct.spacing[2]))
    np.testing.assert_array_equal(ct.array[k], hu)


def test_dicom_series_matches_its_segmentation(sample):
    """example_seg_dicom.nii.gz stores the same voxels with the Y axis flipped (origin at the
    other end, direction -Y): it is reordered onto the DICOM grid, not resampled."""
    ct = load_ct(sample("example_ct_dicom"))
    seg_path = sample("example_seg_dicom")
    raw = sitk.ReadImage(str(seg_path))
    assert raw.GetDirection()[4] == -1 and ct.direction[4] == 1
    seg = load_segmentation(seg_path, ct)
    assert seg.same_grid(ct) and "reordered" in seg.meta["note"]
    np.testing.assert_array_equal(seg.array, sitk.GetArrayFromImage(raw)[:, ::-1, :])
    liver = seg.array == catalogue.organ("liver").label_id
    assert 40 < np.median(ct.array[liver]) < 200
    # labelled voxels lie in the body; the unflipped array would put many of them in air
    in_air = np.mean(ct.array[seg.array > 0] < -500)
    in_air_unflipped = np.mean(ct.array[sitk.GetArrayFromImage(raw) > 0] < -500)
    assert in_air < 0.05 < in_air_unflipped


def test_dicom_folder_with_two_series_takes_the_longer(tmp_path, sample):
    import pydicom
    from pydicom.uid import generate_uid

    files = sorted(sample("example_ct_dicom").iterdir())
    uids = (generate_uid(), generate_uid())
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uids[0] if i < 15 else uids[1]
        ds.save_as(tmp_path / f"{i:02d}.dcm")
    ct = load_ct(tmp_path)
    assert ct.shape[0] == 15 and ct.meta["series_uid"] == uids[0]
    assert ct.meta["series"] == {uids[0]: 15, uids[1]: 5}
    assert "2 DICOM series" in ct.meta["note"]


# ----------------------------------------------------------------------------- segmentations
def test_segmentation_folder_matches_multilabel_file(sample, ct_sm, seg_sm_path):
    """The folder is TotalSegmentator's --fast (3 mm model) output for example_ct_sm and the
    multi-label file its full-resolution output, so organ outlines differ a little."""
    folder = sample("example_seg_folder")
    from_folder = load_segmentation(folder, ct_sm)
    from_file = load_segmentation(seg_sm_path, ct_sm)
    empty = {f.name[:-7] for f in folder.glob("*.nii.gz") if not nib_zyx(f).any()}
    assert set(from_folder.meta["empty"]) == empty and not set(from_folder.meta["organs"]) & empty
    assert from_folder.meta["unmatched"] == [] and from_folder.meta["overlap_voxels"] == 0
    a, b = from_folder.meta["organs"], from_file.meta["organs"]
    # organs only one of them has are tiny slivers at the edge of the scan
    assert all(min(a.get(n, 0), b.get(n, 0)) == 0 and max(a.get(n, 0), b.get(n, 0)) < 10
               for n in set(a) ^ set(b))
    for name in ("liver", "spleen", "kidney_left", "kidney_right", "stomach", "colon"):
        i = catalogue.organ(name).label_id
        x, y = from_folder.array == i, from_file.array == i
        dice = 2 * np.count_nonzero(x & y) / (np.count_nonzero(x) + np.count_nonzero(y))
        assert dice > 0.9, (name, dice)
        assert abs(a[name] - b[name]) / b[name] < 0.1


def test_segmentation_folder_with_unknown_and_unreadable_names(tmp_path, sample, ct_sm):
    folder = sample("example_seg_folder")
    for name in ("liver.nii.gz", "spleen.nii.gz", "statistics.json"):
        shutil.copy(folder / name, tmp_path / name)
    shutil.copy(folder / "kidney_left.nii.gz", tmp_path / "my_tumour.nii.gz")
    seg = load_segmentation(tmp_path, ct_sm)
    assert set(seg.meta["organs"]) == {"liver", "spleen"} and seg.meta["unmatched"] == ["my_tumour.nii.gz"]
    (tmp_path / "liver.nii.gz").unlink(), (tmp_path / "spleen.nii.gz").unlink()
    raises(load_segmentation, tmp_path, ct_sm, words=("no mask is named after a TotalSegmentator organ",
                                                      "my_tumour.nii.gz"), name=tmp_path.name)


def test_slicer_sample_seg_nrrd_has_no_totalsegmentator_organ(sample):
    """slicerio's Segmentation.seg.nrrd lies on CTChest4.nrrd's grid, but its segments (ribs,
    spine parts, whole lungs, tissue) are none of the 117 'total' classes."""
    import nrrd

    ct = load_ct(sample("ct_chest_nrrd"))
    path = sample("seg_nrrd")
    header = nrrd.read_header(str(path))
    rows = np.asarray(header["space directions"], float)
    assert header["space"] == "left-posterior-superior"
    assert tuple(header["sizes"]) == ct.shape[::-1]
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), ct.spacing, rtol=1e-6)
    np.testing.assert_allclose(header["space origin"], ct.origin, atol=1e-4)
    np.testing.assert_allclose((rows / np.linalg.norm(rows, axis=1)[:, None]).T.reshape(-1), ct.direction, atol=1e-6)
    message = raises(load_segmentation, path, ct, name="Segmentation.seg.nrrd",
                     words=("none of its 7 segments is a TotalSegmentator organ", "'right lung'", "'ribs'"))
    assert "'tissue'" in message


def write_seg_nrrd(path: Path, labels_zyx: np.ndarray, ct: Volume, segments: list[tuple[dict, np.ndarray]]):
    import slicerio

    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = np.reshape(ct.direction, (3, 3)) * np.asarray(ct.spacing)
    ijk_to_lps[:3, 3] = ct.origin
    segmentation = slicerio.create_segmentation(labels_zyx.shape[::-1], ijk_to_lps)
    for fields, mask_zyx in segments:
        slicerio.add_segment(segmentation, mask_zyx.transpose(2, 1, 0), fields)
    slicerio.write_segmentation(str(path), segmentation)
    return path


def test_seg_nrrd_with_organ_names_terminology_and_layers(tmp_path, ct_sm, seg_sm_path):
    import nrrd

    labels = nib_zyx(seg_sm_path)
    liver, spleen, kidney_l, kidney_r = (labels == i for i in (5, 1, 3, 2))
    box = np.zeros_like(liver)
    box[:, 30:70, 30:90] = True  # overlaps the liver: slicerio puts it in a second layer
    spleen_code = {"category": ["SCT", "123037004", "Anatomical Structure"],
                   "type": ["SCT", catalogue.organ("spleen").snomed_code, "Spleen"]}
    path = write_seg_nrrd(tmp_path / "organs.seg.nrrd", labels, ct_sm, [
        ({"id": "s1", "name": "Liver"}, liver),
        ({"id": "s2", "name": "kidney_left"}, kidney_l),
        ({"id": "s3", "name": "Right kidney"}, kidney_r),
        ({"id": "s4", "name": "Segment_4", "terminology": spleen_code}, spleen),
        ({"id": "s5", "name": "gallbladder"}, np.zeros_like(liver)),
        ({"id": "s6", "name": "abdomen box"}, box),
    ])
    assert nrrd.read_header(str(path))["dimension"] == 4
    seg = load_segmentation(path, ct_sm)
    assert seg.same_grid(ct_sm) and seg.meta["layers"] == 2
    assert seg.meta["unmatched"] == ["abdomen box"] and seg.meta["empty"] == ["gallbladder"]
    assert seg.meta["matched_by_terminology"] == ["Segment_4"]
    assert set(seg.meta["organs"]) == {"spleen", "kidney_right", "kidney_left", "liver"}
    for name, mask in (("liver", liver), ("spleen", spleen), ("kidney_left", kidney_l), ("kidney_right", kidney_r)):
        np.testing.assert_array_equal(seg.array == catalogue.organ(name).label_id, mask, err_msg=name)


def test_volume_inputs_and_label_table(tmp_path, ct_sm, seg_sm_path):
    raw = nib_zyx(seg_sm_path)
    as_volume = Volume(raw.astype(np.uint8), ct_sm.spacing, ct_sm.origin, ct_sm.direction, source="mine")
    seg = load_segmentation(as_volume, ct_sm)
    assert seg.array.dtype == np.int16 and seg.meta["format"] == "volume"
    np.testing.assert_array_equal(seg.array, raw)
    validate_case(ct_sm, seg)
    # a NIfTI whose own label table numbers the organs differently is mapped by name
    swapped = raw.copy()
    swapped[raw == 1], swapped[raw == 5] = 5, 1
    image = nib.load(str(seg_sm_path))
    table = ('<LabelTable><Label Key="1"><![CDATA[liver]]></Label><Label Key="5"><![CDATA[spleen]]></Label>'
             + "".join(f'<Label Key="{i}"><![CDATA[{catalogue.organ(i).name}]]></Label>'
                       for i in range(2, 118) if i != 5) + "</LabelTable>")
    header = image.header.copy()
    header.extensions.clear()
    header.extensions.append(nib.nifti1.Nifti1Extension(0, table.encode()))
    out = tmp_path / "other_numbering.nii.gz"
    nib.save(nib.Nifti1Image(swapped.transpose(2, 1, 0), image.affine, header), str(out))
    relabelled = load_segmentation(out, ct_sm)
    assert relabelled.meta["relabelled"] == {1: 5, 5: 1}
    np.testing.assert_array_equal(relabelled.array, raw)


def test_permuted_and_flipped_axes_are_reordered(tmp_path, ct_sm, seg_sm_path):
    """The same voxels stored as (Z, X, Y) with Z running downwards load as the original map."""
    labels = nib_zyx(seg_sm_path)
    ref = sitk.ReadImage(str(seg_sm_path))
    d = np.reshape(ref.GetDirection(), (3, 3))
    sx, sy, sz = ref.GetSpacing()
    top = ref.TransformIndexToPhysicalPoint((0, 0, labels.shape[0] - 1))
    stored = np.ascontiguousarray(labels.transpose(0, 2, 1)[::-1])  # axes i<->j swapped, k flipped
    path = write_like(stored, seg_sm_path, tmp_path / "permuted.nii.gz", spacing=(sy, sx, sz), origin=top,
                      direction=tuple(np.stack([d[:, 1], d[:, 0], -d[:, 2]], axis=1).reshape(-1)))
    seg = load_segmentation(path, ct_sm)
    assert "reordered" in seg.meta["note"]
    np.testing.assert_array_equal(seg.array, labels)


def test_load_case_takes_paths_or_volumes(sample, ct_sm, seg_sm_path):
    ct, seg = load_case(sample("example_ct_sm"), seg_sm_path)
    assert seg.same_grid(ct) and seg.array.dtype == np.int16
    ct2, seg2 = load_case(ct_sm, seg)
    assert ct2 is ct_sm
    np.testing.assert_array_equal(seg2.array, seg.array)
    raises(load_case, seg_sm_path, seg_sm_path, words=("do not look like CT",), name="example_seg.nii.gz")


def test_tiny_geometry_differences_are_accepted(tmp_path, ct_sm, sample, seg_sm_path):
    ref = sitk.ReadImage(str(sample("example_ct_sm")))
    path = write_like(nib_zyx(seg_sm_path), seg_sm_path, tmp_path / "almost.nii.gz",
                      origin=tuple(o + 2e-4 for o in ref.GetOrigin()),
                      spacing=tuple(s * (1 + 1e-6) for s in ref.GetSpacing()))
    assert load_segmentation(path, ct_sm).same_grid(ct_sm)


# ----------------------------------------------------------------------------- bad CTs
def test_bad_ct_files(tmp_path, sample, ct_sm):
    like = sample("example_ct_sm")
    raises(load_ct, tmp_path / "nothere.nii.gz", words=("no such file",), name="nothere.nii.gz")
    (tmp_path / "ct.txt").write_text("not an image")
    raises(load_ct, tmp_path / "ct.txt", words=("unsupported file type '.txt'", ".nii.gz"), name="ct.txt")
    dicom_file = sorted(sample("example_ct_dicom").iterdir())[0]
    raises(load_ct, dicom_file, words=("single DICOM file", "folder"), name=dicom_file.name)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(like.read_bytes()[:5000])
    raises(load_ct, truncated, words=("is truncated", "compressed data ends"), name="truncated.nii.gz")
    for suffix in (".nii", ".nrrd"):  # ITK zero-fills a short .nii; it refuses a short .nrrd
        whole = write_like(ct_sm.array, like, tmp_path / f"whole{suffix}")
        short = tmp_path / f"short{suffix}"
        short.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        raises(load_ct, short, words=("truncated",), name=short.name)
    flat = write_like(ct_sm.array[10], like, tmp_path / "slice.nii.gz", spacing=(3.0, 3.0),
                      origin=(0.0, 0.0), direction=(1.0, 0.0, 0.0, 1.0))
    raises(load_ct, flat, words=("is 2-D", "expected a 3-D CT volume"), name="slice.nii.gz")
    four = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([ct_sm.array.T] * 2, axis=-1), np.eye(4)), str(four))
    raises(load_ct, four, words=("is 4-D", "expected a 3-D CT volume"), name="four_d.nii.gz")
    raises(load_ct, sample("seg_nrrd"), words=("Slicer segmentation", "not a CT"), name="Segmentation.seg.nrrd")


def test_not_ct_like_intensities(tmp_path, sample, ct_sm):
    like = sample("example_ct_sm")
    a = ct_sm.array
    scaled = write_like(((a - a.min()) / (a.max() - a.min())).astype(np.float32), like, tmp_path / "scaled.nii.gz")
    low, high = np.percentile(sitk.GetArrayFromImage(sitk.ReadImage(str(scaled))), [1, 99.9])
    raises(load_ct, scaled, words=("do not look like CT", f"1st percentile {low:.4g}", f"99.9th percentile {high:.4g}"),
           name="scaled.nii.gz")
    no_rescale = write_like((a + 1024).clip(0).astype(np.uint16), like, tmp_path / "stored_values.nii.gz")
    raises(load_ct, no_rescale, words=("do not look like CT", "without rescale"), name="stored_values.nii.gz")
    nan = a.copy()
    nan[0, 0, 0] = np.nan
    # ITK's NIfTI reader turns NaN into 0; NRRD keeps it
    raises(load_ct, write_like(nan, like, tmp_path / "nan.nrrd"), words=("NaN",), name="nan.nrrd")


def test_bad_dicom_folders(tmp_path, sample):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    empty = tmp_path / "empty"
    empty.mkdir()
    raises(load_ct, empty, words=("folder is empty", "DICOM"), name="empty")
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"  # RT Structure Set: no pixels
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "RTSTRUCT", generate_uid()
    ds.save_as(no_images / "rtstruct.dcm", enforce_file_format=True)
    (no_images / "notes.txt").write_text("structure set only")
    raises(load_ct, no_images, words=("no DICOM image series", "2 files"), name="no_images")
    one = tmp_path / "one_slice"
    one.mkdir()
    shutil.copy(sorted(sample("example_ct_dicom").iterdir())[0], one)
    assert pydicom.dcmread(next(one.iterdir())).Modality == "CT"
    raises(load_ct, one, words=("single slice",), name="one_slice")
    mr = tmp_path / "mr_series"
    mr.mkdir()
    for f in sorted(sample("example_ct_dicom").iterdir())[:3]:
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.save_as(mr / f.name)
    raises(load_ct, mr, words=("is a MR series", "expected a CT series"), name="mr_series")


# ----------------------------------------------------------------------------- bad segmentations
def test_segmentation_geometry_mismatch(tmp_path, sample, ct_sm, seg_sm_path):
    ct = load_ct(sample("example_ct"))
    msg = raises(load_segmentation, seg_sm_path, ct, name="example_seg.nii.gz",
                 words=("does not match the CT example_ct.nii.gz", "shape (Z,Y,X) (30, 101, 122) vs CT (112, 101, 122)"))
    assert "spacing" not in msg and "origin" not in msg
    labels = nib_zyx(seg_sm_path)
    ref = sitk.ReadImage(str(seg_sm_path))
    spacing = write_like(labels, seg_sm_path, tmp_path / "spacing.nii.gz", spacing=(2.0, 2.0, 3.0))
    raises(load_segmentation, spacing, ct_sm, name="spacing.nii.gz",
           words=("spacing (2, 2, 3) vs CT (3, 3, 3) mm",))
    shifted = tuple(o + d for o, d in zip(ref.GetOrigin(), (0.0, 0.0, 1.5)))
    origin = write_like(labels, seg_sm_path, tmp_path / "origin.nii.gz", origin=shifted)
    raises(load_segmentation, origin, ct_sm, name="origin.nii.gz",
           words=("origin (" + ", ".join(f"{v:.6g}" for v in shifted) + ") vs CT",))
    c, s = np.cos(0.2), np.sin(0.2)
    rotated = write_like(labels, seg_sm_path, tmp_path / "direction.nii.gz",
                         direction=(-c, s, 0.0, -s, -c, 0.0, 0.0, 0.0, 1.0))
    raises(load_segmentation, rotated, ct_sm, name="direction.nii.gz", words=("direction (",))


def test_bad_label_values(tmp_path, sample, ct_sm, seg_sm_path):
    labels = nib_zyx(seg_sm_path)
    unknown = labels.copy()
    unknown[0, 0, :2] = (130, 200)
    raises(load_segmentation, write_like(unknown, seg_sm_path, tmp_path / "unknown.nii.gz"), ct_sm,
           name="unknown.nii.gz", words=("label ids not in the TotalSegmentator v2 'total' map: 130, 200",))
    raises(load_segmentation, sample("example_ct_sm"), ct_sm, name="example_ct_sm.nii.gz",
           words=("distinct values", "is this the CT image?"))
    probability = (labels == 5).astype(np.float32) * 0.7
    raises(load_segmentation, write_like(probability, seg_sm_path, tmp_path / "prob.nii.gz"), ct_sm,
           name="prob.nii.gz", words=("non-integer values", "0.7"))
    zeros = write_like(np.zeros_like(labels), seg_sm_path, tmp_path / "zeros.nii.gz")
    raises(load_segmentation, zeros, ct_sm, name="zeros.nii.gz", words=("holds no organ",))
    four = tmp_path / "four_d_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([labels.T] * 2, axis=-1), np.eye(4)), str(four))
    raises(load_segmentation, four, ct_sm, name="four_d_seg.nii.gz", words=("is 4-D", "label map"))
    raises(validate_case, ct_sm, Volume(labels.astype(float) / 2, ct_sm.spacing, ct_sm.origin,
                                        ct_sm.direction, source="half.nii"),
           name="half.nii", words=("non-integer",))


def test_bad_segmentation_folders(tmp_path, sample, ct_sm):
    empty = tmp_path / "empty_seg"
    empty.mkdir()
    raises(load_segmentation, empty, ct_sm, name="empty_seg", words=("folder is empty", "<structure>.nii.gz"))
    (empty / "statistics.json").write_text("{}")
    raises(load_segmentation, empty, ct_sm, name="empty_seg", words=("holds no <structure>.nii.gz masks",))
    all_empty = tmp_path / "all_empty"
    all_empty.mkdir()
    folder = sample("example_seg_folder")
    for name in ("brain.nii.gz", "skull.nii.gz"):
        shutil.copy(folder / name, all_empty / name)
    raises(load_segmentation, all_empty, ct_sm, name="all_empty", words=("all 2 organ masks are empty",))
