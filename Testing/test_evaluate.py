"""Benchmark evaluation: an oracle embedding must score perfectly, its negation must not; the
command runs end to end with a real (tiny, untrained) checkpoint on a tiny real benchmark."""
from __future__ import annotations

import re

import numpy as np
import pytest

from TotalFMLib.results import ANY_LESION
from TotalFMLib.training import evaluate as E
from TotalFMLib.training.benchmark_data import FINDINGS
from TotalFMLib.training.lesions import insertable

TASKS = [ANY_LESION] + list(FINDINGS)
NAMES = sorted(FINDINGS, key=len, reverse=True)


def _oracle_text(texts):
    """Unit vector per prompt: +/- the axis of the finding it names (any lesion: axis 0)."""
    out = np.zeros((len(texts), len(TASKS)))
    for i, t in enumerate(texts):
        named = next((f for f in NAMES if f in t.lower()), ANY_LESION)
        normal = re.search(r"\b(without|no|not|normal)\b", t, re.I) is not None
        out[i, TASKS.index(named)] = -1.0 if normal else 1.0
    return out


def _oracle_cases(rng, sign=1.0):
    organs = ["liver", "spleen", "kidney_left", "aorta", "stomach"]
    cases = []
    for split, n in (("val", 8), ("test", 12)):
        for k in range(n):
            labels, vectors = [], []
            for organ in organs:
                options = [f for f in FINDINGS if insertable(f, organ)]
                found = [str(rng.choice(options))] if options and rng.random() < 0.5 else []
                v = np.array([1.0 if (bool(found) if t == ANY_LESION else t in found) else -1.0 for t in TASKS])
                labels.append(found)
                vectors.append(sign * v / np.linalg.norm(v))
            cases.append(E.CaseEmbeddings(f"{split}-{k}", split, organs, labels, np.array(vectors)))
    return cases


def test_a_finding_the_patient_shows_natively_is_not_scored():
    from dataclasses import replace

    from TotalFMLib.training.probe import _rows
    from TotalFMLib.training.query_benchmark import finding_query_ranks

    case = _oracle_cases(np.random.default_rng(0))[-1]
    case.labels[2] = ["stone"]                        # an inserted stone in the left kidney ...
    rows = E.score_rows([case], _oracle_text, logit_scale=np.log(1 / 0.07))
    assert ("kidney_left", "stone") in {(r["organ"], r["finding"]) for r in rows}
    native = replace(case, native=frozenset({("kidney_left", "stone")}))  # ... of a patient who has stones
    kept = {(r["organ"], r["finding"]) for r in E.score_rows([native], _oracle_text, logit_scale=np.log(1 / 0.07))}
    assert ("kidney_left", "stone") not in kept and ("kidney_left", ANY_LESION) not in kept
    assert ("kidney_left", "renal hypodensities") in kept and ("liver", ANY_LESION) in kept
    assert len(_rows([native], "stone", "test")[1]) == len(_rows([case], "stone", "test")[1]) - 1

    from types import SimpleNamespace

    def search(embeddings, query):  # organs in case order: only which queries are asked matters here
        return [SimpleNamespace(organ=o, rank=k + 1, matched=False) for k, o in enumerate(embeddings)]

    assert any(r["finding"] == "stone" for r in finding_query_ranks([case], search, "test"))
    assert not any(r["finding"] == "stone" for r in finding_query_ranks([native], search, "test"))


@pytest.mark.parametrize("style", E.STYLES)
def test_oracle_embeddings_score_perfectly_and_their_negation_does_not(style):
    rng = np.random.default_rng(0)
    rows = E.score_rows(_oracle_cases(rng), _oracle_text, logit_scale=np.log(1 / 0.07), style=style)
    assert {r["finding"] for r in rows} <= set(TASKS)
    assert all(insertable(r["finding"], r["organ"]) for r in rows if r["finding"] != ANY_LESION)
    res = E.evaluate_rows(rows, n_boot=50, seed=0)
    findings, organs = res["findings"], res["organs"]
    assert findings[-1].group == "mean" and findings[-1].auroc == 1.0
    assert all(r.auroc == 1.0 for r in findings[:-1] if not np.isnan(r.auroc))
    assert organs[-1].f1 == 1.0  # val thresholds transfer perfectly
    assert {r.group for r in organs[:-1]} == {"liver", "spleen", "kidney_left", "aorta", "stomach"}
    cal = E.calibration_from(res)
    assert set(cal[ANY_LESION]) >= {"*", "liver"} and all("*" in cal[f] for f in cal if f not in (ANY_LESION, "*"))
    assert 0.0 <= cal["*"] <= 1.0  # the pooled threshold, for findings the benchmark does not insert

    bad = E.score_rows(_oracle_cases(np.random.default_rng(0), sign=-1.0), _oracle_text, np.log(1 / 0.07), style)
    assert E.evaluate_rows(bad, n_boot=20)["findings"][-1].auroc == 0.0


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory, sample):
    from TotalFMLib.training import benchmark_data as B

    for name in ("example_ct", "example_seg", "example_ct_dicom", "example_seg_dicom"):
        sample(name)
    cfg = B.BenchmarkConfig(cases={"train": 0, "eval": 2}, crop_size=32, frames=8, bases=("example_ct", "example_ct_dicom"),
                            organs=("liver", "spleen", "pancreas", "aorta"), finding_rate=0.6, seed=1)
    root = tmp_path_factory.mktemp("bench")
    B.build_benchmark(root, cfg)
    return root


def test_command_runs_end_to_end_with_a_real_checkpoint(tiny_bench, tiny_checkpoint, tmp_path, capsys):
    from TotalFMLib.zeroshot.scoring import threshold_for
    from TotalFMLib.training.metrics import read_calibration

    out = tmp_path / "eval"
    code = E.main(["--model", str(tiny_checkpoint), "--benchmark", str(tiny_bench), "--out", str(out),
                   "--baseline", str(tiny_checkpoint), "--bootstrap", "20", "--holdout", "B", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    for name in ("organ-separated | organ", "organ-separated | plain", "whole-volume baseline | organ",
                 "whole-volume baseline | plain"):
        assert f"| {name} |" in printed
    for f in ("summary.md", "findings.md", "organs.md", "scores.csv", "results.json", "calibration.json",
              "roc_findings.png", "roc_organs.png", "roc_compare.png"):
        assert (out / f).stat().st_size > 0, f
    cal = read_calibration(out / "calibration.json")
    t = threshold_for(cal, ANY_LESION, "liver")  # the scorer accepts what we wrote
    assert 0.0 <= t <= 1.0
    import csv

    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert {r["split"] for r in rows} == {"val", "test"}
    whole = [r for r in rows if r["variant"] == "whole-volume baseline" and r["prompts"] == "organ"
             and r["finding"] == ANY_LESION]
    by_case = {}
    for r in whole:  # one embedding per case: organs differ only through their prompts
        by_case.setdefault(r["case"], []).append(r["organ"])
    assert all(len(v) >= 2 for v in by_case.values())


def test_crop_size_mismatch_is_a_clear_error(tiny_bench, tiny_checkpoint, tmp_path, capsys):
    from TotalFMLib.training import benchmark_data as B

    cfg = B.BenchmarkConfig(cases={"train": 0, "eval": 1}, crop_size=24, frames=4, bases=("example_ct_dicom",),
                            organs=("liver",), seed=1)
    other = tmp_path / "bench24"
    B.build_benchmark(other, cfg)
    code = E.main(["--model", str(tiny_checkpoint), "--benchmark", str(other), "--out", str(tmp_path / "e"),
                   "--holdout", "B", "--quiet"])
    assert code == 2 and "the model expects (3, 32, 32, 8)" in capsys.readouterr().err
