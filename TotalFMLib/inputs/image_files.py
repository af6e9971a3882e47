"""Input files: path and suffix checks, and one image read through SimpleITK with clear
``InputError``s (unsupported type, lone DICOM file, damaged or truncated file, NaN or
infinite voxels, not 3-D, more than one value per voxel).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = {".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD",
                  ".mha": "MetaImage", ".mhd": "MetaImage"}
SEG_NRRD_SUFFIX = ".seg.nrrd"
MASK_SUFFIXES = (".nii.gz", ".nii")


def short_list(values, limit: int = 10) -> str:
    """"a, b, c and 7 more": the first ``limit`` items of a list for a message."""
    values = list(values)
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f" and {len(values) - limit} more" if len(values) > limit else "")


def file_suffix(path: Path) -> str:
    """Lower-case suffix, with ".seg.nrrd" and ".nii.gz" kept whole."""
    name = path.name.lower()
    for suffix in (SEG_NRRD_SUFFIX, ".nii.gz"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def existing_path(path) -> Path:
    """``path`` as a Path, or InputError when it is no path, does not exist or cannot be read."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(None, f"expected a file path or a Volume, got {type(path).__name__}")
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(p, "no such file or folder")
    if not os.access(p, os.R_OK):
        raise InputError(p, "cannot be read (permission denied)")
    return p


@contextmanager
def quiet_itk():
    """Keep ITK's warnings (printed straight to stderr) away from the user."""
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield sitk
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def read_image(path: Path, what: str):
    """One image file through SimpleITK, with its dimension and pixel type checked."""
    suffix = file_suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        if is_dicom_file(path):
            raise InputError(path, f"is a single DICOM file; expected the folder that holds the "
                                   f"whole series (or a {what} file)")
        raise InputError(path, f"unsupported file type {suffix or '(no extension)'!r}; "
                               f"expected a {what} as {', '.join(IMAGE_SUFFIXES)} (or a DICOM folder)")
    with quiet_itk() as sitk:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError:
            raise InputError(path, f"could not be read as a {IMAGE_SUFFIXES[suffix]} image "
                                   f"(damaged, truncated or not an image file)") from None
    if suffix in MASK_SUFFIXES:
        _check_nifti_complete(path)
        _check_nifti_finite(path)
    check_image_shape(path, image, what)
    return image


def _check_nifti_finite(path: Path) -> None:
    """ITK reads NaN and infinite NIfTI voxels as 0 without a word, so a float NIfTI's raw
    voxels are checked here (integer files cannot hold them); other formats keep them and
    the CT check refuses them."""
    import nibabel as nib

    image = nib.load(str(path))
    if image.header.get_data_dtype().kind != "f":
        return
    data = np.asanyarray(image.dataobj)
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(path, f"holds {bad} NaN or infinite voxel{'s' if bad > 1 else ''}; expected finite "
                               f"values (CT intensities in HU, or label ids)")


def _check_nifti_complete(path: Path) -> None:
    """ITK fills a truncated NIfTI with zeros without a word; compare the data size with
    the header (the gzip trailer's size field first, the full stream only if it differs)."""
    import gzip
    import zlib

    import nibabel as nib

    try:
        header = nib.load(str(path)).header
        expected = int(header["vox_offset"]) + int(np.prod(header.get_data_shape())) * int(header["bitpix"]) // 8
    except Exception:
        raise InputError(path, "could not be read as a NIfTI image (damaged header)") from None
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            if int.from_bytes(f.read(4), "little") == expected % (1 << 32):
                return
        size = 0
        try:
            with gzip.open(path, "rb") as f:
                while block := f.read(1 << 24):
                    size += len(block)
        except (EOFError, OSError, zlib.error):
            size = -1
    else:
        size = path.stat().st_size
    if size < 0:
        raise InputError(path, f"is truncated or damaged: its compressed data ends before the "
                               f"{expected} bytes its header announces")
    if size < expected:
        raise InputError(path, f"is truncated: {size} bytes where its header announces {expected}")


def is_dicom_file(path: Path) -> bool:
    """True for a file with the DICOM preamble ("DICM" at byte 128)."""
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def check_image_shape(path, image, what: str) -> None:
    """InputError unless the SimpleITK image is 3-D with one value per voxel."""
    size = tuple(image.GetSize())
    if image.GetDimension() != 3:
        raise InputError(path, f"is {image.GetDimension()}-D (size {size}); expected a 3-D {what}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"has {image.GetNumberOfComponentsPerPixel()} values per voxel "
                               f"(colour or vector image); expected a 3-D {what} with one value per voxel")
