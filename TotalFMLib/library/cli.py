"""``totalfm index`` and ``totalfm find``: the case library from the command line.

    totalfm index ROOT --library LIB [--model demo] [--workers N | --scheduler tcp://HOST:8786] [--organs ...]
                  [--retry-failed]
    totalfm find "kidney stone" --library LIB [--organs kidneys] [--top-k 10] [--csv F] [--json F]
    totalfm find --like STUDY:ORGAN --library LIB [--top-k 10]
"""
from __future__ import annotations

import sys
from pathlib import Path


def cmd_index(args) -> int:
    from ..console import load_model, note, split_list
    from ..errors import InputError
    from .indexer import index_folder
    from .store import Library

    root = Path(args.root).expanduser()
    if not root.is_dir():
        raise InputError(root, "no such folder of studies")
    if args.workers < 1:
        raise InputError(None, f"--workers must be at least 1, not {args.workers}")
    library = Library(args.library, create=True)
    model = load_model(args)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(desc="indexing", unit="study", file=sys.stderr)

    def progress(done, total, record):
        if bar is not None:
            bar.total = total
            bar.set_postfix_str(record.source[-30:] + (" FAILED" if record.status == "failed" else ""), refresh=False)
            bar.update(1)

    try:
        summary = index_folder(root, library, model, args.model, workers=args.workers, organs=split_list(args.organs),
                               retry_failed=args.retry_failed, device=args.device, progress=progress,
                               scheduler=args.scheduler)
    finally:
        if bar is not None:
            bar.close()
    note(args, f"{summary.found} studies found, {summary.skipped} already in the library, {summary.done} indexed, "
               f"{summary.failed} failed, in {summary.seconds:.1f} s")
    for source, reason in library.failures():
        print(f"failed: {source}: {reason}")
    print(f"library {library.folder}: " + "; ".join(f"{m}: {n} organs" for m, _, n in library.models()))
    return 0


def _write(hits, csv_path, json_path) -> None:
    """The cohort as CSV and/or JSON, all or nothing."""
    import csv
    import json

    from ..outputs.destinations import Destinations
    from .query import HIT_COLUMNS

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=HIT_COLUMNS)
            w.writeheader()
            for h in hits:
                w.writerow({**h.as_dict(), "center_mm": " ".join(map(str, h.center_mm or []))})

    def write_json(tmp):
        Path(tmp).write_text(json.dumps([h.as_dict() for h in hits], indent=1))

    writers = {path: writer for path, writer in ((csv_path, write_csv), (json_path, write_json)) if path}
    Destinations(writers).write(writers)


def cmd_find(args) -> int:
    from ..console import load_model, split_list
    from ..errors import InputError
    from ..outputs.destinations import Destinations
    from .query import find_like, find_text, parse_like
    from .store import Library

    if bool(args.query) == bool(args.like):
        raise InputError(None, 'give a finding to look for ("kidney stone") or --like STUDY:ORGAN, not both')
    if args.top_k < 1:
        raise InputError(None, f"--top-k must be at least 1, not {args.top_k}")
    Destinations([p for p in (args.csv, args.json) if p]).check()
    library = Library(args.library)
    like = parse_like(args.like) if args.like else None
    model = load_model(args)
    if like:
        hits = find_like(library, model.checksum, *like, top_k=args.top_k)
        print(f"{'rank':>4s}  {'cosine':>7s}  {'organ':28s}  study")
        for h in hits:
            print(f"{h.rank:4d}  {h.score:7.3f}  {h.organ:28s}  {h.study}")
    else:
        hits = find_text(library, model, args.query, organs=split_list(args.organs), top_k=args.top_k,
                         threshold=args.threshold)
        print(f"{'rank':>4s}  {'match':5s}  {'score':>6s}  {'organ':28s}  study")
        for h in hits:
            print(f"{h.rank:4d}  {'MATCH' if h.matched else '':5s}  {h.score:+6.2f}  {h.organ:28s}  {h.study}")
    _write(hits, args.csv, args.json)
    return 0


def add_parsers(sub, model_args) -> None:
    i = sub.add_parser("index", help="index a folder of studies into a case library",
                       description="Run every study under ROOT through the pipeline and store its organ embeddings "
                                   "and scores in the library (resumable: a rerun continues where it stopped).")
    i.add_argument("root", help="folder of studies: CT files (with NAME_seg.nii.gz, NAME.seg.nrrd or a NAME_seg/ "
                                "folder beside them) and DICOM study folders (segmentation NAME_seg.nii.gz beside "
                                "the folder); see the README, Case library")
    i.add_argument("--library", required=True, metavar="LIB", help="the library folder (made if missing)")
    i.add_argument("--workers", type=int, default=1,
                   help="studies indexed at once, each in its own process (default 1: one process uses every core)")
    i.add_argument("--organs", help="comma-separated organs or groups (default: the clinical default set)")
    i.add_argument("--retry-failed", action="store_true", help="index again the studies that failed before")
    i.add_argument("--scheduler", metavar="ADDRESS",
                   help="index on a Dask cluster (e.g. tcp://10.0.0.5:8786); its workers must see ROOT at the same "
                        "path and have TotalFMLib installed; this machine writes the library")
    model_args(i)
    i.set_defaults(func=cmd_index)

    f = sub.add_parser("find", help="search the case library for a finding, or for organs like one",
                       description="Rank (study, organ) pairs of the library for a typed finding, with the same "
                                   "baseline-corrected score as `totalfm search`, or by likeness to one organ.")
    f.add_argument("query", nargs="?", help='the finding to look for, e.g. "kidney stone"')
    f.add_argument("--like", metavar="STUDY:ORGAN", help="the organs most like this study's organ instead")
    f.add_argument("--library", required=True, metavar="LIB", help="the library folder")
    f.add_argument("--organs", help="only these organs or groups, e.g. kidneys")
    f.add_argument("--top-k", type=int, default=10, metavar="K", help="hits listed (default 10)")
    f.add_argument("--threshold", type=float, default=None,
                   help="score a hit must reach to be marked MATCH (default: the model's own match score)")
    f.add_argument("--csv", metavar="FILE", help="write the hits (the cohort) as CSV")
    f.add_argument("--json", metavar="FILE", help="write the hits as JSON")
    model_args(f)
    f.set_defaults(func=cmd_find)
