"""Insert findings with known ground truth into real CT volumes (benchmark data).

Every function works on numpy arrays in SimpleITK order (Z, Y, X): ``ct`` in HU,
``labels`` a TotalSegmentator ``total`` label map on the same grid, ``spacing`` in
(x, y, z) mm as ``Volume.spacing``; ``direction`` (row-major 3x3, as ``Volume.direction``)
is needed only where gravity matters (dependent fluid and gallstones). Each takes a
``numpy.random.Generator``, never changes its inputs and returns ``(ct, labels, record)``:
new float32 HU and int16 label arrays plus a :class:`LesionRecord` whose ``finding`` is a
name of the finding catalogue (``TotalFMLib/data/findings.csv``) and whose ``mask`` marks
the voxels that show the finding.

Whole-case augmentation (``augment.py``: deformation, contrast enhancement, noise) comes
before the insertions in the benchmark, so the ground truth masks stay exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..vocabulary import catalogue
from .arrays import (around, ball_weights, mask_box, offsets_mm, posterior_mm, random_rotation,
                     smooth_noise, start_arrays, uniform)

WATER_HU = 0.0
# the least contrast of a hypodense lesion: taken when the organ lies less than this above water
HYPODENSE_FLOOR_HU = 20.0
# the contrast asked of a focal lesion (a hypodense one gets less where its organ lies closer to water)
FOCAL_CONTRAST_HU = (50.0, 110.0)

# Structures an enlarging organ must not overwrite (bones and cartilage).
_RIGID_GROUPS = ("vertebrae", "ribs", "hips", "femurs")
_RIGID_NAMES = ("sacrum", "sternum", "costal_cartilages", "skull", "spinal_cord")


@dataclass
class LesionRecord:
    organ: str                 # structure name the finding is reported on
    finding: str               # finding catalogue name
    params: dict               # JSON-safe parameters (sizes in mm, HU, voxel indices)
    mask: np.ndarray | None = field(default=None, repr=False)  # bool (Z, Y, X): voxels showing it

    def as_dict(self) -> dict:
        """JSON-safe dict (without the mask; its voxel count is in ``voxels``)."""
        out = {"organ": self.organ, "finding": self.finding, "params": to_jsonable(self.params)}
        if self.mask is not None:
            out["voxels"] = int(self.mask.sum())
        return out


def to_jsonable(value):
    """Nested dicts/lists/numpy scalars -> plain JSON types (floats rounded to 4 decimals)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 4)
    return value


# --------------------------------------------------------------------------- helpers

def _organ_mask(labels: np.ndarray, organ: str, min_voxels: int = 8) -> tuple[str, int, np.ndarray]:
    o = catalogue.organ(organ)
    mask = labels == o.label_id
    n = int(mask.sum())
    if n < min_voxels:
        raise InputError(None, f"organ {o.name} has {n} voxels in the label map; a finding needs at least {min_voxels}")
    return o.name, o.label_id, mask


# --------------------------------------------------------------------------- focal lesions

def insert_focal_lesion(ct, labels, spacing, organ: str, rng: np.random.Generator, kind: str = "hypodense",
                        diameter_mm=(20.0, 40.0), contrast_hu=FOCAL_CONTRAST_HU, boundary_noise=(0.05, 0.2),
                        edge_mm=(1.0, 3.0), finding: str | None = None):
    """A hypodense or hyperdense focal lesion inside ``organ``.

    Ellipsoid of random diameter (mm), axis ratios 0.75-1.25 and orientation; its
    boundary perturbed by smooth noise (relative amplitude ``boundary_noise``), a soft
    edge of ``edge_mm``, a random position where it fits inside the organ, and a random
    contrast added to (hyperdense) or taken from (hypodense) the organ's own voxels, so
    the scanner's noise texture stays. The lesion never leaves the organ mask.
    """
    if kind not in ("hypodense", "hyperdense"):
        raise InputError(None, f"lesion kind must be 'hypodense' or 'hyperdense', not {kind!r}")
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    name, _, organ_mask = _organ_mask(labels, organ)
    box = mask_box(organ_mask, pad=1)
    inside = organ_mask[box]
    dist = ndimage.distance_transform_edt(inside, sampling=zyx)  # mm to the organ's edge
    radius = uniform(rng, diameter_mm) / 2
    radius = max(min(radius, float(dist.max()) * 0.9), float(zyx.max()))
    candidates = np.flatnonzero(dist >= min(radius * 0.8, dist.max()))
    center = np.array(np.unravel_index(rng.choice(candidates), inside.shape)) + [s.start for s in box]

    axes = radius * rng.uniform(0.75, 1.25, 3)
    axes *= radius / float(np.prod(axes)) ** (1 / 3)  # keep the equivalent diameter
    rot = random_rotation(rng)
    region = around(center, np.ceil(axes.max() * 1.6 / zyx) + 2, ct.shape)
    dz, dy, dx = offsets_mm(region, zyx, center)
    r2 = 0.0
    for k in range(3):  # coordinates in the ellipsoid's own frame
        local = rot[0, k] * dz + rot[1, k] * dy + rot[2, k] * dx
        r2 = r2 + (local / axes[k]) ** 2
    r = np.sqrt(r2)
    amp = uniform(rng, boundary_noise)
    noise = smooth_noise(r.shape, rng, max(1.0, radius / 2 / float(zyx.mean())))
    r_eff = r * (1 + amp * noise)
    edge = uniform(rng, edge_mm)
    t = np.clip((1 - r_eff) * radius / edge + 0.5, 0, 1)
    weight = (t * t * (3 - 2 * t)) * organ_mask[region]  # smoothstep edge, confined to the organ

    contrast = uniform(rng, contrast_hu)
    sign = -1.0 if kind == "hypodense" else 1.0
    if kind == "hypodense":  # not below water: hypodense lesions are fluid or soft tissue, not fat
        contrast = max(HYPODENSE_FLOOR_HU, min(contrast, float(np.median(ct[organ_mask])) - WATER_HU))
    texture = smooth_noise(r.shape, rng, 1.0) * float(rng.uniform(2, 8))
    ct[region] += weight * (sign * contrast + texture)
    mask = np.zeros(ct.shape, dtype=bool)
    mask[region] = weight >= 0.5
    if not mask.any():  # a very thin organ: mark the centre voxel at least
        mask[tuple(center)] = True
        ct[tuple(center)] += sign * contrast
    if finding is None:
        finding = focal_finding_name(kind, name)
    params = dict(kind=kind, center_voxel=center.tolist(), diameter_mm=2 * radius,
                  axes_mm=(2 * axes).tolist(), contrast_hu=sign * contrast, edge_mm=edge,
                  boundary_noise=amp)
    return ct, labels, LesionRecord(name, finding, params, mask)


def focal_finding_name(kind: str, organ: str) -> str:
    """Catalogue name of a focal lesion: kidneys have "renal hypodensities" of their own."""
    if kind == "hypodense" and organ in ("kidney_left", "kidney_right"):
        return "renal hypodensities"
    return f"{kind} lesion"


# --------------------------------------------------------------------------- stones, calcification

def _insert_foci(ct, organ_mask, zyx, rng, count, diameter_mm, hu, where: np.ndarray):
    """Very hyperdense small balls centred on voxels of ``where`` and confined to the organ."""
    mask = np.zeros(ct.shape, dtype=bool)
    foci = []
    candidates = np.flatnonzero(where)
    n = int(rng.integers(count[0], count[1] + 1)) if isinstance(count, (tuple, list)) else int(count)
    for _ in range(max(1, n)):
        center = np.array(np.unravel_index(rng.choice(candidates), ct.shape))
        d = max(uniform(rng, diameter_mm), float(zyx.max()))  # at least one voxel fully covered
        peak = uniform(rng, hu)
        region = around(center, np.ceil(d / zyx) + 1, ct.shape)
        w = ball_weights(region, zyx, center, d / 2) * organ_mask[region]
        ct[region] = np.maximum(ct[region], ct[region] * (1 - w) + peak * w)
        mask[region] |= w >= 0.5
        foci.append(dict(center_voxel=center.tolist(), diameter_mm=d, hu=peak))
    return mask, foci


def insert_stones(ct, labels, spacing, organ: str, rng: np.random.Generator, count=(1, 3),
                  diameter_mm=(6.0, 14.0), hu=(400.0, 1200.0), direction=None):
    """Calculi: 1-3 very dense foci (400-1200 HU, 6-14 mm) in a kidney, the gallbladder or the
    urinary bladder. Gallbladder and bladder stones lie in the dependent (posterior) half."""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    name, _, organ_mask = _organ_mask(labels, organ)
    where = organ_mask.copy()
    if name in ("gallbladder", "urinary_bladder"):
        post = posterior_mm(ct.shape, zyx, direction)
        where &= post >= np.median(post[organ_mask])
    mask, foci = _insert_foci(ct, organ_mask, zyx, rng, count, diameter_mm, hu, where)
    finding = "gallstones" if name == "gallbladder" else "stone"
    return ct, labels, LesionRecord(name, finding, dict(stones=foci), mask)


def insert_calcification(ct, labels, spacing, organ: str, rng: np.random.Generator, count=(4, 10),
                         length_mm=(8.0, 30.0), thickness_mm=(2.0, 4.0), arc_mm=(4.0, 10.0), hu=(600.0, 1200.0),
                         finding: str = "atherosclerosis"):
    """Calcified wall plaques (atherosclerosis) of the aorta or an iliac artery: ``count``
    dense patches of its wall (the outer shell of its mask), each ``length_mm`` long along the
    vessel (the slice axis), ``arc_mm`` wide around it and ``thickness_mm`` deep, as plaques
    grow along the wall. (Round foci of 2-5 mm, as before, fell between the 16 or 32 slices
    an aorta of 30 cm is squashed to, and no model found them.)"""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    name, _, organ_mask = _organ_mask(labels, organ)
    depth = max(1, int(round(uniform(rng, thickness_mm) / float(zyx[1:].mean()))))
    wall = organ_mask & ~ndimage.binary_erosion(organ_mask, iterations=depth)
    candidates = np.flatnonzero(wall)
    mask = np.zeros(ct.shape, dtype=bool)
    plaques = []
    n = int(rng.integers(count[0], count[1] + 1))
    for _ in range(n):
        center = np.array(np.unravel_index(rng.choice(candidates), ct.shape))
        half = np.array([uniform(rng, length_mm) / 2, uniform(rng, arc_mm) / 2, uniform(rng, arc_mm) / 2])
        region = around(center, np.ceil(half / zyx) + 1, ct.shape)
        dz, dy, dx = offsets_mm(region, zyx, center)
        inside = ((np.abs(dz) <= half[0]) & (dy ** 2 + dx ** 2 <= half[1] ** 2)) & wall[region]
        peak = uniform(rng, hu)
        ct[region] = np.where(inside, np.maximum(ct[region], peak), ct[region])
        mask[region] |= inside
        plaques.append(dict(center_voxel=center.tolist(), length_mm=2 * float(half[0]), arc_mm=2 * float(half[1]),
                            hu=peak))
    if not mask.any():
        raise InputError(None, f"{name}: no wall voxel for a plaque")
    return ct, labels, LesionRecord(name, finding, dict(plaques=plaques, thickness_vox=depth), mask)


# --------------------------------------------------------------------------- size, density

def _rigid_ids() -> np.ndarray:
    names = {o.name for o in catalogue.resolve(list(_RIGID_GROUPS))} | set(_RIGID_NAMES)
    return np.array(sorted(catalogue.organ(n).label_id for n in names))


def enlarge_organ(ct, labels, spacing, organ: str, rng: np.random.Generator, scale=(1.15, 1.35),
                  finding: str | None = None):
    """Organ enlargement: the organ (image and label) scaled by a random linear factor about
    its centroid. The grown organ replaces soft tissue and other organs but not bone,
    cartilage or air outside the body; the label map is updated."""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    name, label_id, organ_mask = _organ_mask(labels, organ)
    s = uniform(rng, scale)
    center = np.array(ndimage.center_of_mass(organ_mask))
    old_box = mask_box(organ_mask)
    lo = np.array([b.start for b in old_box]) - 1
    hi = np.array([b.stop for b in old_box]) + 1
    region = tuple(slice(max(0, int(math.floor(c + (a - c) * s))), min(n, int(math.ceil(c + (b - c) * s)) + 1))
                   for a, b, c, n in zip(lo, hi, center, ct.shape))
    out_shape = tuple(r.stop - r.start for r in region)
    # output voxel o of the region samples input (o + start - c) / s + c
    offset = [(r.start - c) / s + c for r, c in zip(region, center)]
    grown = ndimage.affine_transform(organ_mask.astype(np.float32), [1 / s] * 3, offset=offset,
                                     output_shape=out_shape, order=1, mode="constant") >= 0.5
    moved = ndimage.affine_transform(ct, [1 / s] * 3, offset=offset, output_shape=out_shape, order=1,
                                     mode="nearest")
    sub_labels = labels[region]
    allowed = ~np.isin(sub_labels, _rigid_ids()) & ((ct[region] > -500) | (sub_labels == label_id))
    new = grown & allowed
    ct[region] = np.where(new, moved, ct[region])
    sub_labels[new] = label_id
    labels[region] = sub_labels
    mask = labels == label_id
    if finding is None:
        finding = enlargement_finding_name(name)
    params = dict(scale=s, voxels_before=int(organ_mask.sum()), voxels_after=int(mask.sum()))
    return ct, labels, LesionRecord(name, finding, params, mask)


def enlargement_finding_name(organ: str) -> str:
    return {"liver": "hepatomegaly", "spleen": "splenomegaly", "prostate": "prostatomegaly"}.get(organ, "enlargement")


def diffuse_density_change(ct, labels, spacing, organ: str, rng: np.random.Generator, delta_hu=(-50.0, -20.0),
                           heterogeneity=(0.05, 0.2), finding: str | None = None):
    """Diffuse density change of a whole organ (steatosis: the liver 20-50 HU lower), with
    a mildly heterogeneous shift and a one-voxel soft rim."""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    name, _, organ_mask = _organ_mask(labels, organ)
    box = mask_box(organ_mask, pad=2)
    inside = organ_mask[box]
    delta = uniform(rng, delta_hu)
    het = uniform(rng, heterogeneity)
    rim = ndimage.gaussian_filter(inside.astype(np.float32), 0.7) * inside
    variation = 1 + het * smooth_noise(inside.shape, rng, 10.0 / zyx)
    ct[box] += delta * rim * variation
    if finding is None:
        finding = {"liver": "hepatic steatosis", "pancreas": "steatosis"}.get(name, "steatosis")
    return ct, labels, LesionRecord(name, finding, dict(delta_hu=delta, heterogeneity=het), organ_mask.copy())


# --------------------------------------------------------------------------- fluid

def _fluid(ct, pocket: np.ndarray, zyx, rng, hu) -> float:
    value = uniform(rng, hu)
    w = np.clip(ndimage.gaussian_filter(pocket.astype(np.float32), 0.6 / zyx * zyx.min()) * 1.5, 0, 1)
    w = np.maximum(w, pocket)
    texture = rng.normal(0, 4, ct.shape).astype(np.float32)
    ct[:] = ct * (1 - w) + (value + texture) * w
    return value


def insert_ascites(ct, labels, spacing, organ: str, rng: np.random.Generator, thickness_mm=(6.0, 15.0),
                   coverage=(0.35, 0.8), hu=(0.0, 20.0)):
    """Ascites: fluid pockets (0-20 HU) in the unlabelled fat or soft tissue within a few mm of
    the organ (liver, spleen or bowel), irregular through a smooth random field."""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    name, _, organ_mask = _organ_mask(labels, organ)
    thickness = uniform(rng, thickness_mm)
    pad = np.ceil(thickness / zyx).astype(int) + 1
    box = mask_box(organ_mask, pad=pad)
    outside = ndimage.distance_transform_edt(~organ_mask[box], sampling=zyx)
    sub = ct[box]
    shell = (outside > 0) & (outside <= thickness) & (labels[box] == 0) & (sub > -250) & (sub < 150)
    if shell.sum() < 4:
        raise InputError(None, f"no unlabelled fat or soft tissue next to {name} to hold ascites")
    cover = uniform(rng, coverage)
    field_ = smooth_noise(shell.shape, rng, 12.0 / zyx)
    cut = np.quantile(field_[shell], 1 - cover)
    pocket_box = shell & (field_ >= cut)
    pocket = np.zeros(ct.shape, dtype=bool)
    pocket[box] = pocket_box
    value = _fluid(ct[box], pocket_box, zyx, rng, hu)
    params = dict(thickness_mm=thickness, coverage=cover, fluid_hu=value)
    return ct, labels, LesionRecord(name, "ascites", params, pocket)


def insert_pleural_effusion(ct, labels, spacing, organ: str, rng: np.random.Generator, direction=None,
                            fraction=(0.15, 0.45), hu=(0.0, 20.0)):
    """Pleural effusion: posterior-dependent fluid (0-20 HU) replacing the most posterior
    part of a lower lung lobe (the compressed lung); those voxels leave the lobe's label."""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    name, _, organ_mask = _organ_mask(labels, organ, min_voxels=20)
    box = mask_box(organ_mask, pad=1)
    inside = organ_mask[box]
    post = posterior_mm(ct.shape, zyx, direction)[box]
    post = post + 3.0 * smooth_noise(inside.shape, rng, 15.0 / zyx)  # uneven meniscus
    frac = uniform(rng, fraction)
    level = np.quantile(post[inside], 1 - frac)
    pocket_box = inside & (post >= level)
    pocket = np.zeros(ct.shape, dtype=bool)
    pocket[box] = pocket_box
    value = _fluid(ct[box], pocket_box, zyx, rng, hu)
    labels[pocket] = 0
    params = dict(fraction=frac, fluid_hu=value)
    return ct, labels, LesionRecord(name, "pleural effusion", params, pocket)


# --------------------------------------------------------------------------- registry

# catalogue finding -> (inserter, organs it is inserted in)
INSERTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # the pancreas, 15-25 mm thick and only ~20 HU above water unenhanced, cannot hold a lesion that
    # shows in a 64 x 64 x 16 crop (Training/BENCHMARK.md, "What can be learnt"), so it carries none
    "hypodense lesion": ("hypodense", ("liver", "spleen")),
    "renal hypodensities": ("hypodense", ("kidney_left", "kidney_right")),
    "hyperdense lesion": ("hyperdense", ("liver", "spleen", "kidney_left", "kidney_right")),
    "stone": ("stones", ("kidney_left", "kidney_right", "urinary_bladder")),
    "gallstones": ("stones", ("gallbladder",)),
    "hepatomegaly": ("enlarge", ("liver",)),
    "splenomegaly": ("enlarge", ("spleen",)),
    "hepatic steatosis": ("diffuse", ("liver",)),
    "ascites": ("ascites", ("liver", "spleen")),
    "pleural effusion": ("effusion", ("lung_lower_lobe_left", "lung_lower_lobe_right")),
    "atherosclerosis": ("calcification", ("aorta", "iliac_artery_left", "iliac_artery_right")),
}
FINDINGS: tuple[str, ...] = tuple(INSERTIONS)  # the benchmark's finding order (label columns, map channels)


# insertion kinds that move the label map (the grown organ, the lobe's fluid); the others leave it alone
MOVES_LABELS = ("enlarge", "effusion")


def moves_labels(finding: str) -> bool:
    return finding in INSERTIONS and INSERTIONS[finding][0] in MOVES_LABELS


# insertion kinds whose finding lies inside the organ's mask (lesions, stones, plaques, steatosis); fluid
# lies outside it and an enlarged organ moves its mask
INSIDE_KINDS = ("hypodense", "hyperdense", "stones", "calcification", "diffuse")


def inside_organ(finding: str) -> bool:
    return finding in INSERTIONS and INSERTIONS[finding][0] in INSIDE_KINDS


def insertable(finding: str, organ: str) -> bool:
    return finding in INSERTIONS and organ in INSERTIONS[finding][1]


def insert_finding(ct, labels, spacing, organ: str, finding: str, rng: np.random.Generator, direction=None,
                   hypodense_contrast_hu=FOCAL_CONTRAST_HU):
    """Insert the catalogue ``finding`` into ``organ`` with the matching inserter above
    (``hypodense_contrast_hu``: the contrast range asked of a hypodense lesion)."""
    if not insertable(finding, organ):
        raise InputError(None, f"the benchmark cannot insert {finding!r} into {organ!r}; "
                               f"insertable: {', '.join(f'{f} ({len(o)} organs)' for f, (_, o) in INSERTIONS.items())}")
    how = INSERTIONS[finding][0]
    if how == "hypodense":
        return insert_focal_lesion(ct, labels, spacing, organ, rng, kind=how, finding=finding,
                                   contrast_hu=hypodense_contrast_hu)
    if how == "hyperdense":
        return insert_focal_lesion(ct, labels, spacing, organ, rng, kind=how, finding=finding)
    if how == "stones":
        return insert_stones(ct, labels, spacing, organ, rng, direction=direction)
    if how == "enlarge":
        return enlarge_organ(ct, labels, spacing, organ, rng, finding=finding)
    if how == "diffuse":
        return diffuse_density_change(ct, labels, spacing, organ, rng, finding=finding)
    if how == "ascites":
        return insert_ascites(ct, labels, spacing, organ, rng)
    if how == "effusion":
        return insert_pleural_effusion(ct, labels, spacing, organ, rng, direction=direction)
    return insert_calcification(ct, labels, spacing, organ, rng, finding=finding)
