"""How much of an inserted finding survives into the model's organ crop.

    python Training/lesion_visibility.py [--base example_ct_dicom] [--cases 16] [--crop-size 96 --frames 32]

For each (finding, organ) asked for, a base CT of the benchmark is deformed as in a case
(``benchmark_data.make_case``), cropped by the recipe (``preprocess.organ_crops``) before and
after the finding is inserted, and the two crops are compared. Findings that leave the label
map alone (focal lesions, stones, plaques, steatosis, ascites) differ only by the finding, so the
difference is exactly what the image encoder can see of it; scanner noise is left out of both
(it would cancel). Reported per finding: the finding's voxels on the benchmark grid, the peak
change in the crop (HU, the largest over the three windows after clipping), and the crop voxels
that change by at least ``--min-hu``. Diagnostic only: nothing is trained, and nothing is
written except the base-CT cache that ``--cache`` names (``benchmark_data.load_base``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..crops.ct_windows import WINDOWS
from . import augment, lesions
from .benchmark_bases import base_on_grid
from .benchmark_data import BenchmarkConfig

@dataclass
class Visibility:
    finding: str
    organ: str
    grid_voxels: int        # voxels of the finding's mask on the benchmark grid
    peak_hu: float          # largest change of a crop voxel, in HU (window-limited)
    crop_voxels: int        # crop voxels changed by at least min_hu


def crop_change_hu(before, after) -> np.ndarray:
    """(3, S, S, F) crops in [0, 1] -> per-voxel change in HU, the largest over the windows."""
    widths = np.array([w for _, _, w in WINDOWS], dtype=np.float32)[:, None, None, None]
    return (np.abs(np.asarray(after, np.float32) - np.asarray(before, np.float32)) * widths).max(axis=0)


def measure(finding: str, organ: str, cases: int = 16, base: str = "example_ct_dicom", seed: int = 0,
            min_hu: float = 10.0, cfg: BenchmarkConfig | None = None, cache=None) -> list[Visibility]:
    """``cases`` independent insertions of ``finding`` into ``organ`` of the base CT ``base``."""
    from ..errors import InputError
    from ..crops.organ_crops import organ_crops

    if cases < 1:
        raise InputError(None, f"cases must be at least 1, got {cases}")
    if lesions.moves_labels(finding):
        raise InputError(None, f"{finding!r} changes the label map, so the crops before and after differ "
                               f"by more than the finding; measure it another way")
    cfg = cfg or BenchmarkConfig()
    # loaded once for all findings measured on it (measure never writes into the arrays)
    ct, seg = base_on_grid(base, cfg.inplane_mm, cfg.slice_mm, None if cache is None else str(cache))
    out = []
    for i in range(cases):
        rng = np.random.default_rng([seed, 7919, i])
        array, labels, _ = augment.random_deformation(ct.array, seg.array, ct.spacing, rng,
                                                      max_displacement_mm=cfg.max_displacement_mm)
        after, after_labels, rec = lesions.insert_finding(array, labels, ct.spacing, organ, finding, rng,
                                                          direction=ct.direction)  # works on copies
        crops = [organ_crops(replace(ct, array=a, meta={}), replace(seg, array=lab, meta={}), [organ],
                             crop_size=cfg.crop_size, frames=cfg.frames).images[0].numpy()
                 for a, lab in ((array, labels), (after, after_labels))]
        change = crop_change_hu(*crops)
        out.append(Visibility(finding, organ, int(rec.mask.sum()),
                              float(change.max()), int((change >= min_hu).sum())))
    return out


def neighbour_findings(bench) -> dict[str, dict[str, int]]:
    """Per finding, over a built benchmark's crops of organs that can carry it: positives,
    negatives, and the negatives that nevertheless show the finding: the crop's label says
    normal, but its ``lesion_maps`` (every finding the crop shows) mark one, inserted into a
    neighbouring organ within this organ's crop box. For a model that sees only the crop,
    those negatives look like positives. Pairs the patient shows natively are not scored
    anywhere, so they are not counted here either. Reads the manifest first, so a missing
    benchmark fails before any shard is loaded."""
    from .benchmark_data import FINDINGS, load_shard, read_manifest
    from .native_findings import benchmark_native, scored

    entries = read_manifest(bench)
    native = benchmark_native(bench, entries)
    counts = {f: {"positives": 0, "negatives": 0, "negatives_showing_it": 0} for f in FINDINGS}
    for entry in entries:
        shard = load_shard(bench, entry)
        shows = (shard["lesion_maps"].flatten(2).amax(2) > 0).numpy()
        named = shard["label_matrix"].bool().numpy()
        own = native.get(entry.get("base"), frozenset())
        for i, organ in enumerate(shard["organs"]):
            for k, finding in enumerate(FINDINGS):
                if not scored(finding, organ, own):
                    continue
                c = counts[finding]
                if named[i, k]:
                    c["positives"] += 1
                else:
                    c["negatives"] += 1
                    c["negatives_showing_it"] += int(shows[i, k])
    return counts
