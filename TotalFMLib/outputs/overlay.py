"""A PNG for people: axial CT slices with each organ coloured by its score, and a legend.

Slices are shown in the radiological convention (patient right on the image left,
anterior up): the volumes are reoriented to LPS for display only.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..crops.ct_windows import window_range
from ..results import ANY_LESION
from ..inputs.volume import Volume


def lps_array(vol: Volume) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``vol``'s voxels in LPS axis order (axes permuted/flipped, never resampled): array
    (Z, Y, X) with X running to the patient's left, Y to posterior, Z to superior.
    Returns (array, spacing (x, y, z) of the reoriented grid)."""
    import SimpleITK as sitk

    image = sitk.DICOMOrient(vol.to_sitk(), "LPS")
    return sitk.GetArrayFromImage(image), image.GetSpacing()


def _pick_slices(labels: np.ndarray, organ_ids: list[int], n: int) -> list[int]:
    """n axial slices spread over the scored organs' extent, each through organ tissue."""
    mask = np.isin(labels, organ_ids)
    per_slice = mask.reshape(mask.shape[0], -1).sum(axis=1)
    zs = np.flatnonzero(per_slice)
    if zs.size == 0:
        return list(np.linspace(0, labels.shape[0] - 1, n).round().astype(int))
    picks = np.quantile(zs, np.linspace(0.15, 0.85, n)).round().astype(int)
    return sorted({int(zs[np.abs(zs - p).argmin()]) for p in picks})


def render_scores(ct: Volume, seg: Volume, rows, path: str | os.PathLike, finding: str = ANY_LESION,
                  n_slices: int = 4, title: str | None = None) -> Path:
    """Write the picture to ``path`` (atomically) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    from ..vocabulary.catalogue import organ as organ_info

    chosen = [r for r in rows if r.finding == finding]
    scores = {r.organ: r for r in chosen}
    hu, spacing = lps_array(ct)
    labels, _ = lps_array(seg)
    ids = {organ_info(name).label_id: name for name in scores}
    slices = _pick_slices(labels, list(ids), n_slices)

    body = np.argwhere((hu[slices] > -500).any(axis=0))  # crop the air around the patient
    (y0, x0), (y1, x1) = (body.min(0), body.max(0) + 1) if body.size else ((0, 0), hu.shape[1:])
    hu, labels = hu[:, y0:y1, x0:x1], labels[:, y0:y1, x0:x1]

    cmap = matplotlib.colormaps["inferno"]
    norm = colors.Normalize(0.0, 1.0)
    fig, axes = plt.subplots(1, len(slices), figsize=(3.6 * len(slices), 4.2), squeeze=False)
    aspect = spacing[1] / spacing[0]
    for ax, z in zip(axes[0], slices):
        ax.imshow(np.clip(hu[z], *window_range("soft_tissue")), cmap="gray", aspect=aspect, interpolation="nearest")
        rgba = np.zeros(hu[z].shape + (4,), dtype=np.float32)
        for label_id, name in ids.items():
            m = labels[z] == label_id
            if m.any():
                r = scores[name]
                rgba[m] = cmap(norm(r.score))
                rgba[m, 3] = 0.75 if r.flagged else 0.35
        ax.imshow(rgba, aspect=aspect, interpolation="nearest")
        ax.set_title(f"axial slice {z}", fontsize=9)
        ax.axis("off")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0].tolist(), fraction=0.025,
                 label=f"score: {finding} (bright = flagged)")
    top = sorted(chosen, key=lambda r: -r.score)[:6]
    lines = [f"{organ_info(r.organ).display_name}: {r.score:.2f}{' *' if r.flagged else ''}" for r in top]
    fig.suptitle((title or "TotalFM organ scores") + "\n" + " | ".join(lines), fontsize=9)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)
