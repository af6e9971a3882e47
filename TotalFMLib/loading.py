"""Read a CT and its organ segmentation into ``Volume`` objects, and check that they fit.

``load_ct`` reads NIfTI, NRRD, MetaImage or a DICOM series folder and returns float32
Hounsfield units. ``load_segmentation`` returns an int16 map of TotalSegmentator v2
``total`` label ids on the CT's voxel grid, from a multi-label image, a TotalSegmentator
folder of per-organ masks or a 3D Slicer ``.seg.nrrd``. Every problem with the input is
raised as ``InputError("<file>: <problem>")``.

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

import os
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import catalogue
from .errors import InputError
from .terminology import organ_from_terminology
from .volume import Volume

IMAGE_SUFFIXES = {".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD",
                  ".mha": "MetaImage", ".mhd": "MetaImage"}
SEG_NRRD_SUFFIX = ".seg.nrrd"
MASK_SUFFIXES = (".nii.gz", ".nii")
NOT_CT_MODALITIES = {"MR", "PT", "NM", "US"}  # volumetric DICOM series that are surely no CT

# CT-likeness rule (see the module docstring)
CT_LOW_PERCENTILE, CT_HIGH_PERCENTILE = 1.0, 99.9
CT_MAX_LOW_HU, CT_MIN_HIGH_HU, CT_MIN_SPREAD_HU = -200.0, 100.0, 500.0
_SAMPLE_VOXELS = 2_000_000

__all__ = ["load_ct", "load_segmentation", "load_case", "validate_case", "IMAGE_SUFFIXES"]


# ----------------------------------------------------------------------------- helpers
def _name(vol: Volume, what: str) -> str:
    return vol.source or f"<{what} in memory>"


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _list(values, limit: int = 10) -> str:
    values = list(values)
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (SEG_NRRD_SUFFIX, ".nii.gz"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _existing(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(None, f"expected a file path or a Volume, got {type(path).__name__}")
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(p, "no such file or folder")
    if not os.access(p, os.R_OK):
        raise InputError(p, "cannot be read (permission denied)")
    return p


@contextmanager
def _quiet_itk():
    """Keep ITK's warnings (printed straight to stderr) away from the user."""
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield sitk
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def _read_image(path: Path, what: str):
    """One image file through SimpleITK, with its dimension and pixel type checked."""
    suffix = _suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        if _is_dicom_file(path):
            raise InputError(path, f"is a single DICOM file; expected the folder that holds the "
                                   f"whole series (or a {what} file)")
        raise InputError(path, f"unsupported file type {suffix or '(no extension)'!r}; "
                               f"expected a {what} as {', '.join(IMAGE_SUFFIXES)} (or a DICOM folder)")
    with _quiet_itk() as sitk:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError:
            raise InputError(path, f"could not be read as a {IMAGE_SUFFIXES[suffix]} image "
                                   f"(damaged, truncated or not an image file)") from None
    if suffix in MASK_SUFFIXES:
        _check_nifti_complete(path)
    _check_image_shape(path, image, what)
    return image


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


def _is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def _check_image_shape(path, image, what: str) -> None:
    size = tuple(image.GetSize())
    if image.GetDimension() != 3:
        raise InputError(path, f"is {image.GetDimension()}-D (size {size}); expected a 3-D {what}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"has {image.GetNumberOfComponentsPerPixel()} values per voxel "
                               f"(colour or vector image); expected a 3-D {what} with one value per voxel")


def _sample(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    step = max(1, flat.size // _SAMPLE_VOXELS)
    return flat[::step]


# ----------------------------------------------------------------------------- CT
def load_ct(path) -> Volume:
    """CT as float32 Hounsfield units, array (Z, Y, X), geometry as SimpleITK reports it.

    ``path``: a NIfTI/NRRD/MetaImage file, a DICOM series folder (HU after
    RescaleSlope/Intercept; of several series the one with most slices is taken and
    ``meta["note"]`` says so), or a ``Volume``, which is returned as it is.
    """
    if isinstance(path, Volume):
        return path
    p = _existing(path)
    if p.is_dir():
        image, meta = _read_dicom_series(p)
    else:
        if p.name.lower().endswith(SEG_NRRD_SUFFIX):
            raise InputError(p, "is a 3D Slicer segmentation (.seg.nrrd), not a CT image")
        image = _read_image(p, "CT volume")
        meta = {"format": IMAGE_SUFFIXES[_suffix(p)]}
    ct = Volume.from_sitk(image, source=str(p))
    ct.array = ct.array.astype(np.float32, copy=False)
    ct.meta.update(meta)
    _check_ct(ct)
    return ct


def _read_dicom_series(folder: Path):
    files = [f for f in folder.iterdir() if not f.name.startswith(".")]
    if not files:
        raise InputError(folder, "folder is empty; expected a DICOM series (or pass a CT file)")
    with _quiet_itk() as sitk:
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
    _check_image_shape(folder, image, "CT volume")
    return image, meta


def _check_ct(ct: Volume) -> None:
    where = _name(ct, "CT")
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


# ----------------------------------------------------------------------------- geometry
def _grid_differences(seg: Volume, ct: Volume, tol: float = 1e-3) -> list[str]:
    diffs = []
    if seg.shape != ct.shape:
        diffs.append(f"shape (Z,Y,X) {seg.shape} vs CT {ct.shape}")
    if not np.allclose(seg.spacing, ct.spacing, atol=tol, rtol=tol):
        diffs.append(f"spacing {_fmt(seg.spacing)} vs CT {_fmt(ct.spacing)} mm")
    if not np.allclose(seg.origin, ct.origin, atol=max(tol, 1e-2)):
        diffs.append(f"origin {_fmt(seg.origin)} vs CT {_fmt(ct.origin)} mm")
    if not np.allclose(seg.direction, ct.direction, atol=tol):
        diffs.append(f"direction {_fmt(seg.direction)} vs CT {_fmt(ct.direction)}")
    return diffs


def _reordered_onto(seg: Volume, ct: Volume) -> np.ndarray | None:
    """seg's array in the CT's axis order when both grids hold the same voxel centres
    (axes permuted and/or flipped), else None."""
    m_seg = np.reshape(seg.direction, (3, 3)) * np.asarray(seg.spacing)  # columns: index steps
    m_ct = np.reshape(ct.direction, (3, 3)) * np.asarray(ct.spacing)
    try:
        steps = np.linalg.solve(m_ct, m_seg)  # seg index step -> CT index step, (x,y,z)
        offset = np.linalg.solve(m_ct, np.subtract(seg.origin, ct.origin))
    except np.linalg.LinAlgError:
        return None
    perm = np.rint(steps)
    if (np.abs(steps - perm).max() > 1e-3 or not (np.abs(perm).sum(0) == 1).all()
            or not (np.abs(perm).sum(1) == 1).all() or np.abs(offset - np.rint(offset)).max() > 1e-2):
        return None
    xyz = seg.array.transpose(2, 1, 0)
    src_axis = [int(np.flatnonzero(perm[i])[0]) for i in range(3)]
    xyz = xyz.transpose(src_axis)
    start = np.rint(offset).astype(int)
    for i, j in enumerate(src_axis):
        if perm[i, j] < 0:
            xyz = np.flip(xyz, axis=i)
            start[i] -= seg.array.shape[2 - j] - 1
    if start.any() or xyz.shape[::-1] != ct.shape:
        return None
    return np.ascontiguousarray(xyz.transpose(2, 1, 0))


def _onto_ct_grid(seg: Volume, ct: Volume) -> Volume:
    """The segmentation on exactly the CT's grid, or InputError naming what differs."""
    if seg.same_grid(ct):
        array = seg.array
    else:
        array = _reordered_onto(seg, ct)
        if array is None:
            raise InputError(_name(seg, "segmentation"), (
                f"segmentation grid does not match the CT {Path(_name(ct, 'CT')).name}: "
                + "; ".join(_grid_differences(seg, ct) or ["voxel positions differ"])
                + "; expected the label map made from this CT"))
        seg.meta["note"] = "axes reordered/flipped onto the CT grid (same voxels, other storage order)"
    return Volume(array, tuple(ct.spacing), tuple(ct.origin), tuple(ct.direction),
                  source=seg.source, meta=dict(seg.meta))


# ----------------------------------------------------------------------------- labels
def _integer_array(where: str, a: np.ndarray, what: str) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(where, f"holds {a.dtype} values; expected an integer {what}")
    finite = np.isfinite(a)
    fractional = a[finite & (a != np.rint(np.where(finite, a, 0)))]
    if not finite.all() or fractional.size:
        example = _list(np.unique(fractional)[:3].round(4)) if fractional.size else "NaN"
        raise InputError(where, f"holds non-integer values (e.g. {example}); expected an integer "
                                f"{what} (a probability map or a CT image?)")
    return a.astype(np.int64)


def _label_counts(a: np.ndarray) -> dict[int, int]:
    if a.size and a.min() >= 0 and a.max() < 1 << 20:
        counts = np.bincount(a.reshape(-1).astype(np.int64, copy=False))
        ids = np.flatnonzero(counts)
        return {int(i): int(counts[i]) for i in ids}
    ids, counts = np.unique(a, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts)}


def _check_labels(seg: Volume) -> dict[int, int]:
    """Checks the label map's values; returns {label id: voxel count} without 0."""
    where = _name(seg, "segmentation")
    a = seg.array
    if a.ndim != 3:
        raise InputError(where, f"is {a.ndim}-D (shape {a.shape}); expected a 3-D label map")
    a = _integer_array(where, a, "label map of organ ids")
    counts = _label_counts(a)
    known = {o.label_id for o in catalogue.organs()}
    unknown = sorted(set(counts) - known - {0})
    if unknown and (len(counts) > 255 or unknown[0] < 0):
        raise InputError(where, f"holds {len(counts)} distinct values from {min(counts)} to {max(counts)}, "
                                f"not TotalSegmentator 'total' label ids ({min(known)}-{max(known)}): "
                                f"is this the CT image?")
    if unknown:
        raise InputError(where, f"holds label ids not in the TotalSegmentator v2 'total' map: "
                                f"{_list(unknown)} (known ids are {min(known)}-{max(known)})")
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
        if not seg.same_grid(ct):
            raise InputError(_name(seg, "segmentation"), (
                f"segmentation grid does not match the CT {Path(_name(ct, 'CT')).name}: "
                + "; ".join(_grid_differences(seg, ct) or ["voxel positions differ"])))


def _finish(seg: Volume, ct: Volume) -> Volume:
    """Common tail of every segmentation reader: CT grid, value checks, int16, meta."""
    seg = _onto_ct_grid(seg, ct)
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
    if isinstance(ct, Volume):
        _check_ct(ct)
    else:
        ct = load_ct(ct)
    return _load_segmentation(path, ct)


def load_case(ct, seg) -> tuple[Volume, Volume]:
    """(CT, label map) from paths or Volumes, both checked; the label map on the CT's grid."""
    if isinstance(ct, Volume):
        _check_ct(ct)
    else:
        ct = load_ct(ct)
    return ct, _load_segmentation(seg, ct)


def _load_segmentation(path, ct: Volume) -> Volume:
    if isinstance(path, Volume):
        seg = path.with_array(path.array)
        seg.meta.setdefault("format", "volume")
        return _finish(seg, ct)
    p = _existing(path)
    if p.is_dir():
        return _finish(_read_mask_folder(p, ct), ct)
    suffix = _suffix(p)
    if suffix == SEG_NRRD_SUFFIX or (suffix == ".nrrd" and _is_seg_nrrd(p)):
        return _finish(_read_seg_nrrd(p), ct)
    image = _read_image(p, "label map")
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
    a = _integer_array(str(path), seg.array, "label map of organ ids")
    present = [i for i in _label_counts(a) if i in table and i != 0]
    mapping, unmatched = {}, []
    for i in present:
        organ = catalogue.match_segment_name(table[i])
        mapping[i] = organ.label_id if organ else 0
        if organ is None:
            unmatched.append(table[i])
    if unmatched:
        seg.meta["unmatched"] = unmatched
    if present and all(v == 0 for v in mapping.values()):
        raise InputError(path, f"none of its labels is a TotalSegmentator organ: {_list(unmatched)}"
                               f"; expected 'total' structures such as liver or kidney_left")
    if any(k != v for k, v in mapping.items()) and a.min() >= 0:
        lut = np.arange(int(a.max()) + 1, dtype=np.int64)
        lut[list(mapping)] = list(mapping.values())
        seg.array = lut[a]
        seg.meta["relabelled"] = {old: new for old, new in mapping.items() if old != new}


def _read_mask_folder(folder: Path, ct: Volume) -> Volume:
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    masks = [f for f in files if f.name.lower().endswith(MASK_SUFFIXES)]
    if not files:
        raise InputError(folder, "folder is empty; expected a TotalSegmentator output folder of "
                                 "<structure>.nii.gz masks")
    if not masks:
        raise InputError(folder, f"holds no <structure>.nii.gz masks ({len(files)} other files); "
                                 f"expected a TotalSegmentator output folder")
    known, unmatched = [], []
    for f in masks:
        stem = re.sub(r"\.nii(\.gz)?$", "", f.name, flags=re.I)
        organ = catalogue.match_segment_name(stem)
        (known.append((organ, f)) if organ else unmatched.append(f.name))
    if not known:
        raise InputError(folder, f"no mask is named after a TotalSegmentator organ "
                                 f"({_list(unmatched, 5)}); expected files such as liver.nii.gz")
    labels = np.zeros(ct.shape, np.int16)
    empty, overlap = [], 0
    for organ, f in sorted(known, key=lambda k: k[0].label_id):
        image = _read_image(f, "organ mask")
        mask = Volume.from_sitk(image, source=str(f))
        mask.array = _integer_array(str(f), mask.array, "binary organ mask") != 0
        inside = _onto_ct_grid(mask, ct).array
        if not inside.any():
            empty.append(organ.name)
            continue
        overlap += int(np.count_nonzero(labels[inside]))
        labels[inside] = organ.label_id
    meta = {"format": "TotalSegmentator folder", "empty": empty, "unmatched": unmatched,
            "overlap_voxels": overlap}
    if len(empty) == len(known):
        raise InputError(folder, f"holds no organ: all {len(known)} organ masks are empty")
    return Volume(labels, tuple(ct.spacing), tuple(ct.origin), tuple(ct.direction),
                  source=str(folder), meta=meta)


# ----------------------------------------------------------------------------- .seg.nrrd
def _is_seg_nrrd(path: Path) -> bool:
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:
        return False
    return any(k.startswith("Segment0_") for k in header)


def _segments(header: dict) -> list[dict]:
    segments, i = [], 0
    while f"Segment{i}_ID" in header or f"Segment{i}_Name" in header:
        get = lambda key, default="": str(header.get(f"Segment{i}_{key}", default)).strip()  # noqa: E731
        extent = [int(v) for v in get("Extent").split()] if get("Extent") else []
        segments.append({
            "index": i, "name": get("Name") or get("ID"), "label": int(get("LabelValue", 1) or 1),
            "layer": int(get("Layer", -1) or 0), "tags": get("Tags"),
            "empty": len(extent) == 6 and any(extent[k + 1] < extent[k] for k in (0, 2, 4)),
        })
        i += 1
    return segments


def _read_seg_nrrd(path: Path) -> Volume:
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:
        raise InputError(path, "could not be read as a NRRD file (damaged or not NRRD)") from None
    segments = _segments(header)
    if not segments:
        raise InputError(path, "has no Segment0_* fields; expected a 3D Slicer segmentation")
    matched, unmatched = [], []
    for s in segments:
        organ = catalogue.match_segment_name(s["name"])
        by_code = organ is None
        organ = organ or organ_from_terminology(s["tags"])
        if organ is None:
            unmatched.append(s["name"])
        else:
            matched.append((s, organ, by_code))
    if not matched:
        raise InputError(path, (
            f"none of its {len(segments)} segments is a TotalSegmentator organ: "
            f"{_list(repr(n) for n in unmatched)}; expected segment names (or SNOMED terminology) "
            f"of 'total' structures such as 'liver', 'kidney_left', 'Left kidney'"))
    try:
        data, header = nrrd.read(str(path), index_order="C")
    except Exception:
        raise InputError(path, "could not read the segmentation voxels (damaged file)") from None
    if "space directions" not in header:
        raise InputError(path, "has no 'space directions' field; expected a segmentation with its geometry")
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * data.ndim)]
    domain = [i for i, k in enumerate(kinds) if k in ("domain", "space")]
    if len(domain) != 3 or data.ndim not in (3, 4):
        raise InputError(path, f"has {data.ndim} axes with kinds {kinds}; expected 3 spatial axes "
                               f"and optionally one layer axis")
    rows = np.asarray(header.get("space directions"), dtype=float)[domain]
    space = str(header.get("space", "left-posterior-superior")).lower()
    origin = np.asarray(header.get("space origin", [0.0, 0.0, 0.0]), dtype=float)
    if space in ("right-anterior-superior", "ras"):
        rows[:, :2] *= -1
        origin[:2] *= -1
    spacing = np.linalg.norm(rows, axis=1)
    direction = (rows / spacing[:, None]).T  # column j: direction of axis j
    if data.ndim == 3:
        layers = data[None]
    else:  # C index order reverses the file's axes; put the layer axis first
        layer_axis = next(i for i in range(4) if i not in domain)
        layers = np.moveaxis(data, 3 - layer_axis, 0)
    labels = np.zeros(layers.shape[1:], np.int16)
    overlap, empty = 0, []
    for s, organ, _ in matched:
        # files without Segment{i}_Layer (before Slicer 4.11) keep segment i in layer i
        layer = s["layer"] if s["layer"] >= 0 else (s["index"] if len(layers) > 1 else 0)
        if layer >= len(layers):
            raise InputError(path, f"segment {s['name']!r} is in layer {layer} but the file has {len(layers)}")
        mask = layers[layer] == s["label"]
        if s["empty"] or not mask.any():
            empty.append(s["name"])
            continue
        before = labels[mask]
        overlap += int(np.count_nonzero((before != 0) & (before != organ.label_id)))
        labels[mask] = organ.label_id
    meta = {"format": "Slicer seg.nrrd", "layers": len(layers), "unmatched": unmatched, "empty": empty,
            "segments": {s["name"]: o.name for s, o, _ in matched},
            "matched_by_terminology": [s["name"] for s, _, by_code in matched if by_code],
            "overlap_voxels": overlap}
    return Volume(labels, tuple(spacing), tuple(origin), tuple(direction.reshape(-1)),
                  source=str(path), meta=meta)
