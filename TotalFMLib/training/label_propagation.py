"""Organ labels for an unlabelled CT, carried over from a labelled patient's by registration
(SimpleITK), and the measure of how good such labels are: the Dice of labels carried from one
labelled patient onto another against that patient's own.

The registration has three stages, all on a coarse isotropic grid (``RegistrationConfig.grid_mm``):

1. **Height.** Two CTs of different patients rarely cover the same stretch of the body (an
   abdomen-pelvis scan against a neck-to-L3 one). Each slice is summarised by four fractions
   (lung air, bone, fat, and the body's area against its largest), and the moving CT's profile
   is slid along the fixed one's; the shift with the smallest mean squared difference over an
   overlap of at least ``min_overlap`` of the shorter scan sets the height. The body's centre
   sets the other two axes. (Tried first: Mattes mutual information searched over height alone
   set C's labels onto A so far off that no shared structure reached Dice 0.01.)
2. **Affine**, two resolutions, on the mean squared HU difference (both are CTs; measured on
   the chest pair, it fits the lungs better than Mattes mutual information: Dice 0.82 against
   0.69, ``Training/results/label_propagation.md``).
3. **Deformable** (optional, ``bspline_mesh_mm`` > 0): a cubic B-spline on a control grid
   ``bspline_mesh_mm`` apart, on top of the affine.

The labels are resampled onto the fixed CT's own grid by nearest neighbour. Random metric
sampling is seeded: with mean squares two runs gave the same Dice to the digit; with mutual
information (whose histogram several threads gather) they moved by up to 0.01.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..inputs.volume import Volume
from ..progress import Progress

AIR_HU = -1000.0
METRICS = ("mean_squares", "mutual_information")   # RegistrationConfig.metric: the HU difference, or Mattes


@dataclass(frozen=True)
class RegistrationConfig:
    grid_mm: float = 4.0                # isotropic grid the registration works on
    clamp_hu: tuple[float, float] = (-1000.0, 1000.0)  # contrast-filled vessels and metal do not dominate
    min_overlap: float = 0.5            # of the shorter scan's height, for the height search
    metric: str = "mean_squares"        # or "mutual_information" (Mattes); both CTs are in HU
    bins: int = 32                      # Mattes mutual information histogram bins
    sampling: float = 0.2               # fraction of fixed voxels the metric samples
    affine_iterations: int = 300
    bspline_mesh_mm: float = 100.0      # control-point spacing; 0 = affine only
    bspline_iterations: int = 50
    seed: int = 0


@dataclass
class Registration:
    transform: object                   # SimpleITK transform, fixed physical point -> moving
    affine: object                      # its affine stage alone (the same object when affine only)
    height_shift_mm: float


def _sitk():
    import SimpleITK as sitk

    return sitk


def _prepared(vol: Volume, cfg: RegistrationConfig):
    """The CT as float32, clamped, reoriented to LPS (slice index grows toward the head) and
    resampled to the coarse isotropic grid."""
    sitk = _sitk()
    img = sitk.Cast(vol.to_sitk(), sitk.sitkFloat32)
    img = sitk.Clamp(img, sitk.sitkFloat32, *map(float, cfg.clamp_hu))
    img = sitk.DICOMOrient(img, "LPS")
    mm = float(cfg.grid_mm)
    size = [max(1, int(round(n * s / mm))) for n, s in zip(img.GetSize(), img.GetSpacing())]
    return sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), (mm, mm, mm),
                         img.GetDirection(), AIR_HU, sitk.sitkFloat32)


def slice_profile(img) -> np.ndarray:
    """(slices, 4): per slice, the fractions of the body that are lung air, bone and fat, and
    the body's area against the largest slice's. Air counts as lung only between body voxels
    along a row, so the air around the patient does not."""
    a = _sitk().GetArrayFromImage(img)             # (z, y, x)
    body = a > -500
    n = np.maximum(body.sum((1, 2)), 1)
    inside = np.maximum.accumulate(body, axis=2) & np.maximum.accumulate(body[:, :, ::-1], axis=2)[:, :, ::-1]
    lung = (a < -400) & (a > -990) & inside
    bone = a > 200
    fat = (a > -150) & (a < -50)
    area = body.sum((1, 2)).astype(float)
    return np.stack([lung.sum((1, 2)) / n, bone.sum((1, 2)) / n, fat.sum((1, 2)) / n,
                     area / max(area.max(), 1.0)], axis=1)


def height_shift(fixed_img, moving_img, min_overlap: float) -> tuple[int, float]:
    """(k, mean squared difference): fixed slice i lies best on moving slice i - k."""
    pf, pm = slice_profile(fixed_img), slice_profile(moving_img)
    nf, nm = len(pf), len(pm)
    need = max(3, int(min_overlap * min(nf, nm)))
    best = None
    for k in range(-(nm - need), nf - need + 1):
        i0, i1 = max(0, k), min(nf, nm + k)
        if i1 - i0 < need:
            continue
        d = float(((pf[i0:i1] - pm[i0 - k:i1 - k]) ** 2).mean())
        if best is None or d < best[1]:
            best = (k, d)
    if best is None:
        raise InputError(None, "the two CTs are too short to overlap by the required fraction")
    return best


def _body_centre(img) -> np.ndarray:
    a = _sitk().GetArrayFromImage(img) > -500
    if not a.any():
        raise InputError(None, "a CT has no voxel above -500 HU: no body to register")
    ijk = np.argwhere(a).mean(0)[::-1]
    return np.array(img.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk]))


def _method(cfg: RegistrationConfig):
    sitk = _sitk()
    r = sitk.ImageRegistrationMethod()
    if cfg.metric == "mean_squares":
        r.SetMetricAsMeanSquares()
    elif cfg.metric == "mutual_information":
        r.SetMetricAsMattesMutualInformation(cfg.bins)
    else:
        raise ValueError(f"unknown registration metric {cfg.metric!r}; known: {', '.join(METRICS)}")
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(cfg.sampling, 1 + int(cfg.seed))  # 0 would seed from the clock
    r.SetInterpolator(sitk.sitkLinear)
    r.SetShrinkFactorsPerLevel([2, 1])
    r.SetSmoothingSigmasPerLevel([1.0, 0.0])
    return r


def register(fixed: Volume, moving: Volume, cfg: RegistrationConfig = RegistrationConfig(),
             progress: Progress | None = None) -> Registration:
    """The transform that maps the fixed CT's physical points into the moving CT."""
    sitk = _sitk()
    say = progress or (lambda fraction, message: None)
    f, m = _prepared(fixed, cfg), _prepared(moving, cfg)
    say(0.05, "height")
    k, _ = height_shift(f, m, cfg.min_overlap)
    fc, mc = _body_centre(f), _body_centre(m)
    shift = mc - fc
    shift[2] = m.TransformIndexToPhysicalPoint((0, 0, -k))[2] - f.TransformIndexToPhysicalPoint((0, 0, 0))[2]

    say(0.1, "affine")
    affine = sitk.AffineTransform(3)
    affine.SetCenter([float(v) for v in fc])
    affine.SetTranslation([float(v) for v in shift])
    r = _method(cfg)
    r.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, cfg.affine_iterations, relaxationFactor=0.7)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetInitialTransform(affine, inPlace=True)
    r.Execute(f, m)
    if cfg.bspline_mesh_mm <= 0:
        say(1.0, "affine only")
        return Registration(affine, affine, float(shift[2]))

    say(0.3, "deformable")
    mesh = [max(1, int(round(n * cfg.grid_mm / cfg.bspline_mesh_mm))) for n in f.GetSize()]
    bspline = sitk.BSplineTransformInitializer(f, mesh, 3)
    r = _method(cfg)
    r.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=cfg.bspline_iterations,
                           maximumNumberOfCorrections=5)
    r.SetMovingInitialTransform(affine)
    r.SetInitialTransform(bspline, inPlace=True)
    r.Execute(f, m)
    say(1.0, "done")
    return Registration(sitk.CompositeTransform([affine, bspline]), affine, float(shift[2]))


def propagate(labels: Volume, onto: Volume, registration: Registration, affine_only: bool = False) -> Volume:
    """``labels`` (on the moving CT's grid) carried onto ``onto``'s grid (the fixed CT), by the
    whole registration or by its affine stage alone."""
    sitk = _sitk()
    transform = registration.affine if affine_only else registration.transform
    moved = sitk.Resample(sitk.Cast(labels.to_sitk(), sitk.sitkInt16), onto.to_sitk(), transform,
                          sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    return Volume(sitk.GetArrayFromImage(moved), onto.spacing, onto.origin, onto.direction,
                  source=f"{labels.source} carried onto {onto.source}")


def coverage(moving: Volume, onto: Volume, registration: Registration, affine_only: bool = False) -> np.ndarray:
    """Boolean map on ``onto``'s grid of the voxels the moving CT's scan covers: outside it,
    carried labels are empty because the moving scan ends there, not because the
    registration missed."""
    ones = Volume(np.ones(moving.shape, np.int16), moving.spacing, moving.origin, moving.direction,
                  source=moving.source)
    return propagate(ones, onto, registration, affine_only).array > 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return float("nan") if total == 0 else 2.0 * int((a & b).sum()) / total


def dice_by_label(propagated: np.ndarray, truth: np.ndarray, voxel_ml: float, min_ml: float = 5.0,
                  groups: dict[str, tuple[int, ...]] | None = None,
                  within: np.ndarray | None = None) -> dict[str, float]:
    """Dice per label (or per group of labels: ``groups`` name -> ids) present in both maps,
    for the labels that fill at least ``min_ml`` of ``truth``; with ``within`` (a boolean
    map, ``coverage``), only over those voxels."""
    if propagated.shape != truth.shape or (within is not None and within.shape != truth.shape):
        raise ValueError(f"label maps differ in shape: {propagated.shape} and {truth.shape}"
                         + (f" (within: {within.shape})" if within is not None else ""))
    if within is not None:
        propagated, truth = np.where(within, propagated, 0), np.where(within, truth, 0)
    if groups is None:
        ids = np.intersect1d(np.unique(propagated), np.unique(truth))
        groups = {str(int(i)): (int(i),) for i in ids if i != 0}
    out = {}
    for name, ids in groups.items():
        t = np.isin(truth, ids)
        if t.sum() * voxel_ml < min_ml:
            continue
        p = np.isin(propagated, ids)
        if not p.any():
            continue
        out[name] = dice(p, t)
    return out
