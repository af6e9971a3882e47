"""Peak RSS of analysing one case, measured in a fresh process (run by run_benchmarks.py).

    python Testing/benchmarks/peak_memory.py --model CKPT --ct CT --seg SEG [--one-batch]

Prints one JSON line: peak RSS (VmHWM), organs, seconds. ``--one-batch`` crops every
default organ but encodes only the first batch (the full-size encoder's peak is one batch
of activations; more organs add only their 1.4-14 MB crops).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--ct", required=True)
    parser.add_argument("--seg", required=True)
    parser.add_argument("--one-batch", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from TotalFMLib import TotalFM, runtime

    runtime.setup(args.threads)
    t = time.perf_counter()
    model = TotalFM.load(args.model, device="cpu")
    if args.one_batch:
        crops = model.crops(args.ct, args.seg)
        model.encode_crops(crops.images[:8], batch_size=8)
        organs = len(crops.organs)
    else:
        embeddings = model.encode_image(args.ct, args.seg)
        model.score(embeddings)
        organs = len(embeddings)
    print(json.dumps({"peak_rss_mb": peak_rss_kb() / 1024, "organs": organs, "seconds": time.perf_counter() - t}))


def peak_rss_kb() -> float:
    """This process's peak RSS in KiB: VmHWM, which starts afresh at exec. (ru_maxrss is
    the fallback only: on Linux it keeps the RSS of the parent that forked this process.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main()
