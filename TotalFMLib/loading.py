"""Read a CT and its organ segmentation into ``Volume`` objects, and check that they fit.

``load_ct`` reads NIfTI, NRRD, MetaImage or a DICOM series folder and returns float32
Hounsfield units. ``load_segmentation`` returns an int16 map of TotalSegmentator v2
``total`` label ids on the CT's voxel grid, from a multi-label image, a TotalSegmentator
folder of per-organ masks or a 3D Slicer ``.seg.nrrd``. Every problem with the input is
raised as ``InputError("<file>: <problem>")``. The folder and ``.seg.nrrd`` readers live in
``seg_folder`` and ``seg_nrrd``; file reading in ``image_files``; integer and grid checks
shared by all readers in ``label_maps``.

Rules (checked by ``validate_case``):

- CT: 3-D, at least 2 voxels along each axis, finite values, and CT-like intensities:
  on a sample of at most 2 M voxels the 1st percentile must be <= -200 HU (air or lung
  is present), the 99.9th percentile >= 100 HU and their spread >= 500 HU. MR images,
  intensities already scaled to [0, 1] or z-scores, and raw stored values without the
  DICOM rescale fail this rule.
- Segmentation: 3-D, integer values, every id 0 or a ``total`` id, at least one organ
  voxel, and the CT's grid: same shape, spacing (relative 1e-3), direction (1e-3) and
  origin (1e-2 mm), as ``Volume.same_grid`` decides. A label map whose voxels are the
  CT's voxels stored in another axis order or with flipped axes (a DICOM CT with a NIfTI
  label map written by another tool) is reordered without resampling; anything else is
  refused, never resampled.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import catalogue
from .errors import InputError
from .image_files import (IMAGE_SUFFIXES, MASK_SUFFIXES, SEG_NRRD_SUFFIX, check_image_shape, existing_path,
                          file_suffix, quiet_itk, read_image, short_list)
from .label_maps import check_same_grid, integer_array, label_counts, onto_ct_grid, volume_name
from .seg_folder import read_mask_folder
from .seg_nrrd import is_seg_nrrd, read_seg_nrrd
from .volume import Volume

NOT_CT_MODALITIES = {"MR", "PT", "NM", "US"}  # volumetric DICOM series that are surely no CT

# CT-likeness rule (see the module docstring)
CT_LOW_PERCENTILE, CT_HIGH_PERCENTILE = 1.0, 99.9
CT_MAX_LOW_HU, CT_MIN_HIGH_HU, CT_MIN_SPREAD_HU = -200.0, 100.0, 500.0
_SAMPLE_VOXELS = 2_000_000

__all__ = ["load_ct", "load_segmentation", "load_case", "validate_case", "IMAGE_SUFFIXES"]


# ----------------------------------------------------------------------------- CT
def load_ct(path) -> Volume:
    """CT as float32 Hounsfield units, array (Z, Y, X), geometry as SimpleITK reports it.

    ``path``: a NIfTI/NRRD/MetaImage file, a DICOM series folder (HU after
    RescaleSlope/Intercept; of several series the one with most slices is taken and
    ``meta["note"]`` says so), or a ``Volume``, which is returned as it is.
    """
    if isinstance(path, Volume):
        return path
    p = existing_path(path)
    if p.is_dir():
        image, meta = _read_dicom_series(p)
    else:
        if p.name.lower().endswith(SEG_NRRD_SUFFIX):
            raise InputError(p, "is a 3D Slicer segmentation (.seg.nrrd), not a CT image")
        image = read_image(p, "CT volume")
        meta = {"format": IMAGE_SUFFIXES[file_suffix(p)]}
    ct = Volume.from_sitk(image, source=str(p))
    ct.array = ct.array.astype(np.float32, copy=False)
    ct.meta.update(meta)
    _check_ct(ct)
    return ct


def _read_dicom_series(folder: Path):
    files = [f for f in folder.iterdir() if not f.name.startswith(".")]
    if not files:
        raise InputError(folder, "folder is empty; expected a DICOM series (or pass a CT file)")
    with quiet_itk() as sitk:
        reader = sitk.ImageSeriesReader()
        series = {uid: reader.GetGDCMSeriesFileNames(str(folder), uid)
                  for uid in reader.GetGDCMSeriesIDs(str(folder))}
        if not series:
            subfolders = sum(f.is_dir() for f in files)
            hint = f"; it has {subfolders} subfolders: pass the series folder itself" if subfolders else ""
            raise InputError(folder, f"holds no DICOM image series ({len(files) - subfolders} files, "
                                     f"none a DICOM image); expected a folder of CT slices{hint}")
        uid = max(series, key=lambda s: len(series[s]))
        reader.SetFileNames(series[uid])
        reader.MetaDataDictionaryArrayUpdateOn()
        try:
            image = reader.Execute()
        except RuntimeError:
            raise InputError(folder, f"could not read the DICOM series {uid or '(no UID)'} "
                                     f"({len(series[uid])} files): unsupported or damaged pixel data") from None

        def tag(key: str) -> str:
            return reader.GetMetaData(0, key).strip() if reader.HasMetaDataKey(0, key) else ""

        meta = {"format": "DICOM", "series_uid": uid, "slices": len(series[uid]),
                "modality": tag("0008|0060"), "series_description": tag("0008|103e"),
                "rescale_slope": tag("0028|1053") or "1", "rescale_intercept": tag("0028|1052") or "0"}
    if meta["modality"].upper() in NOT_CT_MODALITIES:
        raise InputError(folder, f"is a {meta['modality']} series (DICOM Modality {meta['modality']}); "
                                 f"expected a CT series")
    if len(series) > 1:
        meta["series"] = {s: len(f) for s, f in series.items()}
        meta["note"] = (f"folder holds {len(series)} DICOM series; loaded {uid} with the most "
                        f"slices ({len(series[uid])})")
    check_image_shape(folder, image, "CT volume")
    return image, meta


def _check_ct(ct: Volume) -> None:
    where = volume_name(ct, "CT")
    a = ct.array
    if a.ndim != 3:
        raise InputError(where, f"is {a.ndim}-D (shape {a.shape}); expected a 3-D CT volume")
    if min(a.shape) < 2:
        raise InputError(where, f"has a single slice (shape Z,Y,X {a.shape}); expected a 3-D CT "
                                f"volume with several voxels along each axis")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(where, f"holds {a.dtype} values; expected CT intensities in HU")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise InputError(where, "holds NaN or infinite values; expected CT intensities in HU")
    sample = _sample(a).astype(np.float64)
    low, high = np.percentile(sample, [CT_LOW_PERCENTILE, CT_HIGH_PERCENTILE])
    if low > CT_MAX_LOW_HU or high < CT_MIN_HIGH_HU or high - low < CT_MIN_SPREAD_HU:
        raise InputError(where, (
            f"intensities do not look like CT in Hounsfield units: 1st percentile {low:.4g}, "
            f"99.9th percentile {high:.4g}; expected air near -1000 HU (1st percentile "
            f"<= {CT_MAX_LOW_HU:g}, 99.9th >= {CT_MIN_HIGH_HU:g}, spread >= {CT_MIN_SPREAD_HU:g} HU); "
            f"MR, normalised data, or DICOM values without rescale?"))


def _sample(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    step = max(1, flat.size // _SAMPLE_VOXELS)
    return flat[::step]


# ----------------------------------------------------------------------------- labels
def _check_labels(seg: Volume) -> dict[int, int]:
    """Checks the label map's values; returns {label id: voxel count} without 0."""
    where = volume_name(seg, "segmentation")
    a = seg.array
    if a.ndim != 3:
        raise InputError(where, f"is {a.ndim}-D (shape {a.shape}); expected a 3-D label map")
    a = integer_array(where, a, "label map of organ ids")
    counts = label_counts(a)
    known = {o.label_id for o in catalogue.organs()}
    unknown = sorted(set(counts) - known - {0})
    if unknown and (len(counts) > 255 or unknown[0] < 0):
        raise InputError(where, f"holds {len(counts)} distinct values from {min(counts)} to {max(counts)}, "
                                f"not TotalSegmentator 'total' label ids ({min(known)}-{max(known)}): "
                                f"is this the CT image?")
    if unknown:
        raise InputError(where, f"holds label ids not in the TotalSegmentator v2 'total' map: "
                                f"{short_list(unknown)} (known ids are {min(known)}-{max(known)})")
    counts.pop(0, None)
    if not counts:
        raise InputError(where, "holds no organ: every voxel is 0 (background); expected "
                                "TotalSegmentator 'total' label ids")
    return counts


def validate_case(ct: Volume, seg: Volume | None = None) -> None:
    """Raise InputError unless ``ct`` is a CT-like 3-D volume and ``seg`` (if given) an
    integer label map of known ``total`` ids with at least one organ, on the CT's grid."""
    _check_ct(ct)
    if seg is not None:
        _check_labels(seg)
        check_same_grid(seg, ct)


def _finish(seg: Volume, ct: Volume) -> Volume:
    """Common tail of every segmentation reader: CT grid, value checks, int16, meta."""
    seg = onto_ct_grid(seg, ct)
    counts = _check_labels(seg)
    seg.array = seg.array.astype(np.int16, copy=False)
    seg.meta["organs"] = {catalogue.organ(i).name: n for i, n in sorted(counts.items())}
    return seg


# ----------------------------------------------------------------------------- segmentation
def load_segmentation(path, ct) -> Volume:
    """int16 label map of TotalSegmentator v2 ``total`` ids on the CT's grid.

    ``path``: a multi-label image (TotalSegmentator NIfTI; its label table, when the file
    has one, maps the ids by name), a TotalSegmentator folder of ``<structure>.nii.gz``
    masks, a 3D Slicer ``.seg.nrrd`` (segments matched by name, else by SNOMED code), or
    a ``Volume``. ``ct``: the CT ``Volume`` (or its path). ``meta`` lists what was not
    used: ``unmatched`` names, ``empty`` organs; ``meta["organs"]`` = {organ: voxels}.
    """
    return _load_segmentation(path, _checked_ct(ct))


def load_case(ct, seg) -> tuple[Volume, Volume]:
    """(CT, label map) from paths or Volumes, both checked; the label map on the CT's grid."""
    ct = _checked_ct(ct)
    return ct, _load_segmentation(seg, ct)


def _checked_ct(ct) -> Volume:
    """A CT Volume checked, or a CT path loaded (and so checked)."""
    if isinstance(ct, Volume):
        _check_ct(ct)
        return ct
    return load_ct(ct)


def _load_segmentation(path, ct: Volume) -> Volume:
    if isinstance(path, Volume):
        seg = path.with_array(path.array)
        seg.meta.setdefault("format", "volume")
        return _finish(seg, ct)
    p = existing_path(path)
    if p.is_dir():
        return _finish(read_mask_folder(p, ct), ct)
    suffix = file_suffix(p)
    if suffix == SEG_NRRD_SUFFIX or (suffix == ".nrrd" and is_seg_nrrd(p)):
        return _finish(read_seg_nrrd(p), ct)
    image = read_image(p, "label map")
    seg = Volume.from_sitk(image, source=str(p))
    seg.meta["format"] = IMAGE_SUFFIXES[suffix]
    if suffix in MASK_SUFFIXES:
        _relabel_by_table(seg, p)
    return _finish(seg, ct)


def _label_table(path: Path) -> dict[int, str] | None:
    """The label names TotalSegmentator stores in a NIfTI header extension, if any."""
    import nibabel as nib

    try:
        extensions = nib.load(str(path)).header.extensions
    except Exception:  # nibabel cannot parse it: SimpleITK's reading already succeeded
        return None
    pattern = re.compile(r'<Label\s+Key="(-?\d+)"[^>]*>\s*(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?\s*</Label>', re.S)
    for ext in extensions:
        content = ext.get_content()
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        table = {int(k): name.strip() for k, name in pattern.findall(text)}
        if table:
            return table
    return None


def _relabel_by_table(seg: Volume, path: Path) -> None:
    """Map ids to ``total`` ids by the file's own label names (a file from another task or
    TotalSegmentator version uses other ids); ids whose name is no organ are dropped."""
    table = _label_table(path)
    if not table:
        return
    a = integer_array(str(path), seg.array, "label map of organ ids")
    present = [i for i in label_counts(a) if i in table and i != 0]
    mapping, unmatched = {}, []
    for i in present:
        organ = catalogue.match_segment_name(table[i])
        mapping[i] = organ.label_id if organ else 0
        if organ is None:
            unmatched.append(table[i])
    if unmatched:
        seg.meta["unmatched"] = unmatched
    if present and all(v == 0 for v in mapping.values()):
        raise InputError(path, f"none of its labels is a TotalSegmentator organ: {short_list(unmatched)}"
                               f"; expected 'total' structures such as liver or kidney_left")
    if any(k != v for k, v in mapping.items()) and a.min() >= 0:
        lut = np.arange(int(a.max()) + 1, dtype=np.int64)
        lut[list(mapping)] = list(mapping.values())
        seg.array = lut[a]
        seg.meta["relabelled"] = {old: new for old, new in mapping.items() if old != new}
