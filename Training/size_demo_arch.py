"""Training speed of candidate demo architectures on this machine, as ratios to the chosen one.

    python Training/size_demo_arch.py [--batch 16] [--steps 5] [--threads N]

Each candidate is the published 3D ViT (``TotalFMLib.models.build_image_tower``) at another
crop size, patch grid, width or depth; one training step is a forward, backward and AdamW
step on a random batch. After a warm-up step each, the candidates take turns, one timed step
each per round, and each keeps its median: a change of load hits all of them alike, so the
ratios hold on a busy machine even where the seconds do not. The demo's choice
(``Training/configs/demo_contrastive.json``) is the row marked *; the README and
Training/BENCHMARK.md quote this table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (crop, frames, patch, frame patch, width, depth, heads)
CANDIDATES = [
    (64, 16, 8, 4, 96, 3, 4),
    (64, 16, 8, 4, 144, 3, 4),
    (64, 16, 8, 4, 192, 4, 6),
    (64, 16, 8, 2, 144, 3, 4),
    (96, 32, 16, 4, 192, 4, 6),
    (96, 32, 8, 4, 192, 4, 6),  # the previous demo model (0.3.0)
]


def chosen() -> tuple:
    arch = json.loads((ROOT / "Training" / "configs" / "demo_contrastive.json").read_text())["model"]["arch"]
    return (arch["image_size"], arch["frames"], arch["image_patch_size"], arch["frame_patch_size"], arch["dim"],
            arch["depth"], arch["heads"])


def _step(tower, opt, x) -> float:
    start = time.perf_counter()
    tower(x).sum().backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - start


def crops_per_second(candidates: list[tuple], batch: int, steps: int) -> list[tuple[float, int, int]]:
    """(crops/s, tokens, parameters) per candidate. The candidates take turns, one step each per
    round, and each gets the median of its rounds, so a change of load hits all of them alike."""
    import statistics

    import torch

    from TotalFMLib.models import build_image_tower

    runs = []
    for size, frames, p, pf, dim, depth, heads in candidates:
        arch = dict(image_size=size, image_patch_size=p, frames=frames, frame_patch_size=pf, dim=dim, depth=depth,
                    heads=heads, mlp_dim=4 * dim, dim_head=dim // heads, out_dim=256)
        torch.manual_seed(0)
        tower = build_image_tower(arch, 256)
        opt = torch.optim.AdamW(tower.parameters())
        x = torch.rand(batch, 3, size, size, frames)
        _step(tower, opt, x)  # warm-up
        runs.append((tower, opt, x, (size // p) ** 2 * (frames // pf)))
    times = [[] for _ in runs]
    for _ in range(steps):
        for k, (tower, opt, x, _tokens) in enumerate(runs):
            times[k].append(_step(tower, opt, x))
    return [(batch / statistics.median(t), tokens, sum(q.numel() for q in tower.parameters()))
            for t, (tower, _opt, _x, tokens) in zip(times, runs)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed rounds (one step per candidate each, after a warm-up)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    args = p.parse_args(argv)
    import torch

    from TotalFMLib.runtime import physical_cores

    torch.set_num_threads(args.threads or physical_cores())
    mine = chosen()
    rows = [(c, *r) for c, r in zip(CANDIDATES, crops_per_second(CANDIDATES, args.batch, args.steps))]
    base = next(r[1] for r in rows if r[0] == mine)
    print(f"training steps at batch {args.batch}, {torch.get_num_threads()} threads; ratio = crops/s against the "
          "demo's choice (*)")
    print("| crop | patches | tokens | width x depth | parameters | crops/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for (size, frames, pp, pf, dim, depth, _), speed, tokens, params in rows:
        mark = " *" if (size, frames, pp, pf, dim, depth, _) == mine else ""
        print(f"| {size}x{size}x{frames}{mark} | {pp}x{pp}x{pf} | {tokens} | {dim} x {depth} | {params / 1e6:.2f} M | "
              f"{speed:.1f} | {speed / base:.2f} |")
    return 0


if __name__ == "__main__":
    from TotalFMLib import runtime

    runtime.setup()
    sys.exit(main())
