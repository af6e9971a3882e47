"""Per-step metrics log (JSONL) and a PNG plot of its curves."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..atomic import atomic_path


class MetricsLog:
    """Append one JSON object per logged step to ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int):
        """Drop lines beyond ``step`` (a resumed run rewrites what followed its checkpoint)."""
        rows = [r for r in read_log(self.path) if r.get("step", 0) <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def write(self, row: dict):
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(log_path: str | Path, png_path: str | Path, keys: tuple[str, ...] | None = None) -> Path | None:
    """One panel per metric (loss, lr, logit_scale, ...) against step; None if the log is empty."""
    rows = read_log(log_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if keys is None:
        keys = tuple(k for k in rows[0] if k not in ("step", "epoch", "seconds")
                     and isinstance(rows[0][k], (int, float)))
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, key in zip(axes[:, 0], keys):
        values = [r.get(key, math.nan) for r in rows]
        ax.plot(steps, values, lw=1)
        if key == "loss" and len(values) > 20:  # running mean over ~5% of the run
            w = max(2, len(values) // 20)
            smooth = [sum(values[max(0, i - w + 1):i + 1]) / len(values[max(0, i - w + 1):i + 1])
                      for i in range(len(values))]
            ax.plot(steps, smooth, lw=2)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(png_path)
