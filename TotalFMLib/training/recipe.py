"""The demo model's recipe, as steps the two commands share (``Training/make_demo_model.py``:
the bundled model; ``Training/evaluate_folds.py``: leave-one-patient-out evaluation).

VideoMAE pre-training of the image encoder (``configs/demo_pretrain.json``, on the fold's
training patients only), then one contrastive training of the organ-separated model (``configs/demo_contrastive.json``:
token objective, organ-balanced batches, augmentation as crops are read), and of the
whole-volume baseline at equal compute: the same config, steps, batch size, architecture,
text tower and initialisation; only the data (one whole-volume crop per case against the
whole report; random batches; text up to 256 tokens) and no token objective (it has no
lesion maps). Then one fold's figures: zero-shot scores of both models against the held-out
patient (``evaluate.run_evaluation``), the probes (plain intensity percentiles, an untrained
encoder, the trained encoder), the supervised oracle, and the query benchmark.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

WHOLE_OVERRIDES = ["data_view=whole_volume", "contrastive.sampler=random", "model.text.max_length=256",
                   "contrastive.token_weight=0", "augment.enabled=false"]


def pretrain(config: str | Path, bench: str | Path, out: str | Path, holdout: str | None = None,
             quiet: bool = True) -> Path:
    """VideoMAE pre-training (resumed when ``out`` holds a checkpoint); the image-encoder file."""
    from .entry import main

    out = Path(out)
    done = out / "image_encoder.pt"
    if done.is_file():
        return done
    argv = ["--config", str(config), "--data", str(bench), "--out", str(out), "--resume", "auto",
            "--set", f"holdout={holdout or ''}"] + (["--quiet"] if quiet else [])
    if main("videomae", argv) != 0:
        raise RuntimeError(f"pre-training into {out} failed (see its metrics.jsonl)")
    return done


def train(config: str | Path, bench: str | Path, out: str | Path, holdout: str | None = None,
          whole_volume: bool = False, overrides: list[str] | None = None, quiet: bool = True) -> Path:
    """Contrastive training (resumed when ``out`` holds a checkpoint); the final model file."""
    from .entry import main

    out = Path(out)
    if (out / "model.pt").is_file():
        return out / "model.pt"
    sets = [f"holdout={holdout or ''}"] + (WHOLE_OVERRIDES if whole_volume else []) + list(overrides or [])
    argv = ["--config", str(config), "--data", str(bench), "--out", str(out), "--resume", "auto"]
    argv += ["--quiet"] if quiet else []
    for s in sets:
        argv += ["--set", s]
    if main("contrastive", argv) != 0:
        raise RuntimeError(f"training into {out} failed (see its metrics.jsonl)")
    return out / "model.pt"


def _mean_auroc(rows: list[dict]) -> tuple[float | None, dict]:
    aurocs = {r["finding"]: r["test"] for r in rows if r.get("test") is not None}
    return (float(np.mean(list(aurocs.values()))) if aurocs else None), aurocs


def probe_results(model, bench, holdout: str, features: str) -> dict:
    """A linear probe of ``features`` fitted on the fold's training crops, AUROC on the held-out
    patient: {"mean": ..., "findings": {finding: AUROC}}."""
    from .probe import encode_features, probe_table

    cases = encode_features(model, bench, ("train", "test"), features, holdout=holdout)
    mean, per = _mean_auroc(probe_table(cases, ("train", "test")))
    return {"mean": mean, "findings": per}


def oracle_results(bench, holdout: str, cfg=None, progress=None) -> dict:
    """The supervised oracle of one fold: AUROC per finding on its training cases and on the
    held-out patient's eval cases. A finding the training patients do not show has no figure
    (n/a): nothing was learnt for it. ``cfg``: an ``oracle.OracleConfig`` (default: its
    defaults; 0 steps: skipped, every figure n/a). The settings go with the figures
    (``"config"``), so a fold measured otherwise is measured again (``evaluate_fold``)."""
    from .benchmark_data import FINDINGS, read_manifest
    from .folds import fold_entries
    from .oracle import OracleConfig, finding_auroc, load_crops, oracle_scores, train_oracle

    cfg = cfg or OracleConfig()
    if cfg.steps == 0:  # skipped: every figure n/a
        return {"train": {"mean": None, "findings": {}}, "test": {"mean": None, "findings": {}}, "seconds": 0.0,
                "config": oracle_settings(cfg)}
    started = time.perf_counter()
    parts = fold_entries(read_manifest(bench), holdout)
    train_data, test_data = load_crops(bench, parts["train"]), load_crops(bench, parts["test"])
    oracle = train_oracle(train_data, cfg, progress=progress)
    out = {}
    for name, data in (("train", train_data), ("test", test_data)):
        scores = oracle_scores(oracle, data)
        per = {finding: auc for k, finding in enumerate(FINDINGS)
               if finding in oracle.nets and (auc := finding_auroc(data, scores, k)) is not None}
        out[name] = {"mean": float(np.mean(list(per.values()))) if per else None, "findings": per}
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["config"] = oracle_settings(cfg)
    return out


def oracle_settings(cfg) -> dict:
    """An ``OracleConfig`` as it is stored with its figures (JSON: tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def query_results(model, bench, holdout: str | None, part: str = "test") -> dict:
    """The query benchmark (``query_benchmark``) on the fold's ``part`` cases, with the match
    score chosen on the fold's validation cases."""
    from .evaluate import encode_benchmark
    from .query_benchmark import measure

    cases = encode_benchmark(model, bench, holdout, parts=("val", part))
    return measure(cases, lambda emb, q, threshold=None: model.search(emb, q, threshold=threshold), "val", part)


def normal_results(model, calibration: dict, holdout: str, bench) -> dict:
    """Calibration on normal anatomy in one fold: ``calibration`` raised above the unmodified CTs
    of the training patients only (the benchmark's own bases), then the flags on the held-out
    patient's unmodified CT."""
    from .benchmark_data import built_bases
    from .normal_anatomy import above_normal_cts, flags

    bases = built_bases(bench)
    raised, count, rows = above_normal_cts(model, calibration, bases, Path(bench) / "bases",
                                           seen={b.name for b in bases if b.patient != holdout})
    (held,) = [b for b in bases if b.patient == holdout]
    return {"base": held.name, "thresholds_raised": count, **flags(rows[held.name], raised)}


def evaluate_fold(organ_model: Path, whole_model: Path, bench, holdout: str, out: Path,
                  oracle=None, progress=None, refresh_oracle: bool = False) -> dict:
    """Every figure of one fold, written to ``out/fold.json`` (reused when there; with
    ``refresh_oracle``, its supervised oracle is measured again, the rest kept). ``oracle``: the
    supervised oracle's ``OracleConfig``."""
    from ..totalfm import TotalFM
    from .evaluate import run_evaluation
    from .oracle import OracleConfig

    out = Path(out)
    done = out / "fold.json"
    oracle = oracle or OracleConfig()
    if done.is_file():
        results = json.loads(done.read_text())
        stale = results["oracle"].get("config") != oracle_settings(oracle)
        if refresh_oracle or stale:
            if stale and progress:
                progress(0.0, f"{done}: its oracle was measured with other settings; measuring it again")
            results["oracle"] = oracle_results(bench, holdout, oracle, progress=progress)
            _save_fold(done, results)
        return results
    started = time.perf_counter()
    zero_shot = run_evaluation(str(organ_model), bench, out / "zero_shot", str(whole_model), holdout=holdout,
                               n_boot=1000)
    model = TotalFM.load(organ_model, device="cpu")
    results = {"holdout": holdout, "zero_shot": {
        name: {"mean": res["findings"][-1].auroc, "lo": res["findings"][-1].auroc_lo,
               "hi": res["findings"][-1].auroc_hi,
               "findings": {r.group: r.auroc for r in res["findings"][:-1]}}
        for name, res in zero_shot["results"].items()}}
    results["normal"] = normal_results(model, zero_shot["calibration"], holdout, bench)
    results["probes"] = {f: probe_results(model, bench, holdout, f) for f in ("pixels", "untrained-tokens", "tokens")}
    results["oracle"] = oracle_results(bench, holdout, oracle, progress=progress)
    results["search"] = query_results(model, bench, holdout)
    results["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    _save_fold(done, results)
    return results


def _save_fold(path: Path, results: dict) -> None:
    """Write a fold's figures whole or not at all (a stopped run leaves no half-written file)."""
    from ..atomic import atomic_path

    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=float) + "\n")
