"""Metrics against hand-worked cases and scikit-learn on random data; calibration file round trip."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from TotalFMLib.errors import InputError
from TotalFMLib.training.metrics import auroc, average_ranks, binary_stats, bootstrap_ci, f1_at, format_table, metric_table, operating_threshold, plot_roc, read_calibration, roc_curve, write_calibration, youden_threshold


def test_auroc_hand_cases():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5                     # a tie counts one half
    # pairs (pos, neg): (0.8>0.1) (0.8>0.4) (0.8=0.8 -> .5) (0.35>0.1) (0.35<0.4) (0.35<0.8) -> 3.5/6
    assert auroc([1, 1, 0, 0, 0], [0.8, 0.35, 0.1, 0.4, 0.8]) == pytest.approx(3.5 / 6)
    assert math.isnan(auroc([1, 1], [0.2, 0.3]))
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])


def test_auroc_matches_sklearn_on_random_data():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for n in (5, 40, 500):
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        s = np.round(rng.normal(size=n) + y * 0.7, 1)  # rounding makes many ties
        assert auroc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
        fpr, tpr, thr = roc_curve(y, s)
        sfpr, stpr, sthr = sk.roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(fpr, sfpr)
        np.testing.assert_allclose(tpr, stpr)
        np.testing.assert_allclose(thr[1:], sthr[1:])
        t = youden_threshold(y, s)
        assert f1_at(y, s, t) == pytest.approx(sk.f1_score(y, s >= t))


def test_roc_youden_and_f1_hand_case():
    y = [0, 0, 1, 0, 1, 1]
    s = [0.1, 0.3, 0.35, 0.4, 0.8, 0.9]
    fpr, tpr, thr = roc_curve(y, s)
    assert thr[0] == np.inf and fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    # at 0.35: tpr 1, fpr 1/3 -> J 2/3 (best); at 0.8: tpr 2/3, fpr 0 -> J 2/3 too; lowest wins
    assert youden_threshold(y, s) == pytest.approx(0.35)
    st = binary_stats(y, s, 0.35)
    assert (st.tp, st.fp, st.tn, st.fn) == (3, 1, 2, 0)
    assert st.f1 == pytest.approx(2 * 3 / (2 * 3 + 1))
    assert f1_at(y, s, 0.8) == pytest.approx(2 * 2 / (2 * 2 + 1))
    with pytest.raises(InputError):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(InputError):
        auroc([0, 1, 1], [0.1, 0.2])


def test_operating_threshold_keeps_normal_organs_unflagged():
    """Youden's J where it flags at most 2 % of the normal organs; raised above the normals
    otherwise (J would flag a normal organ to catch one more finding)."""
    rng = np.random.default_rng(0)
    normal, abnormal = rng.normal(0.4, 0.05, 200), rng.normal(0.6, 0.05, 200)
    y, s = np.r_[np.zeros(200), np.ones(200)], np.r_[normal, abnormal]
    t = operating_threshold(y, s)
    assert (normal >= t).mean() <= 0.02 and t >= youden_threshold(y, s)
    assert (abnormal >= t).mean() > 0.5
    overlapping = np.r_[rng.normal(0.5, 0.1, 200), rng.normal(0.55, 0.1, 200)]
    t = operating_threshold(y, overlapping)
    assert (overlapping[:200] >= t).mean() <= 0.02 and t > youden_threshold(y, overlapping)
    separable = np.r_[np.full(50, 0.1), np.full(50, 0.9)]
    assert operating_threshold(np.r_[np.zeros(50), np.ones(50)], separable) == youden_threshold(
        np.r_[np.zeros(50), np.ones(50)], separable)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(60), np.ones(40)].astype(int)
    s = rng.normal(size=100) + y
    a = auroc(y, s)
    lo, hi = bootstrap_ci(y, s, n_boot=300, seed=7)
    assert lo < a < hi and 0 < hi - lo < 0.4
    assert bootstrap_ci(y, s, n_boot=300, seed=7) == (lo, hi)
    assert bootstrap_ci(y, s, n_boot=300, seed=8) != (lo, hi)


def test_metric_table_per_group_with_validation_thresholds():
    rng = np.random.default_rng(1)
    groups = np.repeat(["liver", "spleen", "kidney_left"], 50)
    y = rng.integers(0, 2, 150)
    s = rng.normal(size=150) + 2.0 * y * (groups != "kidney_left")
    rows = metric_table(y, s, groups, thresholds={"liver": 0.5}, n_boot=100, seed=0)
    by = {r.group: r for r in rows}
    assert [r.group for r in rows] == ["kidney_left", "liver", "spleen", "mean"]
    assert by["liver"].threshold == 0.5
    assert by["liver"].auroc > 0.8 and by["kidney_left"].auroc < 0.75
    assert by["liver"].auroc_lo <= by["liver"].auroc <= by["liver"].auroc_hi
    assert by["mean"].auroc == pytest.approx(np.mean([by[g].auroc for g in ("liver", "spleen", "kidney_left")]))
    assert np.isnan(by["mean"].auroc_lo)  # no clusters given: no interval for the mean
    cases = np.tile(np.arange(50), 3)      # organ i of case c: the three organs share a case
    clustered = metric_table(y, s, groups, thresholds={"liver": 0.5}, n_boot=100, seed=0, clusters=cases)
    mean = clustered[-1]
    assert mean.auroc == by["mean"].auroc and mean.auroc_lo < mean.auroc < mean.auroc_hi
    assert mean.f1_lo <= mean.f1 <= mean.f1_hi
    text = format_table(rows, "organ")
    assert text.splitlines()[0].startswith("| organ |") and "| liver | 50 |" in text


def test_cluster_bootstrap_resamples_whole_clusters():
    from TotalFMLib.training.metrics import cluster_bootstrap

    clusters = ["a", "a", "b", "b", "c"]
    seen = []
    cluster_bootstrap(lambda idx: seen.append(sorted(idx.tolist())) or 0.0, clusters, n_boot=30, seed=1)
    for idx in seen:
        assert 3 <= len(idx) <= 6  # three draws among clusters of sizes 2, 2, 1
        assert idx.count(0) == idx.count(1) and idx.count(2) == idx.count(3)  # members travel together


def test_plot_roc_writes_png(tmp_path):
    out = plot_roc({"a": ([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.7]), "b": ([0, 1, 1], [0.5, 0.2, 0.6])},
                   tmp_path / "roc.png", title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]  # no temp file left


def test_calibration_round_trip_and_lookup(tmp_path):
    path = write_calibration(tmp_path / "cal.json",
                             {"hypodense lesion": 0.42, "stone": {"*": 0.5, "kidney_left": 0.61}},
                             meta={"split": "val"})
    doc = json.loads(path.read_text())
    assert doc["kind"] == "totalfm-calibration" and doc["meta"] == {"split": "val"}
    cal = read_calibration(path)
    assert cal["hypodense lesion"] == 0.42
    from TotalFMLib.zeroshot.scoring import DEFAULT_THRESHOLD, threshold_for  # the scorer reads what we write

    assert threshold_for(cal, "stone", "kidney_left") == 0.61
    assert threshold_for(cal, "stone", "kidney_right") == 0.5
    assert threshold_for(cal, "hypodense lesion", "liver") == 0.42
    assert threshold_for(cal, "ascites", "liver") == DEFAULT_THRESHOLD
    (tmp_path / "bare.json").write_text('{"ascites": 0.2}')
    assert read_calibration(tmp_path / "bare.json") == {"ascites": 0.2}
    (tmp_path / "bad.json").write_text('{"ascites": "high"}')
    with pytest.raises(InputError, match="bad.json: .*not a number"):
        read_calibration(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not found"):
        read_calibration(tmp_path / "missing.json")
    with pytest.raises(InputError):
        write_calibration(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists()
