"""How many of a benchmark's normal organ crops show a neighbour's finding (see
``TotalFMLib/training/visibility.neighbour_findings``).

    python Training/neighbour_findings.py --benchmark runs/benchmark
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def main(argv: list[str] | None = None) -> int:
    from TotalFMLib.errors import TotalFMError
    from TotalFMLib.training.visibility import neighbour_findings

    p = argparse.ArgumentParser(description="Normal organ crops that show a neighbouring organ's finding.")
    p.add_argument("--benchmark", required=True, help="benchmark folder (Training/build_benchmark.py)")
    args = p.parse_args(argv)
    try:
        counts = neighbour_findings(args.benchmark)  # a missing or broken benchmark: one line
    except (TotalFMError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("| finding | positive crops | negative crops | negatives showing a neighbour's finding of this type |")
    print("|---|---:|---:|---:|")
    for finding, c in counts.items():
        share = 100 * c["negatives_showing_it"] / max(c["negatives"], 1)
        print(f"| {finding} | {c['positives']} | {c['negatives']} | {c['negatives_showing_it']} ({share:.1f} %) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
