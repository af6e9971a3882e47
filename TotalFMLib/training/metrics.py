"""Evaluation metrics: AUROC, ROC curves, Youden's J, F1, bootstrap intervals, tables, plots,
and the calibration file (finding -> threshold) whose thresholds ``TotalFMLib.zeroshot.scoring`` uses.

Everything takes plain arrays: ``labels`` (0/1) and ``scores`` (higher = more abnormal).
A prediction is positive when ``score >= threshold``. Metrics that need both classes
return ``nan`` when one is missing.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError

CALIBRATION_KIND = "totalfm-calibration"


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise InputError(None, f"labels ({y.size}) and scores ({s.size}) differ in length")
    if not np.all((y == 0) | (y == 1)):
        raise InputError(None, "labels must be 0 or 1")
    if not np.all(np.isfinite(s)):
        raise InputError(None, "scores must be finite numbers")
    return y.astype(bool), s


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_v = values[order]
    # start index of each run of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_v)) + 1]
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auroc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg)); ties count one half."""
    y, s = _arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds decreasing from +inf; point i uses ``score >= thresholds[i]``."""
    y, s = _arrays(labels, scores)
    n_pos, n_neg = y.sum(), (~y).sum()
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = np.cumsum(~y_sorted)[last_of_run]
    tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(len(tp) + 1, np.nan)
    fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(len(fp) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s_sorted[last_of_run]]


def youden_threshold(labels, scores) -> float:
    """The score threshold that maximises Youden's J = TPR - FPR (the lowest such one).

    With one class missing there is no J; the threshold is then the median score.
    """
    y, s = _arrays(labels, scores)
    if y.all() or not y.any():
        return float(np.median(s))
    fpr, tpr, thr = roc_curve(y, s)
    j = tpr - fpr
    best = int(np.flatnonzero(j == j[1:].max())[-1]) if len(j) > 1 else 0
    return float(thr[max(best, 1)])


NORMAL_FLAG_RATE = 0.02  # at most this share of normal organs may be flagged at an operating point


def operating_threshold(labels, scores, max_normal_rate: float = NORMAL_FLAG_RATE) -> float:
    """Youden's J threshold, raised where needed so that at most ``max_normal_rate`` of the
    negatives (normal organs) score at or above it: a reviewer must not see normal anatomy
    flagged, even where J would trade that for sensitivity."""
    y, s = _arrays(labels, scores)
    t = youden_threshold(y, s)
    negatives = np.sort(s[~y.astype(bool)])
    if negatives.size:
        k = int(np.floor(max_normal_rate * negatives.size))  # negatives allowed at or above
        bound = negatives[negatives.size - k - 1] if k < negatives.size else -np.inf
        t = max(t, float(np.nextafter(bound, np.inf)))
    return float(min(t, 1.0))


@dataclass
class BinaryStats:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0


def binary_stats(labels, scores, threshold: float) -> BinaryStats:
    y, s = _arrays(labels, scores)
    pred = s >= threshold
    return BinaryStats(float(threshold), int((pred & y).sum()), int((pred & ~y).sum()),
                       int((~pred & ~y).sum()), int((~pred & y).sum()))


def f1_at(labels, scores, threshold: float) -> float:
    """F1 of ``score >= threshold``; 0 when there is nothing to find and nothing flagged."""
    return binary_stats(labels, scores, threshold).f1


def bootstrap_ci(labels, scores, metric: Callable[[np.ndarray, np.ndarray], float] = auroc,
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                 stratified: bool = True) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(labels, scores)``.

    Stratified: positives and negatives are resampled separately so every replicate
    keeps the class counts. Replicates giving nan are skipped; (nan, nan) if all do.
    """
    y, s = _arrays(labels, scores)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    values = []
    for _ in range(int(n_boot)):
        if stratified:
            idx = np.r_[rng.choice(pos, len(pos)) if len(pos) else pos,
                        rng.choice(neg, len(neg)) if len(neg) else neg].astype(int)
        else:
            idx = rng.integers(0, len(y), len(y))
        values.append(metric(y[idx], s[idx]))
    return _percentile_interval(values, alpha)


def cluster_bootstrap(statistic: Callable[[np.ndarray], float], clusters, n_boot: int = 1000,
                      alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` when whole clusters (e.g. cases, whose
    organs are not independent) are resampled with replacement. nan replicates are skipped."""
    clusters = np.asarray(list(clusters), dtype=object)
    names, inverse = np.unique(clusters.astype(str), return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(names))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n_boot)):
        pick = rng.integers(0, len(members), len(members))
        values.append(statistic(np.concatenate([members[k] for k in pick])))
    return _percentile_interval(values, alpha)


def _percentile_interval(values, alpha: float) -> tuple[float, float]:
    """(alpha/2, 1-alpha/2) quantiles of the bootstrap replicates, nan ones skipped."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def mean_over_groups(metric: Callable[[np.ndarray, np.ndarray, str], float], labels, scores, groups,
                     index: np.ndarray | None = None) -> float:
    """Unweighted mean of ``metric(labels, scores, group)`` over the groups where it is defined."""
    y, s = _arrays(labels, scores)
    g = np.asarray(list(groups), dtype=object)
    if index is not None:
        y, s, g = y[index], s[index], g[index]
    vals = [metric(y[g == name], s[g == name], name) for name in set(g.tolist())]
    vals = [v for v in vals if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


# --------------------------------------------------------------------------- tables

@dataclass
class MetricRow:
    group: str            # organ, finding, or "mean"
    n: int
    positives: int
    auroc: float
    auroc_lo: float
    auroc_hi: float
    threshold: float
    f1: float
    f1_lo: float
    f1_hi: float

    def as_dict(self) -> dict:
        return asdict(self)


def metric_table(labels, scores, groups: Iterable[str],
                 thresholds: Mapping[str, float] | float | None = None,
                 n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, clusters=None) -> list[MetricRow]:
    """One row per group (sorted) plus a final "mean" row (unweighted mean over the
    groups with a defined AUROC / F1).

    ``thresholds``: one number, a {group: threshold} map (groups missing from it use
    Youden's J on their own data: pass validation thresholds to avoid that), or None for
    Youden's J on each group's own data. Group rows get stratified bootstrap intervals;
    the mean row's intervals resample ``clusters`` (e.g. case ids) when given, else nan.
    """
    y, s = _arrays(labels, scores)
    g = np.asarray(list(groups), dtype=object)
    if g.shape != y.shape:
        raise InputError(None, f"groups ({g.size}) and labels ({y.size}) differ in length")
    rows = []
    for name in sorted(set(g.tolist())):
        m = g == name
        yy, ss = y[m], s[m]
        if isinstance(thresholds, (int, float)):
            t = float(thresholds)
        elif thresholds is not None and name in thresholds:
            t = float(thresholds[name])
        else:
            t = youden_threshold(yy, ss)
        a = auroc(yy, ss)
        a_lo, a_hi = bootstrap_ci(yy, ss, auroc, n_boot, alpha, seed)
        f = f1_at(yy, ss, t) if yy.any() else float("nan")
        f_lo, f_hi = bootstrap_ci(yy, ss, lambda a_, b_: f1_at(a_, b_, t), n_boot, alpha, seed) \
            if yy.any() else (float("nan"), float("nan"))
        rows.append(MetricRow(str(name), int(m.sum()), int(yy.sum()), a, a_lo, a_hi, t, f, f_lo, f_hi))
    if rows:
        used = {r.group: r.threshold for r in rows}

        def auroc_of(yy, ss, _):
            return auroc(yy, ss)

        def f1_of(yy, ss, name):
            return f1_at(yy, ss, used[name]) if yy.any() else float("nan")

        nan2 = (float("nan"), float("nan"))
        a_ci = cluster_bootstrap(lambda i: mean_over_groups(auroc_of, y, s, g, i), clusters, n_boot, alpha,
                                 seed) if clusters is not None else nan2
        f_ci = cluster_bootstrap(lambda i: mean_over_groups(f1_of, y, s, g, i), clusters, n_boot, alpha,
                                 seed) if clusters is not None else nan2
        rows.append(MetricRow("mean", int(len(y)), int(y.sum()), mean_over_groups(auroc_of, y, s, g), *a_ci,
                              float("nan"), mean_over_groups(f1_of, y, s, g), *f_ci))
    return rows


def format_table(rows: list[MetricRow], title: str = "group") -> str:
    """Markdown table of metric rows (AUROC and F1 with their intervals)."""
    def num(v):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"
    lines = [f"| {title} | n | positives | AUROC [95% CI] | threshold | F1 [95% CI] |",
             "|---|---:|---:|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r.group} | {r.n} | {r.positives} | {num(r.auroc)} [{num(r.auroc_lo)}, "
                     f"{num(r.auroc_hi)}] | {num(r.threshold)} | {num(r.f1)} [{num(r.f1_lo)}, {num(r.f1_hi)}] |")
    return "\n".join(lines)


def plot_roc(curves: Mapping[str, tuple], path: str | os.PathLike, title: str = "ROC") -> Path:
    """Write one PNG with a ROC curve per entry ``name -> (labels, scores)``; AUROC in the legend."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        if np.isnan(fpr).any() or np.isnan(tpr).any():
            continue
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUROC {auroc(labels, scores):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7)
    else:  # every curve undefined (one class only): say so on the plot
        ax.text(0.5, 0.5, "no finding with both classes", ha="center", va="center", color="0.4")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


# --------------------------------------------------------------------------- calibration

def write_calibration(path: str | os.PathLike, thresholds: Mapping[str, float | Mapping[str, float]],
                      meta: Mapping | None = None) -> Path:
    """Write ``{finding: threshold}`` or ``{finding: {"*": t, organ: t, ...}}`` as JSON.

    The thresholds are what ``ModelConfig.calibration`` holds and ``scoring.threshold_for``
    reads ("*" is the finding's threshold for organs without their own; the scorer's
    scores, hence its thresholds, lie in [0, 1]). File layout: ``{"kind":
    "totalfm-calibration", "version": 1, "thresholds": {...}, "meta": {...}}``. Written
    atomically.
    """
    doc = {"kind": CALIBRATION_KIND, "version": 1, "thresholds": _clean_thresholds(thresholds),
           "meta": dict(meta or {})}
    path = Path(path)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _clean_thresholds(thresholds: Mapping) -> dict:
    """The thresholds with string keys and float values; InputError (no path) otherwise."""
    return {str(finding): ({str(k): _finite(v, finding) for k, v in value.items()}
                           if isinstance(value, Mapping) else _finite(value, finding))
            for finding, value in thresholds.items()}


def _finite(v, finding) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(None, f"calibration threshold for {finding!r} is not a number: {v!r}") from None
    if not math.isfinite(f):
        raise InputError(None, f"calibration threshold for {finding!r} is not finite: {v!r}")
    return f


def read_calibration(path: str | os.PathLike) -> dict[str, float | dict[str, float]]:
    """Thresholds of a calibration file (also accepts a bare ``{finding: threshold}`` JSON)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "calibration file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"not a readable JSON calibration file ({e.__class__.__name__})") from None
    if isinstance(doc, dict) and doc.get("kind") == CALIBRATION_KIND:
        doc = doc.get("thresholds")
    if not isinstance(doc, dict):
        raise InputError(path, "calibration JSON must map finding names to thresholds")
    try:
        return _clean_thresholds(doc)
    except InputError as e:
        raise InputError(path, e.problem) from None
