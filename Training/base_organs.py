"""The organs that carry the benchmark's findings, patient by patient (the patients it was
built from, ``benchmark.json``): volume, whether the scan
cuts them, and median HU, beside the largest enhancement the builder simulates
(``augment.random_enhancement`` at the reach the benchmark was built with, read from its
``benchmark.json``; ``build_benchmark.py --enhancement-reach`` widens it). A patient whose
organ lies farther above the least enhanced patient's than that simulation reaches has no
training crop that looks like it ("beyond it"; "-" for the organs the simulation leaves as
they are).

    python Training/base_organs.py --benchmark runs/benchmark
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def organ_rows(cache, bases) -> list[dict]:
    """One row per (base CT of ``bases``, organ that can carry a finding) present in it. A
    patient whose labels were carried by registration (``benchmark_bases.CARRIED_BASES``) shows
    only the organs kept from them."""
    import numpy as np

    from TotalFMLib.training.benchmark_bases import load_base
    from TotalFMLib.training.lesions import INSERTIONS
    from TotalFMLib.vocabulary import catalogue

    organs = sorted({o for _, carriers in INSERTIONS.values() for o in carriers})
    rows = []
    for base in bases:
        ct, seg = load_base(base, cache)
        for organ in organs:
            inside = seg.array == catalogue.organ(organ).label_id
            if not inside.any():
                continue
            slices = np.flatnonzero(inside.any(axis=(1, 2)))
            rows.append({"patient": base.patient, "organ": organ,
                         "ml": float(inside.sum() * np.prod(ct.spacing)) / 1000,
                         "cut": bool(slices[0] == 0 or slices[-1] == inside.shape[0] - 1),
                         "median_hu": float(np.median(ct.array[inside]))})
    return rows


def built_reach(benchmark: Path) -> float:
    """The enhancement reach ``benchmark`` was built with (its ``benchmark.json``); the
    default reach when the folder has no such file yet (only its bases/ cache)."""
    from TotalFMLib.training.benchmark_data import BenchmarkConfig, read_summary

    summary = read_summary(benchmark)
    default = BenchmarkConfig.enhancement_reach
    return default if summary is None else float(summary["config"].get("enhancement_reach", default))


def main(argv: list[str] | None = None) -> int:
    from TotalFMLib.errors import TotalFMError
    from TotalFMLib.training.augment import largest_enhancement_hu
    from TotalFMLib.training.benchmark_data import built_bases

    p = argparse.ArgumentParser(description="The finding-carrying organs of the benchmark's patients.")
    p.add_argument("--benchmark", required=True, help="benchmark folder whose bases/ cache the CTs "
                                                       "(loaded from the sample data where it lacks one)")
    args = p.parse_args(argv)
    try:
        reach = built_reach(Path(args.benchmark))
        rows = organ_rows(Path(args.benchmark) / "bases", built_bases(args.benchmark))
    except (TotalFMError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lowest = {}
    for r in rows:
        lowest[r["organ"]] = min(lowest.get(r["organ"], r), r, key=lambda x: x["median_hu"])
    print("| patient | organ | ml | cut by the scan | median HU | above the least enhanced patient's | "
          f"largest simulated enhancement (reach {reach:g}) | beyond it |")
    print("|---|---|---:|---|---:|---:|---:|---|")
    for r in rows:
        low, most = lowest[r["organ"]], largest_enhancement_hu(r["organ"], reach)
        above = r["median_hu"] - low["median_hu"]
        print(f"| {r['patient']} | {r['organ']} | {r['ml']:.0f} | {'yes' if r['cut'] else 'no'} | "
              f"{r['median_hu']:.0f} | {above:+.0f} ({low['patient']}) | {most:+.0f} | "
              f"{('yes' if above > most else 'no') if most else '-'} |")  # '-': the simulation leaves it
    return 0


if __name__ == "__main__":
    sys.exit(main())
