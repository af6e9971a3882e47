"""The contrast the benchmark gave its focal lesions, patient by patient: what each insertion
record says (``lesions.insert_focal_lesion``'s ``contrast_hu``, signed), by finding and organ,
with how many hypodense lesions sit at the floor (``lesions.HYPODENSE_FLOOR_HU``). A hypodense
lesion goes no lower than water, so in an unenhanced organ it is fainter than the 50-110 HU
asked for; a held-out patient whose lesions are fainter than every training patient's was
never shown to the oracle (``Training/results/experiment_oracle_inside_all_cases.md``).

    python Training/inserted_contrast.py --benchmark runs/benchmark
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def contrast_rows(benchmark: Path) -> list[dict]:
    """One row per (patient, finding, organ) of the focal lesions in ``benchmark``'s shards."""
    import numpy as np

    from TotalFMLib.training.benchmark_data import load_shard, read_manifest
    from TotalFMLib.training.lesions import HYPODENSE_FLOOR_HU

    found: dict[tuple, list[float]] = {}
    for entry in read_manifest(benchmark):
        shard = load_shard(benchmark, entry, mmap=True)
        for record in json.loads(shard["records"]):
            if "contrast_hu" in record["params"]:
                key = (entry["patient"], record["finding"], record["organ"])
                found.setdefault(key, []).append(float(record["params"]["contrast_hu"]))
    rows = []
    for (patient, finding, organ), values in sorted(found.items()):
        hu = np.abs(values)
        rows.append({"patient": patient, "finding": finding, "organ": organ, "lesions": len(hu),
                     "median": float(np.median(hu)), "low": float(hu.min()), "high": float(hu.max()),
                     # None for hyperdense lesions, which have no floor
                     "at_floor": int(sum(-HYPODENSE_FLOOR_HU <= v < 0 for v in values)) if min(values) < 0 else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    from TotalFMLib.errors import TotalFMError

    p = argparse.ArgumentParser(description="The focal lesions' inserted contrast, patient by patient.")
    p.add_argument("--benchmark", required=True, type=Path, help="benchmark folder (Training/build_benchmark.py)")
    args = p.parse_args(argv)
    try:
        rows = contrast_rows(args.benchmark)
    except (TotalFMError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.benchmark}: no focal lesion in its shards", file=sys.stderr)
        return 2
    print("| patient | finding | organ | lesions | contrast, HU: median [min, max] | hypodense at the floor |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        floor = "-" if r["at_floor"] is None else str(r["at_floor"])
        print(f"| {r['patient']} | {r['finding']} | {r['organ']} | {r['lesions']} | "
              f"{r['median']:.0f} [{r['low']:.0f}, {r['high']:.0f}] | {floor} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
