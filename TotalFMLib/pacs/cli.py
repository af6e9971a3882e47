"""``totalfm pacs``: the hospital round trip from the command line.

    totalfm pacs find    [--patient-id ID] [--study-date YYYYMMDD[-YYYYMMDD]] [--accession N] [PACS options]
    totalfm pacs get     STUDY_UID --out DIR                                 [PACS options]
    totalfm pacs store   FILE ... (in the order given, SRs last)             [PACS options]
    totalfm pacs analyze STUDY_UID --out DIR [--seg SEG] [--no-store]         [PACS and model options]

PACS options: ``--pacs-config FILE`` (JSON, see ``settings.py``) and/or ``--pacs-host``,
``--pacs-port``, ``--pacs-aet``, ``--calling-aet``, ``--dicomweb-url``, ``--pacs-user``,
``--timeout``. A PACS failure ends with exit status 3 and one line; bad input with 2.
"""
from __future__ import annotations

import sys


def settings_from(args):
    from .settings import load_settings

    return load_settings(args.pacs_config, host=args.pacs_host, port=args.pacs_port, called_aet=args.pacs_aet,
                         calling_aet=args.calling_aet, timeout=args.timeout, dicomweb_url=args.dicomweb_url,
                         username=args.pacs_user)


def cmd_find(args) -> int:
    from . import transport

    settings = settings_from(args)
    studies = transport(settings).find_studies(settings, patient_id=args.patient_id or "",
                                               study_date=args.study_date or "", accession=args.accession or "")
    print(f"{'study date':10s}  {'patient id':20s}  {'modalities':10s}  {'series':>6s}  {'images':>6s}  "
          f"{'description':24s}  study instance UID")
    for s in studies:
        print(f"{s.study_date:10s}  {s.patient_id[:20]:20s}  {s.modalities[:10]:10s}  {s.series:>6s}  "
              f"{s.instances:>6s}  {s.description[:24]:24s}  {s.study_uid}")
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on {settings.describe()}", file=sys.stderr)
    return 0


def cmd_get(args) -> int:
    from ..progress import progress_bar
    from . import transport

    settings = settings_from(args)
    with progress_bar("retrieving", not args.quiet) as progress:
        files = transport(settings).retrieve_study(settings, args.study_uid, args.out, progress=progress)
    print(f"received {len(files)} instances into {args.out}")
    return 0


def cmd_store(args) -> int:
    from . import transport

    settings = settings_from(args)
    stored = transport(settings).store_files(settings, args.files)
    for path in stored:
        print(f"stored {path} on {settings.describe()}")
    return 0


def cmd_analyze(args) -> int:
    from ..console import SUMMARY_ROWS, load_model, note, split_list, summary
    from ..progress import progress_bar
    from .roundtrip import analyze_study

    settings = settings_from(args)
    with progress_bar("study", not args.quiet) as progress:
        trip = analyze_study(settings, args.study_uid, args.out, lambda: load_model(args), seg=args.seg,
                             organs=split_list(args.organs), findings=split_list(args.findings), store=not args.no_store,
                             progress=progress, log=lambda text: note(args, text))
    print(summary(trip.result.rows, SUMMARY_ROWS))
    for path in trip.written:
        print(f"wrote {path}")
    for path in trip.stored:
        print(f"stored {path.name} on {settings.describe()}")
    return 0


def add_parser(sub, model_args) -> None:
    """The ``pacs`` command and its subcommands on the ``totalfm`` parser (``model_args``: the
    parser's own model options, with -q, for ``pacs analyze``)."""
    p = sub.add_parser("pacs", help="find, retrieve and score a study on a PACS; store DICOM SEG + SR back",
                       description="The PACS round trip (DICOM networking or DICOMweb). Research software: "
                                   "results stored in a PACS are not for clinical decisions.")
    psub = p.add_subparsers(dest="pacs_command", required=True, metavar="PACS_COMMAND")

    def pacs_args(sp, quiet: bool = True):
        g = sp.add_argument_group("PACS (options win over --pacs-config; nothing is built in)")
        g.add_argument("--pacs-config", metavar="FILE", help="JSON file with host, port, called_aet, calling_aet, "
                       "timeout, dicomweb_url, username, password (default: $TOTALFM_PACS_CONFIG)")
        g.add_argument("--pacs-host", help="PACS host name or address (DICOM networking)")
        g.add_argument("--pacs-port", type=int, help="PACS DICOM port")
        g.add_argument("--pacs-aet", help="the PACS's AE title (called AE)")
        g.add_argument("--calling-aet", help="our AE title, as the PACS knows it (default TOTALFM)")
        g.add_argument("--dicomweb-url", help="use DICOMweb at this base URL instead of DICOM networking")
        g.add_argument("--pacs-user", help="DICOMweb user name; the password comes from the config file or "
                                           "$TOTALFM_PACS_PASSWORD, never from the command line")
        g.add_argument("--timeout", type=float, help="seconds to wait for the PACS (default 30)")
        if quiet:
            sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress messages")

    f = psub.add_parser("find", help="list studies", description="List the studies that match (study level).")
    f.add_argument("--patient-id", help="patient ID (wildcards * and ? as the PACS supports them)")
    f.add_argument("--study-date", help="YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    f.add_argument("--accession", help="accession number")
    pacs_args(f)
    f.set_defaults(func=cmd_find)

    g = psub.add_parser("get", help="retrieve a study into a folder", description="Retrieve a whole study.")
    g.add_argument("study_uid", help="Study Instance UID (`totalfm pacs find` lists them)")
    g.add_argument("--out", required=True, help="folder for the study's files")
    pacs_args(g)
    g.set_defaults(func=cmd_get)

    s = psub.add_parser("store", help="send DICOM files (SRs after the SEGs they refer to)",
                        description="Store DICOM files in the PACS in the order given, every SR last (an SR never "
                                    "arrives without its SEG); stops at the first refusal.")
    s.add_argument("files", nargs="+", help="DICOM files, e.g. organs_seg.dcm findings_sr.dcm")
    pacs_args(s)
    s.set_defaults(func=cmd_store)

    a = psub.add_parser("analyze", help="retrieve a study, score it, store the SEG and SR back",
                        description="Retrieve a study, pick its CT series, score every organ, write organs_seg.dcm, "
                                    "findings_sr.dcm and scores.csv into --out, and store the SEG and SR in the PACS.")
    a.add_argument("study_uid", help="Study Instance UID")
    a.add_argument("--out", required=True, help="folder for the study, the DICOM objects and the CSV")
    a.add_argument("--seg", help="the CT's TotalSegmentator segmentation (default: segment it with TotalSegmentator)")
    a.add_argument("--organs", help="comma-separated organs or groups (default: the clinical default set)")
    a.add_argument("--findings", help="comma-separated findings (default: every finding that applies)")
    a.add_argument("--no-store", action="store_true", help="write the files but send nothing")
    model_args(a)
    pacs_args(a, quiet=False)
    a.set_defaults(func=cmd_analyze)
