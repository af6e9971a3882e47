"""Zero-shot evaluation on the synthetic-lesion benchmark (``benchmark_data.py``).

    python Training/evaluate.py --model demo --benchmark BENCH --out runs/eval [--baseline BASELINE.pt]

What it measures, on the held-out test CT:

- finding-wise AUROC: for every inserted finding, the scorer's score (``scoring.score_case``,
  organ-conditioned prompt ensembles) over the (case, organ) pairs the benchmark can insert
  that finding into; positives are the crops that received it;
- organ-wise lesion F1 and AUROC: the scorer's "any lesion" score per organ, positive when the
  organ received any finding; the F1 threshold is Youden's J on the validation split (per
  organ, else pooled over organs), applied to test;
- the same with plain prompts ("{Finding} is present." vs "{Finding} is not present.",
  CT-CLIP style; ``vocabulary.prompts``), and, given ``--baseline``, a
  whole-volume model (one embedding per case from the benchmark's ``whole_images``) scored with
  the same prompts on the same (case, organ) pairs.

Outputs in ``--out``: ``summary.md`` (printed), ``findings.md``, ``organs.md``, ``scores.csv``,
``results.json``, ``calibration.json`` (validation thresholds in the scorer's format), ROC PNGs.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..progress import Progress
from ..results import ANY_LESION
from ..vocabulary import catalogue
from ..vocabulary.prompts import PROMPT_STYLES
from . import metrics as M
from .benchmark_data import FINDINGS, load_shard, read_manifest
from .native_findings import benchmark_native, scored

STYLES = PROMPT_STYLES


@dataclass
class CaseEmbeddings:
    case_id: str
    split: str
    organs: list[str]
    labels: list[list[str]]
    vectors: np.ndarray          # (N, D): one per organ crop, or the whole-volume vector repeated
    native: frozenset = frozenset()  # (organ, finding) pairs the case's patient shows natively: not scored


def encode_benchmark(model, root: str | os.PathLike, holdout: str | None = None, parts=("val", "test"),
                     view: str = "organ", progress: Progress | None = None, encode=None) -> list[CaseEmbeddings]:
    """Embeddings of every case of the fold's ``parts`` ("train", "val", "test" of the fold that
    holds ``holdout`` out, ``folds.role_in_fold``) through the pipeline's embedding step
    (``pipeline.embed_crops``): organ crops (``view="organ"``) or the whole-volume crop given
    to every organ of the case (``view="whole"``). ``encode`` maps a float (N, 3, S, S, F)
    batch to (N, D) vectors (default: the model's ``encode_crops``)."""
    from ..crops.organ_crops import OrganCrops
    from ..pipeline import embed_crops
    from .folds import role_in_fold

    root = Path(root)
    entries = [(e, role_in_fold(e, holdout)) for e in read_manifest(root)]
    entries = [(e, part) for e, part in entries if part in parts]
    native = benchmark_native(root, [e for e, _ in entries])
    if not entries:
        raise InputError(root, f"the benchmark has no cases for {', '.join(parts)}"
                               + (f" with patient {holdout!r} held out" if holdout else ""))
    want = (3, model.config.crop_size, model.config.crop_size, model.config.frames)
    out = []
    for k, (entry, part) in enumerate(entries):
        shard = load_shard(root, entry)
        images = shard["images" if view == "organ" else "whole_images"]
        if tuple(images.shape[1:]) != want:
            raise InputError(root / entry["shard"], f"crops are {tuple(images.shape[1:])}, the model "
                                                    f"expects {want}: build the benchmark with its crop size")
        organs = list(shard["organs"])
        crops = OrganCrops(images.float(), organs, shared=view != "organ")
        embeddings = embed_crops(model, crops, encode=encode)
        out.append(CaseEmbeddings(entry["case_id"], part, organs, [list(x) for x in shard["labels"]],
                                  np.stack([embeddings[o] for o in organs]),
                                  native.get(entry.get("base"), frozenset())))
        if progress is not None:
            progress((k + 1) / len(entries), entry["case_id"])
    return out


def score_rows(cases: list[CaseEmbeddings], encode_text, logit_scale: float, style: str = "organ") -> list[dict]:
    """One row per (case, organ, task): task is ANY_LESION or an inserted finding the organ can
    carry, scored by the scorer (``zeroshot.scoring.score_case``) with ``style`` prompts; an
    organ with a finding its patient shows natively (``native_findings``) has no row for it, nor
    for ANY_LESION (it is not normal).
    Columns: case, split, organ, finding, label (0/1), score."""
    from ..zeroshot.scoring import score_case

    if style not in STYLES:
        raise InputError(None, f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
    rows = []
    for case in cases:
        table = {(r.organ, r.finding): r.score for r in score_case(
            dict(zip(case.organs, case.vectors)), encode_text, findings=list(FINDINGS),
            logit_scale=logit_scale, case_id=case.case_id, style=style)}
        for organ, labels in zip(case.organs, case.labels):
            native = any(o == organ for o, _ in case.native)
            for task in [ANY_LESION] * (not native) + [f for f in FINDINGS if scored(f, organ, case.native)]:
                label = bool(labels) if task == ANY_LESION else task in labels
                rows.append(dict(case=case.case_id, split=case.split, organ=organ, finding=task,
                                 label=int(label), score=float(table[(organ, task)])))
    return rows


def _select(rows, split, finding=None, lesion=False):
    return [r for r in rows if r["split"] == split and
            ((r["finding"] == ANY_LESION) if lesion else (r["finding"] != ANY_LESION and
                                                         (finding is None or r["finding"] == finding)))]


def _arrays(rows):
    return (np.array([r["label"] for r in rows], dtype=int), np.array([r["score"] for r in rows], dtype=float))


def val_thresholds(rows: list[dict], key: str) -> tuple[dict[str, float], float | None]:
    """Operating thresholds on the validation rows (``metrics.operating_threshold``: Youden's J,
    raised so that at most 2 % of normal organs are flagged) per ``key`` ("organ" or
    "finding") where both classes occur, and the pooled one (None without validation rows)."""
    val = [r for r in rows if r["split"] == "val"]
    if not val:
        return {}, None
    y, s = _arrays(val)
    pooled = M.operating_threshold(y, s)
    out = {}
    for name in sorted({r[key] for r in val}):
        yy, ss = _arrays([r for r in val if r[key] == name])
        if 0 < yy.sum() < len(yy):
            out[name] = M.operating_threshold(yy, ss)
    return out, pooled


def evaluate_rows(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Finding-wise and organ-wise tables on the test rows, thresholds from the val rows."""
    finding_rows = _select(rows, "test")
    lesion_rows = _select(rows, "test", lesion=True)
    if not finding_rows:
        raise InputError(None, "no test rows to evaluate")
    f_thr, f_pool = val_thresholds([r for r in rows if r["finding"] != ANY_LESION], "finding")
    o_thr, o_pool = val_thresholds([r for r in rows if r["finding"] == ANY_LESION], "organ")

    def table(sel, key, thr, pool):
        y, s = _arrays(sel)
        groups = [r[key] for r in sel]
        full = {g: thr.get(g, pool) for g in set(groups)} if pool is not None else None
        return M.metric_table(y, s, groups, thresholds=full, n_boot=n_boot, seed=seed,
                              clusters=[r["case"] for r in sel])

    return {"findings": table(finding_rows, "finding", f_thr, f_pool),
            "organs": table(lesion_rows, "organ", o_thr, o_pool),
            "finding_thresholds": f_thr, "finding_threshold_pooled": f_pool,
            "organ_thresholds": o_thr, "organ_threshold_pooled": o_pool}


def calibration_from(result: dict) -> dict:
    """Scorer calibration from validation thresholds: per finding ("*"), any lesion per organ,
    and the pooled finding threshold ("*") for the catalogue's findings the benchmark does
    not insert."""
    cal: dict = {}
    if result["finding_threshold_pooled"] is not None:
        cal["*"] = result["finding_threshold_pooled"]
    for finding, t in result["finding_thresholds"].items():
        cal[finding] = {"*": t}
    lesion = dict(result["organ_thresholds"])
    if result["organ_threshold_pooled"] is not None:
        lesion["*"] = result["organ_threshold_pooled"]
    if lesion:
        cal[ANY_LESION] = lesion
    return cal


# --------------------------------------------------------------------------- the command

def _num(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def _write(path: Path, text: str) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp:
        tmp.write_text(text, encoding="utf-8")


def run_evaluation(model_source: str, benchmark: str | os.PathLike, out: str | os.PathLike,
                   baseline_source: str | None = None, n_boot: int = 1000, seed: int = 0,
                   device: str | None = None, progress: Progress | None = None, holdout: str | None = None) -> dict:
    """Evaluate a model (and optionally a whole-volume baseline) on the fold that holds patient
    ``holdout`` out (thresholds on the other patients' eval cases) and write the reports."""
    from ..totalfm import TotalFM

    out = Path(out)
    variants = []  # (label, model, view)
    model = TotalFM.load(model_source, device=device)
    variants.append(("organ-separated", model, "organ"))
    if baseline_source:
        variants.append(("whole-volume baseline", TotalFM.load(baseline_source, device=device), "whole"))
    results, all_rows, curves = {}, [], {}
    for n, (label, m, view) in enumerate(variants):
        def sub(f, msg, n=n):
            if progress is not None:
                progress((n + f) / len(variants), f"{label}: {msg}")
        cases = encode_benchmark(m, benchmark, holdout, view=view, progress=sub)
        for style in STYLES:
            rows = score_rows(cases, m.encode_texts, m.config.logit_scale, style)
            name = f"{label} / {style} prompts"
            results[name] = evaluate_rows(rows, n_boot, seed)
            all_rows += [dict(r, variant=label, prompts=style) for r in rows]
            y, s = _arrays(_select(rows, "test"))
            curves[name] = (y, s)
    main = results["organ-separated / organ prompts"]
    calibration = calibration_from(main)
    M.write_calibration(out / "calibration.json", calibration,
                        meta={"model": str(model_source), "benchmark": str(benchmark), "rule": "Youden J on val"})
    summary = ["| model | prompts | finding AUROC, mean [95% CI] | organ lesion F1, mean [95% CI] | organ lesion AUROC, mean |",
               "|---|---|---|---|---|"]
    for name, res in results.items():
        f, o = res["findings"][-1], res["organs"][-1]
        label, style = name.split(" / ")
        summary.append(f"| {label} | {style.replace(' prompts', '')} | {_num(f.auroc)} [{_num(f.auroc_lo)}, "
                       f"{_num(f.auroc_hi)}] | {_num(o.f1)} [{_num(o.f1_lo)}, {_num(o.f1_hi)}] | {_num(o.auroc)} |")
    n_findings = sum(1 for r in main["findings"][:-1] if not np.isnan(r.auroc))
    text = ("Zero-shot results on the held-out test CT (means over {} finding types and over organs; "
            "95% CIs by case bootstrap; F1 thresholds from validation).\n\n".format(n_findings)
            + "\n".join(summary) + "\n")
    _write(out / "summary.md", text)
    _write(out / "findings.md", M.format_table(main["findings"], "finding") + "\n")
    _write(out / "organs.md", M.format_table(main["organs"], "organ (any lesion)") + "\n")
    with atomic_path(out / "scores.csv", suffix=".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, ["variant", "prompts", "case", "split", "organ", "finding", "label", "score"])
            w.writeheader()
            w.writerows(all_rows)
    main_rows = [r for r in all_rows if r["variant"] == "organ-separated" and r["prompts"] == "organ"]
    by_finding = {f: _arrays(sel) for f in FINDINGS if (sel := _select(main_rows, "test", f))}
    M.plot_roc(by_finding, out / "roc_findings.png", "Finding-wise ROC (test)")
    lesion = _select(main_rows, "test", lesion=True)
    by_organ = {catalogue.organ(o).display_name: _arrays([r for r in lesion if r["organ"] == o])
                for o in sorted({r["organ"] for r in lesion})}
    M.plot_roc(by_organ, out / "roc_organs.png", "Organ-wise any-lesion ROC (test)")
    M.plot_roc(curves, out / "roc_compare.png", "All finding rows (test)")
    doc = {"model": str(model_source), "baseline": baseline_source, "benchmark": str(benchmark),
           "calibration": calibration, "results": {
               name: {"findings": [r.as_dict() for r in res["findings"]],
                      "organs": [r.as_dict() for r in res["organs"]]} for name, res in results.items()}}
    _write(out / "results.json", json.dumps(doc, indent=2, default=float) + "\n")
    return {"summary": text, "results": results, "calibration": calibration}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from ..progress import progress_bar
    from ..errors import TotalFMError

    p = argparse.ArgumentParser(description="Zero-shot evaluation on the synthetic-lesion benchmark; "
                                            "prints the summary table.")
    p.add_argument("--model", default="demo", help='"demo", "official" or a checkpoint path')
    p.add_argument("--benchmark", required=True, help="folder written by Training/build_benchmark.py")
    p.add_argument("--out", required=True, help="folder for tables, plots, scores and calibration.json")
    p.add_argument("--baseline", default=None, help="checkpoint of a whole-volume model to compare with")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU where there is one)")
    p.add_argument("--holdout", default=None, help="the held-out patient (default: none; then there is no test)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        with progress_bar("evaluate", enabled=not args.quiet) as bar:
            result = run_evaluation(args.model, args.benchmark, args.out, args.baseline, args.bootstrap,
                                    args.seed, args.device, progress=bar, holdout=args.holdout)
    except TotalFMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result["summary"])
    print(f"tables, ROC plots and calibration.json in {args.out}")
    return 0
