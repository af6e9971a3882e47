"""Whole-case augmentation of the benchmark's base CTs: smooth elastic deformation, simulated
intravenous contrast and its opposite (an enhanced CT shown unenhanced), correlated noise.
Arrays in SimpleITK order (Z, Y, X), ``ct`` in HU, ``labels`` a ``total`` label map on the same
grid, ``spacing`` (x, y, z) mm; each function takes a ``numpy.random.Generator`` and never
changes its inputs."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..vocabulary import catalogue
from .arrays import start_arrays, uniform
from .lesions import WATER_HU


def _upsample_weights(n: int, c: int) -> np.ndarray:
    """(n, c) cubic-spline weights taking ``c`` control values spread over ``n`` voxels."""
    pos = np.arange(n, dtype=np.float64) * (c - 1) / max(n - 1, 1)
    eye = np.eye(c)
    return np.stack([ndimage.map_coordinates(eye[k], [pos], order=3, mode="nearest") for k in range(c)], axis=1)


def random_deformation(ct, labels, spacing, rng: np.random.Generator, max_displacement_mm: float = 6.0,
                       grid_mm: float = 50.0, chunk: int = 16):
    """Smooth random elastic deformation: a displacement field drawn on a coarse control
    grid (``grid_mm``), interpolated with cubic splines (separably) and clipped to
    ``max_displacement_mm``; the same field warps the CT (linear) and the labels
    (nearest). Returns ``(ct, labels, params)``."""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    shape = np.array(ct.shape)
    coarse = np.maximum(2, np.ceil(shape * zyx / grid_mm).astype(int) + 1)
    weights = [_upsample_weights(int(n), int(c)).astype(np.float32) for n, c in zip(shape, coarse)]
    fields = []
    for sp in zyx:  # one displacement component per axis, in voxels
        control = rng.normal(0, max_displacement_mm / 2, coarse).astype(np.float32)
        full = np.einsum("zc,cyx->zyx", weights[0], control)
        full = np.einsum("yc,zcx->zyx", weights[1], full)
        full = np.einsum("xc,zyc->zyx", weights[2], full)
        fields.append(np.clip(full, -max_displacement_mm, max_displacement_mm) / sp)
    out_ct = np.empty_like(ct)
    out_lab = np.empty_like(labels)
    iy, ix = np.meshgrid(np.arange(shape[1], dtype=np.float32), np.arange(shape[2], dtype=np.float32), indexing="ij")
    for z0 in range(0, int(shape[0]), chunk):
        z1 = min(int(shape[0]), z0 + chunk)
        coords = np.stack([np.arange(z0, z1, dtype=np.float32)[:, None, None] + fields[0][z0:z1],
                           iy[None] + fields[1][z0:z1], ix[None] + fields[2][z0:z1]])
        out_ct[z0:z1] = ndimage.map_coordinates(ct, coords, order=1, mode="nearest")
        out_lab[z0:z1] = ndimage.map_coordinates(labels, coords, order=0, mode="nearest")
    params = dict(max_displacement_mm=max_displacement_mm, grid_mm=grid_mm, control_points=coarse.tolist(),
                  largest_displacement_mm=float(max(np.abs(f).max() * sp for f, sp in zip(fields, zyx))))
    return out_ct, out_lab, params


# (structures, offset range in HU) of a portal-venous-like enhancement, scaled by the phase. Wide
# enough to cover the real enhanced patients against the unenhanced one (measured, medians: liver
# +47, pancreas +71, aorta +110 HU on patient B against patient A). Patient C's kidneys, spleen
# and aorta lie beyond it (Training/base_organs.py); widening it changes the benchmark.
_ENHANCEMENT = (
    (("aorta", "iliac_artery_left", "iliac_artery_right", "brachiocephalic_trunk", "subclavian_artery_left",
      "subclavian_artery_right", "common_carotid_artery_left", "common_carotid_artery_right"), (100.0, 250.0)),
    (("inferior_vena_cava", "superior_vena_cava", "portal_vein_and_splenic_vein", "iliac_vena_left",
      "iliac_vena_right", "pulmonary_vein"), (60.0, 150.0)),
    (("kidney_left", "kidney_right"), (60.0, 180.0)),
    (("heart",), (80.0, 200.0)),
    (("spleen",), (30.0, 100.0)),
    (("liver", "pancreas"), (20.0, 80.0)),
    (("adrenal_gland_left", "adrenal_gland_right", "stomach", "duodenum", "small_bowel", "colon"), (10.0, 40.0)),
)


def largest_enhancement_hu(organ: str, reach: float = 1.0) -> float:
    """The largest HU offset ``random_enhancement`` gives ``organ`` (full phase; 0 where it adds none)."""
    return reach * max((hu[1] for names, hu in _ENHANCEMENT if organ in names), default=0.0)


def _paint_offsets(ct, labels, zyx, offsets: dict) -> tuple[np.ndarray, dict]:
    """``ct`` plus each named structure's HU offset, with a soft one-voxel rim (a Gaussian of
    0.7 of the finest spacing), and the offsets of the structures the label map holds."""
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.float32)
    for name, value in offsets.items():
        lid = catalogue.organ(name).label_id
        if lid < len(lut):
            lut[lid] = value
    shift = ndimage.gaussian_filter(lut[np.clip(labels, 0, len(lut) - 1)], 0.7 * zyx.min() / zyx)
    counts = np.bincount(np.clip(labels, 0, None).ravel(), minlength=len(lut))
    present = {k: v for k, v in offsets.items()
               if catalogue.organ(k).label_id < len(counts) and counts[catalogue.organ(k).label_id]}
    return ct + shift, present


def random_enhancement(ct, labels, spacing, rng: np.random.Generator, phase=(0.3, 1.0), reach: float = 1.0):
    """Simulated intravenous contrast: organ-wise HU offsets (vessels most, then kidneys,
    spleen, liver) times a random phase strength, with a soft one-voxel rim, so a training
    set made from an unenhanced CT also shows enhanced-looking organs. ``reach`` multiplies
    the top of every organ's range (the draws are the same for any reach). Returns ``(ct, params)``."""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    strength = uniform(rng, phase)
    offsets = {}
    for names, hu in _ENHANCEMENT:
        value = strength * uniform(rng, (hu[0], reach * hu[1]))
        offsets.update({name: value for name in names})
    ct, present = _paint_offsets(ct, labels, zyx, offsets)
    return ct, dict(phase=strength, offsets_hu=present)


# (organs, unenhanced HU range) a washout brings an enhanced solid organ down to. The ranges hold
# the unenhanced patient A's medians (Training/base_organs.py: kidneys 12-17, spleen 35, liver 46
# HU) and the usual unenhanced values of kidney, spleen, liver and pancreas. Vessels and heart
# are left enhanced: lowering a 400 HU lumen leaves its partial-volume rim bright, which looks
# like the wall calcification the benchmark inserts as plaques.
_NATIVE = (
    (("kidney_left", "kidney_right"), (10.0, 35.0)),
    (("spleen",), (30.0, 50.0)),
    (("liver",), (40.0, 65.0)),
    (("pancreas",), (20.0, 50.0)),
)


def random_washout(ct, labels, spacing, rng: np.random.Generator):
    """Simulated unenhanced phase of a contrast-enhanced CT's solid organs. Each group of organs
    gets an unenhanced level drawn from its range (``_NATIVE``). An organ whose median lies above
    it loses its contrast uptake: taking every voxel's height above water as tissue plus uptake in
    one proportion, its voxels are scaled about water by level / median (a kidney's bright cortex
    and dark medulla come together as they do unenhanced, instead of the medulla dropping to fat
    values under a plain offset). So its median lands on the level, and a hypodense lesion inserted
    afterwards is as faint against it as in an unenhanced CT. Organs already at or below the
    level stay as they are; a soft one-voxel rim outside an organ takes its median's change;
    vessels and heart are left enhanced. Returns ``(ct, params)``: the levels drawn, the median
    changes (``offsets_hu``) and the scale factors."""
    ct, labels, zyx = start_arrays(ct, labels, spacing)
    levels, offsets, scales, masks = {}, {}, {}, {}
    for names, hu in _NATIVE:
        level = uniform(rng, hu)
        for name in names:
            organ = labels == catalogue.organ(name).label_id
            if organ.any():
                median = float(np.median(ct[organ]))
                levels[name] = level
                offsets[name] = min(0.0, level - median)
                scales[name] = 1.0 if median <= level else (level - WATER_HU) / (median - WATER_HU)
                masks[name] = organ
    out, present = _paint_offsets(ct, labels, zyx, offsets)
    for name, scale in scales.items():
        if scale < 1.0:
            out[masks[name]] = WATER_HU + (ct[masks[name]] - WATER_HU) * scale
    return out, dict(levels_hu=levels, offsets_hu=present, scales=scales)


def add_noise(ct, rng: np.random.Generator, sigma_hu=(2.0, 10.0), correlation_vox: float = 0.6):
    """Spatially correlated Gaussian noise of standard deviation ``sigma_hu`` (HU); returns
    ``(ct, sigma)``."""
    ct = np.asarray(ct, dtype=np.float32).copy()
    sigma = uniform(rng, sigma_hu)
    noise = rng.standard_normal(ct.shape).astype(np.float32)
    if correlation_vox > 0:
        noise = ndimage.gaussian_filter(noise, correlation_vox)
        noise /= max(float(noise.std()), 1e-6)
    ct += sigma * noise
    return ct, sigma
