"""The supervised oracle of one fold, organ by organ, read in absolute HU and organ-relative
(``oracle.organ_relative``), as the oracle reads it by default (``--reading default``), or as
local contrast (``--reading local``, ``oracle.local_contrast``); for one or more seeds (with
several, also as one: the seeds' scores averaged, "mean of 0+1+2") and numbers of training
steps, with each normalisation of its networks (``--norm``), and with ``--also-without P``
trained once more without training patient P (does one more patient help?): where it fails on
the held-out patient, and whether reading lesions against their organ helps
(``Training/BENCHMARK.md``, "What the oracle showed"); each network read over the whole crop
or inside its organ (``--score whole,inside``, ``oracle.organ_score``; by default as the oracle
reads it, the hypodense findings inside). It tests on the held-out patient's
evaluation cases, as the fold table does, or with ``--test all`` on all of that patient's
cases (``folds.fold_entries``' "unseen" too: five times the findings, so a figure moves less
with the seed); ``--test-from`` tests on another build's cases of that patient (two builds
compared on one test set).

    python Training/oracle_by_organ.py --benchmark runs/benchmark --holdout A \\
        --findings "hypodense lesion,hyperdense lesion" --seeds 0,1
    python Training/oracle_by_organ.py --benchmark runs/benchmark --holdout C \\
        --findings "hypodense lesion,stone" --reading default --steps 500,1500
    python Training/oracle_by_organ.py --benchmark runs/benchmark4 --holdout A \\
        --findings "hypodense lesion,hepatomegaly" --reading default --also-without D
"""
from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def by_organ(data: dict, scores: np.ndarray, k: int) -> tuple[float | None, list[str]]:
    """(AUROC over every organ that carries finding ``k``, one "organ AUROC (median score
    normal / showing it)" text per organ)."""
    from TotalFMLib.training.oracle import finding_auroc

    carry = data["carriable"][:, k].numpy()
    y, s, organs = data["labels"][:, k].numpy(), scores[:, k], np.array(data["organs"])
    parts = []
    for organ in sorted(set(organs[carry])):
        m = carry & (organs == organ)
        auc = finding_auroc(data, scores, k, organ)
        normal = np.median(s[m & ~y]) if (m & ~y).any() else float("nan")
        shows = np.median(s[m & y]) if (m & y).any() else float("nan")
        parts.append(f"{organ} {_figure(auc)} ({normal:.2f} / {shows:.2f})")
    return finding_auroc(data, scores, k), parts


def print_rows(findings, cfg, patients: str, seed: str, train: dict, test: dict, fitted, held, nets: set) -> None:
    """One table row per finding of one oracle (or one average of several seeds' oracles)."""
    from TotalFMLib.training.benchmark_data import FINDINGS
    from TotalFMLib.training.oracle import uses_relative

    for finding in findings:
        reading = ("local contrast" if finding in cfg.local else "organ-relative" if uses_relative(finding, cfg)
                   else "absolute")
        score = "inside the organ" if finding in cfg.inside else "whole crop"
        row = f"| {patients} | {cfg.norm} | {reading} | {seed} | {cfg.steps} | {finding} | {score}"
        if finding not in nets:
            print(f"{row} | n/a | n/a | the training patients do not show it |")
            continue
        k = FINDINGS.index(finding)
        on_train, _ = by_organ(train, fitted, k)
        on_test, organs = by_organ(test, held, k)
        print(f"{row} | {_figure(on_train, 3)} | {_figure(on_test, 3)} | {'; '.join(organs)} |", flush=True)


def _figure(auc: float | None, digits: int = 2) -> str:
    return "n/a" if auc is None else f"{auc:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    from TotalFMLib.errors import TotalFMError
    from TotalFMLib.training.benchmark_data import findings_named, read_manifest
    from TotalFMLib.training.folds import fold_entries
    from TotalFMLib.training.oracle import (INSIDE_FINDINGS, NORMS, RELATIVE_FINDINGS, OracleConfig, load_crops,
                                            oracle_scores, train_oracle)

    p = argparse.ArgumentParser(description="The supervised oracle of one fold, organ by organ.")
    p.add_argument("--benchmark", required=True, help="benchmark folder (Training/build_benchmark.py)")
    p.add_argument("--holdout", required=True, help="the held-out patient (A, B, C)")
    p.add_argument("--findings", required=True, help="comma-separated findings of the benchmark")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    p.add_argument("--steps", default=str(OracleConfig.steps),
                   help=f"comma-separated training steps per finding (default {OracleConfig.steps})")
    p.add_argument("--reading", choices=("both", "default", "local"), default="both",
                   help="both: every finding read in absolute HU, then organ-relative; default: as the "
                        "oracle reads it by default (oracle.RELATIVE_FINDINGS organ-relative); local: every "
                        "finding read as local contrast (oracle.local_contrast)")
    p.add_argument("--norm", default=OracleConfig.norm,
                   help=f"comma-separated normalisation layers of the networks ({', '.join(NORMS)}; "
                        f"default {OracleConfig.norm})")
    p.add_argument("--score", default="default",
                   help="comma-separated ways to read each trained network: default (as the oracle reads it, "
                        "OracleConfig.inside inside the organ, the rest over the whole crop), whole (every "
                        "finding over the whole crop) or inside (every finding inserted inside the organ over "
                        "its own cells, oracle.organ_score); one network gives every reading (default: default)")
    p.add_argument("--train-inside", action="store_true",
                   help="the networks of the findings scored inside their organ (--score default) are also "
                        "trained on that score (OracleConfig.train_inside)")
    p.add_argument("--test", choices=("eval", "all"), default="eval",
                   help="the held-out patient's cases tested: its evaluation cases (as the fold table; default) "
                        "or all of them (its training-split cases are unseen by the fold too)")
    p.add_argument("--test-from", default="",
                   help="another benchmark folder whose held-out patient's cases are tested instead (e.g. one "
                        "built without an option the training cases were built with, so that two builds are "
                        "compared on the same test cases)")
    p.add_argument("--also-without", default="",
                   help="a training patient (e.g. D): each oracle is trained again without that patient's "
                        "cases, and both are shown side by side")
    args = p.parse_args(argv)
    try:
        findings = findings_named(args.findings)
    except TotalFMError as e:
        p.error(e.problem)
    if not findings:
        p.error("--findings names no finding")
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
        steps = [int(x) for x in args.steps.split(",")]
    except ValueError:
        p.error(f"--seeds and --steps must be comma-separated integers, not {args.seeds!r}, {args.steps!r}")
    norms = args.norm.split(",")
    if not set(norms) <= set(NORMS):
        p.error(f"--norm must name {', '.join(NORMS)}, not {args.norm!r}")
    scorings = args.score.split(",")
    if not set(scorings) <= {"default", "whole", "inside"}:
        p.error(f"--score must name default, whole, inside, not {args.score!r}")
    if min(steps) < 1:
        p.error(f"--steps must be at least 1, not {args.steps!r}")
    try:
        parts = fold_entries(read_manifest(args.benchmark), args.holdout)
        trained_on = sorted({e["patient"] for e in parts["train"]})
        sets = {"+".join(trained_on): parts["train"]}
        if args.also_without:
            if args.also_without not in trained_on:
                p.error(f"--also-without: {args.also_without!r} is not a training patient of fold {args.holdout} "
                        f"({', '.join(trained_on)})")
            fewer = [e for e in parts["train"] if e["patient"] != args.also_without]
            sets["+".join(x for x in trained_on if x != args.also_without)] = fewer
        trains = {name: load_crops(args.benchmark, entries) for name, entries in sets.items()}
        test_root = args.test_from or args.benchmark
        test_parts = parts if not args.test_from else fold_entries(read_manifest(test_root), args.holdout)
        tested = test_parts["test"] + (test_parts["unseen"] if args.test == "all" else [])
        test = load_crops(test_root, tested)
    except (TotalFMError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # per reading, (the findings read organ-relative, those read as local contrast): absolute then
    # organ-relative, the oracle's default, or local contrast
    readings = {"both": [((), ()), (findings, ())], "default": [(RELATIVE_FINDINGS, ())],
                "local": [((), findings)]}[args.reading]
    how = "; trained on the inside score" if args.train_inside else ""
    where = f" of {test_root}" if args.test_from else ""
    print(f"Fold {args.holdout} held out, tested on {len(tested)} of its cases{where} ({args.test}){how}; by organ: "
          f"AUROC (median score normal / showing it)\n")
    print("| trained on | norm | reading | seed | steps | finding | score | training cases | held out "
          "| held out, by organ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    # (the configuration without its seed, trained on) -> (the findings with a network, the same for every
    # seed since they share their data; [(scores on the training cases, held out), one per seed])
    runs = {}
    for seed, n, norm, (relative, local), (patients, train) in itertools.product(seeds, steps, norms, readings,
                                                                                  trains.items()):
        trained = OracleConfig(steps=n, seed=seed, findings=findings, relative=relative, local=local, norm=norm,
                               train_inside=args.train_inside)
        oracle = train_oracle(train, trained)
        for scoring in scorings:
            inside = {"default": OracleConfig.inside, "whole": (), "inside": INSIDE_FINDINGS}[scoring]
            cfg = replace(trained, inside=tuple(f for f in findings if f in inside))
            fitted, held = (oracle_scores(oracle, data, inside=cfg.inside) for data in (train, test))
            runs.setdefault((replace(cfg, seed=0), patients), (set(oracle.nets), []))[1].append((fitted, held))
            print_rows(findings, cfg, patients, str(seed), train, test, fitted, held, set(oracle.nets))
    if len(seeds) > 1:  # the seeds' networks as one: their scores averaged
        for (cfg, patients), (nets, scored) in runs.items():
            fitted, held = (np.mean([s[i] for s in scored], axis=0) for i in (0, 1))
            print_rows(findings, cfg, patients, "mean of " + "+".join(map(str, seeds)), trains[patients], test,
                       fitted, held, nets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
