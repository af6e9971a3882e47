"""Command line shared by ``Training/pretrain_videomae.py`` and ``Training/train_contrastive.py``.

    python Training/train_contrastive.py --config Training/configs/demo_contrastive.json \
        --data CACHE --out runs/contrastive [--resume auto|PATH] [--set steps=100 --set optim.lr=1e-4]

Under torchrun the same command runs one process per GPU (or CPU process); see
``distributed.py``. Errors in the inputs print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import TotalFMError


def parser(task: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=f"TotalFM {task} training")
    p.add_argument("--config", required=True, help="JSON or YAML training config (Training/configs/)")
    p.add_argument("--data", required=True, help="crop cache folder (manifest.jsonl + shards)")
    p.add_argument("--out", required=True, help="run folder: metrics, curves, checkpoints, final model")
    p.add_argument("--resume", default=None,
                   help="training checkpoint to continue from, or 'auto' for OUT/checkpoint_last.pt if present")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set steps=50 --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps without changing the schedule (for interrupted runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(task: str, argv: list[str] | None = None) -> int:
    args = parser(task).parse_args(argv)
    from . import distributed as D
    from .loop import seed_everything, train
    from .train_config import apply_overrides, load_train_config

    try:
        cfg = load_train_config(args.config)
        cfg = apply_overrides(cfg, [f"task={task}"] + args.overrides)
        resume = args.resume
        if resume == "auto":
            last = Path(args.out) / "checkpoint_last.pt"
            resume = last if last.is_file() else None
        seed_everything(cfg.seed)
        if task == "videomae":
            from .videomae import VideoMAETask as TaskClass
        else:
            from .contrastive import ContrastiveTask as TaskClass
        result = train(TaskClass(cfg, args.data), cfg, args.out, resume=resume, progress=not args.quiet,
                       max_steps=args.max_steps)
    except (TotalFMError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        D.cleanup()
    if D.env_info().is_main:
        print(f"{task}: step {result['step']}, loss {result['loss']:.4f}, "
              f"{result['seconds_per_step']:.2f} s/step; run folder {args.out}"
              + (f"; model {result['final']}" if result["final"] else ""))
    return 0
