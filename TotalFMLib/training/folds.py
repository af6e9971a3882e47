"""Leave-one-patient-out folds over a benchmark's manifest.

A fold holds one patient out: it trains on the "train" cases of the other patients, picks
its thresholds on their "eval" cases ("val"), and tests on the "eval" cases of the held-out
patient ("test"), whose phrasings no training case used. The held-out patient's "train" cases
("unseen") are not used by the fold; no model of it saw their images either, so a measure
that reads images only (the oracle, ``Training/oracle_by_organ.py --test all``) may test on
them too, with five times the evaluation cases' findings. ``held_out=None`` is the final
model's view: every patient trains, every eval case validates, nothing is tested.
"""
from __future__ import annotations

from ..errors import InputError

FINAL = "all"  # the fold name of the model trained on every patient


def patients(entries: list[dict]) -> list[str]:
    """The patients of a manifest, in first-seen order."""
    return list(dict.fromkeys(e["patient"] for e in entries))


def fold_entries(entries: list[dict], held_out: str | None) -> dict[str, list[dict]]:
    """{"train": [...], "val": [...], "test": [...], "unseen": [...]} manifest entries of one fold."""
    known = patients(entries)
    if held_out is not None and held_out not in known:
        raise InputError(None, f"patient {held_out!r} is not in the benchmark; its patients are {', '.join(known)}")
    out = {"train": [], "val": [], "test": [], "unseen": []}
    for e in entries:
        if e["patient"] == held_out:
            out["test" if e["split"] == "eval" else "unseen"].append(e)
        elif e["split"] == "train":
            out["train"].append(e)
        elif e["split"] == "eval":
            out["val"].append(e)
    if not out["train"]:
        raise InputError(None, f"fold {held_out or FINAL}: no training cases (patients {', '.join(known)})")
    return out


def role_in_fold(entry: dict, held_out: str | None) -> str | None:
    """"train", "val", "test" or None (a held-out patient's training case) for one entry."""
    if entry["patient"] == held_out:
        return "test" if entry["split"] == "eval" else None
    return "train" if entry["split"] == "train" else "val"


HELD_OUT_HEADING = "## Held-out patients (leave-one-patient-out)"


def card_with_folds(card: str, folds_table: str) -> str:
    """The model card with its held-out section set to the per-fold table (the first table of
    ``Training/results/folds.md``), placed before the in-distribution figures; the section is
    replaced when the card has one."""
    lines = folds_table.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return card
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    section = "\n".join([HELD_OUT_HEADING, "", "Mean finding AUROC on each held-out patient's evaluation cases "
                         "(`python Training/evaluate_folds.py`; every column: `Training/results/folds.md`):", "",
                         *lines[start:end], "", ""])
    if HELD_OUT_HEADING in card:
        before, rest = card.split(HELD_OUT_HEADING, 1)
        after = rest[rest.index("\n## "):].lstrip("\n") if "\n## " in rest else ""
        return before + section + after
    anchor = "## In-distribution figures"
    return card.replace(anchor, section + anchor, 1) if anchor in card else card.rstrip("\n") + "\n\n" + section
