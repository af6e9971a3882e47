"""Linear probe: is a finding in the image embeddings at all, text aside?

    python Training/probe.py --model demo --benchmark BENCH [--holdout B]
                             [--features embedding|tokens|untrained-tokens|pixels]

For every inserted finding, an L2-regularised logistic regression is fitted on the
embeddings of the fold's training crops that can carry it (positives: the crops that
received it) and its AUROC is printed on the fold's training, validation and test cases
(``folds.py``: ``--holdout`` names the held-out patient). A
zero-shot score can only be as good as what the image tower encodes: a probe that cannot
separate the training crops themselves says the image side, not the prompts or the text
tower, is what falls short. Supervised and diagnostic only; the model is not changed.

``--features`` picks what is probed: the model's image embeddings (default), the mean and
max of its encoder's output tokens (before the attention pooling), the same from an
untrained encoder of the same size (seed 0), or plain per-channel intensity percentiles of
the crop (no network at all). Training that taught the encoder something shows as a
margin over the last two.
"""
from __future__ import annotations

import numpy as np
import torch

from . import metrics as M
from .benchmark_data import FINDINGS
from .evaluate import CaseEmbeddings, encode_benchmark
from .native_findings import scored

FEATURES = ("embedding", "tokens", "untrained-tokens", "pixels")
PERCENTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 200):
    """Fits a balanced, L2-regularised logistic regression on standardised ``x``; returns the
    function that scores new rows (same standardisation)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    X = torch.as_tensor((x - mean) / std, dtype=torch.float64)
    Y = torch.as_tensor(y, dtype=torch.float64)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    pos = float(Y.mean())
    weight = torch.where(Y > 0, 0.5 / max(pos, 1e-9), 0.5 / max(1 - pos, 1e-9))  # balanced classes
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, Y, reduction="none")).mean()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_, b_ = w.detach().numpy(), float(b.detach())
    return lambda rows: ((np.asarray(rows, dtype=np.float64) - mean) / std) @ w_ + b_


def _rows(cases: list[CaseEmbeddings], finding: str, split: str):
    x, y = [], []
    for case in cases:
        if case.split != split:
            continue
        for organ, labels, v in zip(case.organs, case.labels, case.vectors):
            if scored(finding, organ, case.native):
                x.append(v)
                y.append(int(finding in labels))
    return np.asarray(x), np.asarray(y)


def encode_features(model, root, splits, features: str = "embedding", progress=None,
                    holdout: str | None = None) -> list[CaseEmbeddings]:
    """Per-crop feature vectors of the fold's cases of ``splits`` (see ``--features``)."""
    from ..errors import InputError
    from ..models.image_tower import build_image_tower

    if features not in FEATURES:
        raise InputError(None, f"unknown features {features!r}; use one of {', '.join(FEATURES)}")
    if features == "embedding":
        return encode_benchmark(model, root, holdout, parts=splits, progress=progress)
    if features == "pixels":
        return encode_benchmark(model, root, holdout, parts=splits, progress=progress, encode=_percentiles)
    tower = model.model.image_tower
    if features == "untrained-tokens":
        with torch.random.fork_rng():  # seed 0 for the weights, the caller's RNG left as it was
            torch.manual_seed(0)
            tower = build_image_tower(model.config.arch, model.config.embed_dim)
    tower = tower.eval().to(model.device)

    def encode(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            tokens = tower.vit.encode_tokens(x.to(model.device)).float().cpu()
            return torch.cat([tokens.mean(1), tokens.amax(1)], dim=1).numpy()

    return encode_benchmark(model, root, holdout, parts=splits, progress=progress, encode=encode)


def _percentiles(x: torch.Tensor) -> np.ndarray:
    """(B, len(PERCENTILES) * C): each channel's intensity percentiles, one sort for all of them."""
    flat = x.flatten(2)  # (B, C, voxels)
    q = flat.quantile(torch.tensor(PERCENTILES, dtype=flat.dtype), dim=2)  # (P, B, C)
    return q.permute(1, 0, 2).reshape(len(x), -1).numpy()


def probe_table(cases: list[CaseEmbeddings], splits=("train", "val", "test")) -> list[dict]:
    """One row per finding with training positives: {"finding", "positives", <split>: AUROC or None}."""
    out = []
    for finding in FINDINGS:
        x, y = _rows(cases, finding, splits[0])
        if not 0 < y.sum() < len(y):
            continue
        score = fit_logistic(x, y)
        row = {"finding": finding, "positives": int(y.sum())}
        for split in splits:
            xs, ys = _rows(cases, finding, split)
            row[split] = M.auroc(ys, score(xs)) if 0 < ys.sum() < len(ys) else None
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from ..progress import progress_bar
    from ..errors import TotalFMError
    from ..totalfm import TotalFM

    p = argparse.ArgumentParser(description="Linear probe of image features (--features) per finding (diagnostic).")
    p.add_argument("--model", default="demo", help='"demo", "official" or a checkpoint path')
    p.add_argument("--benchmark", required=True, help="folder written by Training/build_benchmark.py")
    p.add_argument("--features", choices=FEATURES, default="embedding", help="what is probed (module docstring)")
    p.add_argument("--holdout", default=None, help="the held-out patient of the fold (default: none, no test cases)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    splits = ("train", "val", "test")
    try:
        model = TotalFM.load(args.model)
        with progress_bar("encode", enabled=not args.quiet) as bar:
            cases = encode_features(model, args.benchmark, splits, args.features, progress=bar, holdout=args.holdout)
        rows = probe_table(cases, splits)
    except TotalFMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"features: {args.features}")
    print("| finding | training positives | AUROC train | AUROC val | AUROC test |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['finding']} | {r['positives']} | " + " | ".join(fmt(r[s]) for s in splits) + " |")
    for s in splits:
        vals = [r[s] for r in rows if r[s] is not None]
        if vals:
            print(f"mean AUROC {s}: {np.mean(vals):.3f} over {len(vals)} findings")
    return 0
