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

NOT_CT_MODALITIES = {"MR", "PT", "NM", "US"}  # volumetric DICOM series that are surely no CT

# CT-likeness rule (see the module docstring)
CT_LOW_PERCENTILE, CT_HIGH_PERCENTILE = 1.0, 99.9
CT_MAX_LOW_HU, CT_MIN_HIGH_HU, CT_MIN_SPREAD_HU = -200.0, 100.0, 500.0
_SAMPLE_VOXELS = 2_000_000


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
    check_ct(ct)
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

