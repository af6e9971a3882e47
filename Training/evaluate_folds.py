"""Leave-one-patient-out evaluation of the demo recipe: one command, every fold, one table.

    python Training/evaluate_folds.py --benchmark runs/benchmark --run runs/folds [--patients A,B,C]

For every labelled patient P of the benchmark (``TotalFMLib/training/folds.py``): the image
encoder is pre-trained (VideoMAE) on the other patients, and from it the organ-separated
model and the whole-volume baseline are trained on the other patients with the demo recipe
(``Training/configs/demo_contrastive.json``, equal compute; ``recipe.py``); thresholds are picked on the other patients' evaluation cases, and everything is measured on
P's evaluation cases (held-out phrasings): zero-shot finding AUROC of both models (95 % case
bootstrap intervals), the linear probes (plain intensity percentiles, an untrained encoder,
the trained encoder), the supervised oracle, and the query benchmark. Findings P's organs
cannot carry are n/a. Stages already done in ``--run`` are reused. The table goes to
``--out`` (default ``Training/results/folds.md``) and is printed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

CONFIG = ROOT / "Training" / "configs" / "demo_contrastive.json"
PRETRAIN = ROOT / "Training" / "configs" / "demo_pretrain.json"
ORACLE_BAR = (0.95, 0.90)  # the model issue's bar for the oracle: training cases, held-out patient


def _num(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def table(folds: list[dict]) -> str:
    """The per-fold table (markdown) and the mean over folds."""
    import numpy as np

    from TotalFMLib.training.benchmark_data import FINDINGS

    organ, whole = "organ-separated / organ prompts", "whole-volume baseline / organ prompts"
    head = ("| held-out patient | organ-separated (zero-shot) | whole-volume baseline | trained-encoder probe | "
            "untrained-encoder probe | pixel probe | oracle (held-out) | oracle (training cases) | "
            "search: organ ranked first | nonsense matches | held-out CT unmodified: organs flagged (any lesion) |")
    lines = [head, "|" + "---|" * 11]
    cols = {k: [] for k in ("organ", "whole", "tokens", "untrained", "pixels", "oracle", "oracle_train", "top1")}
    for f in folds:
        z = f["zero_shot"]
        vals = {"organ": z[organ]["mean"], "whole": z[whole]["mean"], "tokens": f["probes"]["tokens"]["mean"],
                "untrained": f["probes"]["untrained-tokens"]["mean"], "pixels": f["probes"]["pixels"]["mean"],
                "oracle": f["oracle"]["test"]["mean"], "oracle_train": f["oracle"]["train"]["mean"],
                "top1": f["search"]["top1"]}
        for k, v in vals.items():
            if v is not None and v == v:
                cols[k].append(v)
        ci = lambda name: f" [{_num(z[name]['lo'])}, {_num(z[name]['hi'])}]"  # noqa: E731
        lines.append(f"| {f['holdout']} | {_num(vals['organ'])}{ci(organ)} | {_num(vals['whole'])}{ci(whole)} | "
                     f"{_num(vals['tokens'])} | {_num(vals['untrained'])} | {_num(vals['pixels'])} | "
                     f"{_num(vals['oracle'])} | {_num(vals['oracle_train'])} | {_num(vals['top1'])} | "
                     f"{f['search']['nonsense_matches']} of {f['search']['nonsense_queries']} | "
                     f"{len(f['normal']['any_lesion'])} of {f['normal']['organs']} |")
    mean = lambda k: _num(float(np.mean(cols[k]))) if cols[k] else "n/a"  # noqa: E731
    lines.append(f"| mean | {mean('organ')} | {mean('whole')} | {mean('tokens')} | {mean('untrained')} | "
                 f"{mean('pixels')} | {mean('oracle')} | {mean('oracle_train')} | {mean('top1')} | | |")
    per = ["| finding | " + " | ".join(f"{f['holdout']}: zero-shot / oracle" for f in folds) + " |",
           "|---|" + "---|" * len(folds)]
    for finding in FINDINGS:
        cells = [f"{_num(f['zero_shot'][organ]['findings'].get(finding))} / "
                 f"{_num(f['oracle']['test']['findings'].get(finding))}" for f in folds]
        per.append(f"| {finding} | " + " | ".join(cells) + " |")
    oracle = ["| finding | " + " | ".join(f"{f['holdout']} held out: training cases / held out" for f in folds)
              + " | bar met in every fold |", "|---|" + "---|" * (len(folds) + 1)]
    for finding in FINDINGS:
        pairs = [(f["oracle"]["train"]["findings"].get(finding), f["oracle"]["test"]["findings"].get(finding))
                 for f in folds]
        met = all(a is not None and a >= ORACLE_BAR[0] and (b is None or b >= ORACLE_BAR[1]) for a, b in pairs)
        oracle.append(f"| {finding} | " + " | ".join(f"{_num(a)} / {_num(b)}" for a, b in pairs)
                      + f" | {'yes' if met else 'no'} |")
    return ("Mean finding-wise AUROC on each held-out patient's evaluation cases (zero-shot: 95 % case-bootstrap "
            "interval); n/a: the patient's organs carry none of the findings, or too few.\n\n" + "\n".join(lines)
            + "\n\nPer finding (held-out patient):\n\n" + "\n".join(per)
            + f"\n\nThe supervised oracle per finding (the bar: at least {ORACLE_BAR[0]} on its training cases and "
            f"{ORACLE_BAR[1]} on the held-out patient):\n\n" + "\n".join(oracle) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Leave-one-patient-out evaluation of the demo recipe.")
    p.add_argument("--benchmark", required=True, help="benchmark folder (Training/build_benchmark.py)")
    p.add_argument("--run", required=True, help="run folder: one subfolder per held-out patient")
    p.add_argument("--patients", default=None, help="held-out patients, comma-separated (default: all)")
    p.add_argument("--config", default=str(CONFIG), help="contrastive training config (default: the demo's)")
    p.add_argument("--pretrain-config", default=str(PRETRAIN),
                   help="VideoMAE pre-training config, run on the fold's training patients (default: the demo's)")
    p.add_argument("--oracle-steps", type=int, default=500,
                   help="training steps of each finding's network of the supervised oracle (0: no oracle)")
    p.add_argument("--oracle-shift-hu", type=float, default=0.0,
                   help="the oracle's training crops are shifted by up to this many HU (default 0: not)")
    p.add_argument("--oracle-contrast", type=float, default=0.0,
                   help="... and their contrast changed by up to this share (default 0: not)")
    p.add_argument("--oracle-relative", default=None,
                   help="comma-separated findings the oracle reads organ-relative, oracle.organ_relative "
                        "(default: the hypodense ones; '': every finding in absolute HU)")
    p.add_argument("--refresh-oracle", action="store_true",
                   help="measure the supervised oracle of finished folds again (the other figures are kept)")
    p.add_argument("--out", default=str(ROOT / "Training" / "results" / "folds.md"), help="where the table goes")
    p.add_argument("--card", default=str(ROOT / "TotalFMLib" / "data" / "demo_model.md"),
                   help="model card whose held-out section gets the table ('' for none; default: the demo model's)")
    args = p.parse_args(argv)

    from TotalFMLib.atomic import atomic_path
    from TotalFMLib.errors import TotalFMError
    from TotalFMLib.training import recipe
    from TotalFMLib.training.benchmark_data import findings_named, read_manifest
    from TotalFMLib.training.folds import patients
    from TotalFMLib.training.oracle import RELATIVE_FINDINGS, OracleConfig

    if args.oracle_steps < 0 or args.oracle_shift_hu < 0 or not 0 <= args.oracle_contrast < 1:
        p.error("--oracle-steps must be at least 0, --oracle-shift-hu at least 0, --oracle-contrast in [0, 1)")
    try:
        relative = RELATIVE_FINDINGS if args.oracle_relative is None else findings_named(args.oracle_relative)
    except TotalFMError as e:
        p.error(f"--oracle-relative: {e.problem}")
    oracle = OracleConfig(steps=args.oracle_steps, shift_hu=args.oracle_shift_hu, contrast=args.oracle_contrast,
                          relative=relative)

    try:
        held = args.patients.split(",") if args.patients else patients(read_manifest(args.benchmark))
        folds = []
        for patient in held:
            run = Path(args.run) / patient
            t0 = time.perf_counter()
            print(f"[{patient}] pre-training, then the organ-separated model and the baseline ...", flush=True)
            encoder = recipe.pretrain(args.pretrain_config, args.benchmark, run / "pretrain", patient)
            init = [f"contrastive.init_image={encoder}"]
            organ = recipe.train(args.config, args.benchmark, run / "organ", holdout=patient, overrides=init)
            whole = recipe.train(args.config, args.benchmark, run / "whole", holdout=patient, whole_volume=True,
                                 overrides=init)
            print(f"[{patient}] evaluating ...", flush=True)
            fold = recipe.evaluate_fold(organ, whole, args.benchmark, patient, run / "eval", oracle,
                                        progress=lambda done, text, p=patient: print(f"[{p}] {text}", flush=True),
                                        refresh_oracle=args.refresh_oracle)
            folds.append(fold)
            print(f"[{patient}] done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    except TotalFMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = "# Leave-one-patient-out evaluation of the demo recipe\n\n" + table(folds)
    with atomic_path(Path(args.out), suffix=".md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    (Path(args.run) / "folds.json").write_text(json.dumps(folds, indent=2, default=float) + "\n")
    if args.card:  # the bundled model's card carries the same per-fold table
        from TotalFMLib.training.folds import card_with_folds

        card = Path(args.card)
        with atomic_path(card, suffix=".md") as tmp:
            tmp.write_text(card_with_folds(card.read_text(encoding="utf-8"), text), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    from TotalFMLib import runtime

    runtime.setup()  # before torch loads (OpenMP waits passively); threads = physical cores
    sys.exit(main())
