"""The CT: read a NIfTI, NRRD or MetaImage file or a DICOM series folder as float32 Hounsfield
units, and check that it is a CT (``check_ct``).

Rules:

- 3-D, at least 2 voxels along each axis, finite values (NaN or infinite voxels are refused;
  a float NIfTI is checked on its raw data, see ``image_files.read_image``);
- CT-like intensities: on a sample of at most 2 M voxels the 1st percentile must be <= -200
  HU (air or lung is present), the 99.9th percentile >= 100 HU and their spread >= 500 HU.
  MR images, intensities already scaled to [0, 1] or z-scores, and raw stored values
  without the DICOM rescale fail this rule.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .image_files import (IMAGE_SUFFIXES, SEG_NRRD_SUFFIX, check_image_shape, existing_path, file_suffix,
                          quiet_itk, read_image)
from .label_maps import volume_name
from .volume import Volume


# CT-likeness rule (see the module docstring)
CT_LOW_PERCENTILE, CT_HIGH_PERCENTILE = 1.0, 99.9
CT_MAX_LOW_HU, CT_MIN_HIGH_HU, CT_MIN_SPREAD_HU = -200.0, 100.0, 500.0
_SAMPLE_VOXELS = 2_000_000


def load_ct(path) -> Volume:
    """CT as float32 Hounsfield units, array (Z, Y, X), geometry as SimpleITK reports it.

    ``path``: a NIfTI/NRRD/MetaImage file, a DICOM series or study folder (HU after
    RescaleSlope/Intercept; of several series the one ``dicom_series.choose_ct_series``
    prefers is read and ``meta["note"]`` says which and why; ``meta["files"]`` lists its
    files in slice order), or a ``Volume``, which is returned as it is.
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
    check_ct(ct)
    return ct


def _read_dicom_series(folder: Path):
    """The CT series of a study folder (``dicom_series.choose_ct_series``), read by SimpleITK."""
    from .dicom_series import choose_ct_series

    files = [f for f in folder.iterdir() if not f.name.startswith(".")]
    if not files:
        raise InputError(folder, "folder is empty; expected a DICOM series (or pass a CT file)")
    choice = choose_ct_series(folder)
    if choice is None:
        raise InputError(folder, f"holds no DICOM image series ({len(files)} files, none a DICOM image); "
                                 f"expected a folder of CT slices")
    series = choice.chosen
    paths = series.sorted_files()
    with quiet_itk() as sitk:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(p) for p in paths])
        reader.MetaDataDictionaryArrayUpdateOn()
        try:
            image = reader.Execute()
        except RuntimeError:
            raise InputError(folder, f"could not read the DICOM series {series.label} ({len(paths)} files): "
                                     f"unsupported or damaged pixel data") from None

        def tag(key: str) -> str:
            return reader.GetMetaData(0, key).strip() if reader.HasMetaDataKey(0, key) else ""

        meta = {"format": "DICOM", "series_uid": series.uid, "slices": len(paths),
                "modality": tag("0008|0060"), "series_description": series.description,
                "rescale_slope": tag("0028|1053") or "1", "rescale_intercept": tag("0028|1052") or "0",
                "files": [str(p) for p in paths]}
    if len(choice.usable) + len(choice.skipped) > 1:
        meta["series"] = {s.uid: len(s.files) for s in choice.usable + choice.skipped}
        meta["note"] = f"folder holds {len(meta['series'])} DICOM series; {choice.note}"
    check_image_shape(folder, image, "CT volume")
    return image, meta


def check_ct(ct: Volume) -> None:
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

