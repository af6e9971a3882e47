"""Prompt texts for zero-shot scoring and search.

Prompts name the organ, as the TotalFM authors advise ("Liver with metastasis"). Each
abnormal template has a normal partner that differs only by the negation, CT-CLIP style,
so a score compares "finding present" with "finding absent" in the same wording:

  finding, abnormal                     finding, normal
  "{Organ} with {finding}."             "{Organ} without {finding}."
  "{Finding} in the {organ}."           "No {finding} in the {organ}."
  "{Organ}: {finding} is present."      "{Organ}: {finding} is not present."

  any lesion, abnormal                  any lesion, normal
  "{Organ} with a lesion."              "{Organ} without a lesion."
  "Abnormal {organ}."                   "Normal {organ}."
  "{Organ} is abnormal."                "{Organ} is normal."
  "{Organ}: an abnormality is present." "{Organ}: no abnormality is present."

{Organ}/{organ} is the catalogue display name ("Left kidney"/"left kidney"), {finding}
the catalogue's canonical finding name. Search phrases a query per organ as
"{Organ}: {query}" (style "organ") or uses it as typed (style "plain").

Style "plain" leaves the organ out of the scoring prompts too, CT-CLIP style ("{Finding} is
present." / "{Finding} is not present."): the evaluation compares the two styles.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from . import catalogue

FINDING_ABNORMAL = ("{Organ} with {finding}.", "{Finding} in the {organ}.", "{Organ}: {finding} is present.")
FINDING_NORMAL = ("{Organ} without {finding}.", "No {finding} in the {organ}.", "{Organ}: {finding} is not present.")
LESION_ABNORMAL = ("{Organ} with a lesion.", "Abnormal {organ}.", "{Organ} is abnormal.",
                   "{Organ}: an abnormality is present.")
LESION_NORMAL = ("{Organ} without a lesion.", "Normal {organ}.", "{Organ} is normal.",
                 "{Organ}: no abnormality is present.")
PLAIN_FINDING_ABNORMAL = ("{Finding} is present.", "There is {finding}.")
PLAIN_FINDING_NORMAL = ("{Finding} is not present.", "There is no {finding}.")
PLAIN_LESION_ABNORMAL = ("A lesion is present.", "There is an abnormality.")
PLAIN_LESION_NORMAL = ("No lesion is present.", "There is no abnormality.")
QUERY_STYLES = ("organ", "plain")

# Sentences that say nothing about a finding: each organ's similarity to them (phrased like a
# query) is its search baseline (zeroshot/search.py). Neutral and normal words, and sentences
# that mean nothing in a report.
REFERENCE_QUERIES = ("normal", "unremarkable", "no abnormality", "within normal limits", "organ", "CT image",
                     "axial slice", "zzz", "qwertz uiop", "hello world", "the quick brown fox", "cup of tea",
                     "spreadsheet", "lorem ipsum")
PROMPT_STYLES = QUERY_STYLES


@dataclass(frozen=True)
class PromptPair:
    abnormal: tuple[str, ...]
    normal: tuple[str, ...]


def organ_phrase(organ, capital: bool = False) -> str:
    """Display name in running text: "left kidney", "small intestine", "L5 vertebra"."""
    words = [w if any(c.isdigit() for c in w) or w.isupper() else w.lower()
             for w in catalogue.organ(organ).display_name.split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:] if capital else text


def _fill(templates, organ, finding: str = "") -> tuple[str, ...]:
    values = dict(Organ=organ_phrase(organ, True), organ=organ_phrase(organ),
                  finding=finding, Finding=finding[:1].upper() + finding[1:])
    return tuple(t.format(**values) for t in templates)


def _check_style(style: str) -> None:
    if style not in PROMPT_STYLES:
        raise InputError(None, f"unknown prompt style {style!r}; use one of {', '.join(PROMPT_STYLES)}")


def finding_prompts(organ, finding, style: str = "organ") -> PromptPair:
    """Abnormal and normal prompt ensembles for one finding (name or ``Finding``) in one organ."""
    _check_style(style)
    name = getattr(finding, "finding", finding)
    abnormal, normal = ((FINDING_ABNORMAL, FINDING_NORMAL) if style == "organ"
                        else (PLAIN_FINDING_ABNORMAL, PLAIN_FINDING_NORMAL))
    return PromptPair(_fill(abnormal, organ, name), _fill(normal, organ, name))


def lesion_prompts(organ, style: str = "organ") -> PromptPair:
    """Abnormal and normal prompt ensembles for the organ's "any lesion" score."""
    _check_style(style)
    abnormal, normal = ((LESION_ABNORMAL, LESION_NORMAL) if style == "organ"
                        else (PLAIN_LESION_ABNORMAL, PLAIN_LESION_NORMAL))
    return PromptPair(_fill(abnormal, organ), _fill(normal, organ))


def query_text(organ, query: str, style: str = "organ") -> str:
    """Search text for one organ: "Left kidney: {query}" (style "organ") or the query ("plain")."""
    if style == "plain":
        return query
    if style == "organ":
        return f"{organ_phrase(organ, True)}: {query}"
    raise InputError(None, f"unknown query style {style!r}; use one of {', '.join(QUERY_STYLES)}")
