"""Does the anatomy agree with the file's stated orientation?

A CT stored mirrored, or with its axes in the wrong order, still loads: its header says
where each voxel lies, and nothing in the voxels contradicts it -- except the anatomy. The
label map tells where the organs are, so a few relations that hold in every patient are
checked in patient coordinates (LPS: x to the patient's left, y to posterior, z to
superior), each on the organs' centroids:

- on the patient's right of: liver / spleen, right / left kidney, right / left lung lobes;
- above: liver, lungs and heart over the urinary bladder, heart over the liver;
- in front of: aorta / vertebrae.

A relation that is inverted by more than ``MARGIN_MM`` gives a warning (not a refusal: a
situs inversus exists). Centroids come from a strided sample of the label map (at most about
``SAMPLE_VOXELS`` voxels), so the check costs little next to reading the file.
"""
from __future__ import annotations

import numpy as np

from ..vocabulary import catalogue
from .label_maps import volume_name
from .volume import Volume

MARGIN_MM = 20.0
SAMPLE_VOXELS = 3_000_000

# (axis, sign, first, second, wording): first lies on the ``sign`` side of second along LPS ``axis``
# (axis 0 = x towards the patient's left, 1 = y towards posterior, 2 = z towards superior)
RELATIONS = (
    (0, -1, "liver", "spleen", "the liver lies on the patient's left of the spleen"),
    (0, -1, "kidney_right", "kidney_left", "the right kidney lies on the patient's left of the left kidney"),
    (0, -1, "lung_right", "lung_left", "the right lung lies on the patient's left of the left lung"),
    (2, +1, "liver", "urinary_bladder", "the liver lies below the urinary bladder"),
    (2, +1, "lungs", "urinary_bladder", "the lungs lie below the urinary bladder"),
    (2, +1, "heart", "urinary_bladder", "the heart lies below the urinary bladder"),
    (2, +1, "heart", "liver", "the heart lies below the liver"),
    (1, -1, "aorta", "vertebrae", "the aorta lies behind the vertebrae"),
)


def _members(name: str) -> list[int]:
    """Label ids of a structure or group name."""
    return [o.label_id for o in catalogue.resolve([name])]


def _centroids(seg: Volume, ids: set[int]) -> dict[int, np.ndarray]:
    """{label id: LPS centroid in mm} of the given ids present in a strided sample."""
    labels = np.asarray(seg.array)
    step = max(1, int(np.ceil((labels.size / SAMPLE_VOXELS) ** (1 / 3))))
    sample = labels[::step, ::step, ::step]
    flat = sample.reshape(-1).astype(np.int64, copy=False)
    if flat.size == 0 or flat.min() < 0:
        return {}
    top = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=top)
    grids = np.indices(sample.shape, dtype=np.float64) * step  # index (z, y, x) of each sample
    sums = [np.bincount(flat, weights=g.reshape(-1), minlength=top) for g in grids[::-1]]  # x, y, z
    matrix = np.reshape(seg.direction, (3, 3)) * np.asarray(seg.spacing, dtype=float)
    out = {}
    for i in ids:
        if i < top and counts[i] > 0:
            index_xyz = np.array([s[i] / counts[i] for s in sums])
            out[i] = np.asarray(seg.origin, dtype=float) + matrix @ index_xyz
    return out


def _group_centroid(centroids: dict[int, np.ndarray], seg_counts: dict[int, int], ids: list[int]):
    """Voxel-weighted mean of the members' centroids, None when no member is present."""
    present = [i for i in ids if i in centroids]
    if not present:
        return None
    weights = np.array([seg_counts.get(i, 1) for i in present], dtype=float)
    return np.average([centroids[i] for i in present], axis=0, weights=weights)


def orientation_warnings(seg: Volume) -> list[str]:
    """Warnings (one line each, naming the file) for anatomy that contradicts the stated
    orientation; [] when all checkable relations hold."""
    names = {name for _, _, a, b, _ in RELATIONS for name in (a, b)}
    members = {name: _members(name) for name in names}
    centroids = _centroids(seg, {i for ids in members.values() for i in ids})
    if not centroids:
        return []
    counts = {catalogue.organ(name).label_id: n for name, n in seg.meta.get("organs", {}).items()}
    found = []
    for axis, sign, first, second, wording in RELATIONS:
        a = _group_centroid(centroids, counts, members[first])
        b = _group_centroid(centroids, counts, members[second])
        if a is None or b is None:
            continue
        inverted_by = -sign * (a[axis] - b[axis])
        if inverted_by > MARGIN_MM:
            found.append(f"{wording} (by {inverted_by:.0f} mm)")
    if not found:
        return []
    return [f"{volume_name(seg, 'segmentation')}: under the file's stated orientation " + "; ".join(found)
            + ": the image may be stored mirrored or with its axes in the wrong order; check its "
              "orientation before trusting the scores"]
