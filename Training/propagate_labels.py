"""Organ labels carried from a labelled patient onto another CT by registration
(``TotalFMLib/training/label_propagation.py``), and how good they are.

    python Training/propagate_labels.py --measure [--pairs chest_ct:example_ct,...] [--metric mean_squares,mutual_information] [--out FILE.md]
    python Training/propagate_labels.py --from chest_ct --onto chest_cta --write runs/propagated/chest_cta.nii.gz

``--measure`` carries each pair's labels (moving:fixed, both named by their benchmark base, or
``ct_chest`` for 3D Slicer's CTChest sample, whose segmentation has the lungs, the ribs and the
three stretches of the spine) onto the fixed CT, and prints the Dice of the carried labels
against the fixed CT's own, per structure, over the part of the fixed CT that the moving scan
covers (an abdomen-pelvis scan has no labels to give a neck-to-L3 scan's chest), after the affine stage and after the deformable
one, with the mean over structures and over the large ones (>= 100 ml; a structure the carried
labels miss altogether counts 0). Every pair is measured in the one run, under each metric
of ``--metric`` side by side.

``--from BASE --onto SAMPLE --write FILE`` writes the labels of base CT BASE carried onto the
unlabelled sample CT SAMPLE (``inputs.sample_data``; the default is TotalSegmentator's chest
CTA ``chest_cta``) as a NIfTI label map of ``total`` ids on SAMPLE's grid.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

DEFAULT_PAIRS = "chest_ct:example_ct,example_ct:chest_ct,chest_ct:example_ct_dicom,chest_ct:ct_chest"
LARGE_ML = 100.0


def slicer_chest():
    """3D Slicer's CTChest sample and its segmentation, as (CT, {group name: mask}) with the
    masks on the CT's grid; the segments are groups of ``total`` structures (lungs, ribs,
    spine), named by ``catalogue.segment_group``."""
    import numpy as np
    import slicerio

    from TotalFMLib.inputs.ct import load_ct
    from TotalFMLib.inputs.sample_data import fetch
    from TotalFMLib.vocabulary import catalogue

    ct = load_ct(fetch("ct_chest_nrrd"))
    seg = slicerio.read_segmentation(str(fetch("seg_nrrd")))
    voxels = np.asarray(seg["voxels"])            # (i, j, k)
    masks = {}
    for s in seg["segments"]:
        group = catalogue.segment_group(s["name"])
        if group is None:
            continue
        mask = np.transpose(voxels == s["labelValue"], (2, 1, 0))   # to (k, j, i), the CT array's order
        if mask.shape != ct.array.shape:
            raise SystemExit(f"{fetch('seg_nrrd')}: segmentation {mask.shape} is not on the CT's grid {ct.array.shape}")
        masks[group] = mask
    return ct, masks


def fixed_side(name: str):
    """(CT, truth, groups, members): ``truth`` a label map; for the Slicer chest, whose segments
    are groups of structures, ``groups`` {group: (its number in truth,)} and ``members``
    {group: the ``total`` ids it stands for}; None and None for a base CT (per structure)."""
    import numpy as np

    from TotalFMLib.training.benchmark_bases import base_by_name, load_base
    from TotalFMLib.vocabulary import catalogue

    if name == "ct_chest":
        ct, masks = slicer_chest()
        truth = np.zeros(ct.array.shape, np.int16)
        groups = {}
        for n, (group, mask) in enumerate(sorted(masks.items()), start=1):
            truth[mask] = n
            groups[group] = (n,)
        return ct, truth, groups, {g: tuple(catalogue.organ(s).label_id for s in catalogue.groups()[g])
                                    for g in groups}
    ct, seg = load_base(base_by_name(name))
    return ct, seg.array, None, None


def measure(pairs: list[tuple[str, str]], configs: dict[str, object]) -> str:
    """One table per pair: the Dice of each structure after the affine and the deformable
    stage, under each of ``configs`` (name -> RegistrationConfig), side by side."""
    import numpy as np

    from TotalFMLib.training.benchmark_bases import base_by_name, load_base
    from TotalFMLib.training.label_propagation import coverage, dice_by_label, propagate, register
    from TotalFMLib.vocabulary import catalogue

    lines = []
    for moving, fixed in pairs:
        t0 = time.time()
        mct, mseg = load_base(base_by_name(moving))
        fct, truth, groups, members = fixed_side(fixed)
        voxel_ml = float(np.prod(fct.spacing)) / 1000.0
        scores, shifts = {}, []
        for name, cfg in configs.items():
            reg = register(fct, mct, cfg)
            shifts.append(f"{reg.height_shift_mm:.0f}")
            for stage, affine_only in (("affine", True), ("deformable", False)):
                carried = propagate(mseg, fct, reg, affine_only=affine_only).array
                covered = coverage(mct, fct, reg, affine_only=affine_only)
                if members is not None:   # carried total ids -> the fixed side's group numbers
                    grouped = np.zeros_like(truth)
                    for g, ids in members.items():
                        grouped[np.isin(carried, ids)] = groups[g][0]
                    carried = grouped
                scores[(name, stage)] = dice_by_label(carried, truth, voxel_ml, groups=groups, within=covered)
        keys = sorted({k for s in scores.values() for k in s})
        sizes = {k: float(np.isin(truth, groups[k] if groups else (int(k),)).sum()) * voxel_ml for k in keys}  # whole
        keys.sort(key=lambda k: -sizes[k])
        cols = list(scores)
        lines.append(f"\n### {moving} onto {fixed} ({time.time() - t0:.0f} s; height shift "
                     f"{' / '.join(shifts)} mm)\n")
        lines.append("| structure | ml in the fixed CT | " + " | ".join(f"{n}, {st}" for n, st in cols) + " |")
        lines.append("|---|---|" + "---|" * len(cols))
        first = len(lines)
        for k in keys:
            label = k if groups else catalogue.organ(int(k)).name
            lines.append(f"| {label} | {sizes[k]:.0f} | "
                         + " | ".join(f"{scores[c].get(k, float('nan')):.3f}" for c in cols) + " |")
        for what, sel in (("all", keys), (f">= {LARGE_ML:.0f} ml", [k for k in keys if sizes[k] >= LARGE_ML])):
            if sel:  # a structure the carried labels miss altogether counts as 0
                means = [np.mean([scores[c].get(k, 0.0) if scores[c].get(k) == scores[c].get(k) else 0.0
                                  for k in sel]) for c in cols]
                lines.append(f"| **mean, {what} ({len(sel)})** | | " + " | ".join(f"**{m:.3f}**" for m in means) + " |")
        print("\n".join(lines[first - 3:]), flush=True)
    return "\n".join(lines)


def write(base: str, onto: str, out: Path, cfg) -> None:
    import SimpleITK as sitk

    from TotalFMLib.atomic import atomic_path
    from TotalFMLib.inputs.ct import load_ct
    from TotalFMLib.inputs.sample_data import fetch
    from TotalFMLib.training.benchmark_bases import base_by_name, load_base
    from TotalFMLib.training.label_propagation import propagate, register

    mct, mseg = load_base(base_by_name(base))
    fct = load_ct(fetch(onto))
    carried = propagate(mseg, fct, register(fct, mct, cfg))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".nii.gz") as tmp:
        sitk.WriteImage(carried.to_sitk(), str(tmp), True)
    print(f"wrote {out}: {base}'s labels carried onto {onto}")


def main(argv=None) -> int:
    from dataclasses import replace

    from TotalFMLib.training.label_propagation import METRICS, RegistrationConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true", help="Dice of labels carried between labelled CTs")
    ap.add_argument("--pairs", default=DEFAULT_PAIRS, help="moving:fixed,... (default %(default)s)")
    ap.add_argument("--out", type=Path, help="also write the --measure tables to this markdown file")
    ap.add_argument("--from", dest="source", default="chest_ct", help="labelled base CT to carry from")
    ap.add_argument("--onto", default="chest_cta", help="sample CT to carry onto")
    ap.add_argument("--write", type=Path, help="label map to write (NIfTI)")
    ap.add_argument("--mesh-mm", type=float, default=RegistrationConfig.bspline_mesh_mm,
                    help="B-spline control-point spacing, 0 for affine only (default %(default)s)")
    ap.add_argument("--grid-mm", type=float, default=RegistrationConfig.grid_mm,
                    help="registration grid (default %(default)s)")
    ap.add_argument("--metric", default=RegistrationConfig.metric,
                    help="mean_squares or mutual_information; with --measure a comma list, measured side by "
                         "side (default %(default)s)")
    args = ap.parse_args(argv)
    if not args.measure and args.write is None:
        ap.error("give --measure or --write FILE")
    metrics = [m for m in args.metric.split(",") if m]
    for m in metrics:
        if m not in METRICS:
            ap.error(f"--metric: unknown metric {m!r}; known: {', '.join(METRICS)}")
    if args.write is not None and len(metrics) != 1:
        ap.error("--write takes one --metric")
    configs = {m: replace(RegistrationConfig(), bspline_mesh_mm=args.mesh_mm, grid_mm=args.grid_mm, metric=m)
               for m in metrics}
    cfg = configs[metrics[0]]
    if args.measure:
        pairs = []
        for p in args.pairs.split(","):
            if p.count(":") != 1:
                ap.error(f"--pairs: {p!r} is not moving:fixed")
            pairs.append(tuple(p.split(":")))
        text = measure(pairs, configs)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            command = "python Training/propagate_labels.py " + " ".join(argv if argv is not None else sys.argv[1:])
            args.out.write_text("# Organ labels carried between labelled CTs by registration: Dice against their own\n\n"
                                f"Written by `{command}`.\n\nSettings: {list(configs.values())}\n" + text + "\n")
    if args.write is not None:
        write(args.source, args.onto, args.write, cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
