"""How much of each inserted finding reaches the demo model's organ crop (see
``TotalFMLib/training/visibility.py``).

    python Training/lesion_visibility.py [--base example_ct_dicom] [--cases 16] [--crop-size 96] [--frames 32]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

PAIRS = (("hypodense lesion", "liver"), ("hypodense lesion", "spleen"), ("hypodense lesion", "pancreas"),
         ("hyperdense lesion", "liver"), ("hyperdense lesion", "spleen"), ("hyperdense lesion", "pancreas"),
         ("atherosclerosis", "aorta"), ("hepatic steatosis", "liver"), ("ascites", "liver"), ("ascites", "spleen"))


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from TotalFMLib.errors import TotalFMError
    from TotalFMLib.training.benchmark_data import BenchmarkConfig
    from TotalFMLib.training.visibility import measure

    d = BenchmarkConfig()
    p = argparse.ArgumentParser(description="How much of each inserted finding reaches the organ crop.")
    p.add_argument("--base", default="example_ct_dicom", help="benchmark base CT (default: the test CT)")
    p.add_argument("--cases", type=int, default=16, help="insertions per (finding, organ), at least 1")
    p.add_argument("--crop-size", type=int, default=d.crop_size)
    p.add_argument("--frames", type=int, default=d.frames)
    p.add_argument("--min-hu", type=float, default=10.0, help="a crop voxel counts when it changes this much")
    p.add_argument("--cache", help="a benchmark's bases/ folder: <base>.npz files are read from it, or "
                                   "written there after the image reading")
    args = p.parse_args(argv)
    if args.cases < 1:
        p.error(f"--cases must be at least 1 (got {args.cases})")
    if args.cache and Path(args.cache).exists() and not Path(args.cache).is_dir():
        p.error(f"--cache {args.cache}: not a folder (give a benchmark's bases/ folder)")
    cfg = BenchmarkConfig(crop_size=args.crop_size, frames=args.frames)
    print(f"base {args.base}, crops {args.crop_size} x {args.crop_size} x {args.frames}, {args.cases} insertions "
          f"each; crop voxels changed by >= {args.min_hu:g} HU (scanner noise in the benchmark: 2-10 HU sd)")
    print("| finding | organ | grid voxels, median | peak change in crop, HU: median [min, max] | "
          "crop voxels changed, median [min, max] | insertions with no crop voxel changed |")
    print("|---|---|---:|---|---|---:|")
    try:
        for finding, organ in PAIRS:
            rows = measure(finding, organ, args.cases, args.base, min_hu=args.min_hu, cfg=cfg, cache=args.cache)
            g = np.array([r.grid_voxels for r in rows]); pk = np.array([r.peak_hu for r in rows])
            n = np.array([r.crop_voxels for r in rows])
            print(f"| {finding} | {organ} | {np.median(g):.0f} | {np.median(pk):.0f} [{pk.min():.0f}, {pk.max():.0f}] | "
                  f"{np.median(n):.0f} [{n.min()}, {n.max()}] | {int((n == 0).sum())} of {len(rows)} |", flush=True)
    except (TotalFMError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from TotalFMLib import runtime

    runtime.setup()  # before torch loads (OpenMP waits passively); threads = physical cores
    sys.exit(main())
