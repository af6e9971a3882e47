"""What the ``totalfm`` commands share on the console: comma lists, notes on stderr, loading
the model with a note, and the score table."""
from __future__ import annotations

import sys

SUMMARY_ROWS = 12  # organs in the console table unless --rows says otherwise


def split_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def note(args, text: str) -> None:
    """An informational line on stderr (silenced by -q)."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr)


def load_model(args):
    from .totalfm import TotalFM

    note(args, f"loading the {args.model} model ...")
    return TotalFM.load(args.model, device=args.device, precision=getattr(args, "precision", "fp32"))


def summary(rows, limit: int) -> str:
    from .results import ANY_LESION

    lesion = sorted((r for r in rows if r.finding == ANY_LESION), key=lambda r: -r.score)
    shown = lesion if limit <= 0 else lesion[:limit]
    lines = [f"{'organ':32s} {'any lesion':>10s} {'thr':>5s} flag"]
    lines += [f"{r.organ:32s} {r.score:10.3f} {r.threshold:5.2f} {'*' if r.flagged else ''}" for r in shown]
    if len(shown) < len(lesion):
        lines.append(f"... {len(lesion) - len(shown)} more organs not shown (--rows 0 shows all; "
                     f"the CSV and JSON hold every organ and finding)")
    return "\n".join(lines)
