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
QUERY_STYLES = ("organ", "plain")


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


def finding_prompts(organ, finding) -> PromptPair:
    """Abnormal and normal prompt ensembles for one finding (name or ``Finding``) in one organ."""
    name = getattr(finding, "finding", finding)
    return PromptPair(_fill(FINDING_ABNORMAL, organ, name), _fill(FINDING_NORMAL, organ, name))


def lesion_prompts(organ) -> PromptPair:
    """Abnormal and normal prompt ensembles for the organ's "any lesion" score."""
    return PromptPair(_fill(LESION_ABNORMAL, organ), _fill(LESION_NORMAL, organ))


def query_text(organ, query: str, style: str = "organ") -> str:
    """Search text for one organ: "Left kidney: {query}" (style "organ") or the query ("plain")."""
    if style == "plain":
        return query
    if style == "organ":
        return f"{organ_phrase(organ, True)}: {query}"
    raise InputError(None, f"unknown query style {style!r}; use one of {', '.join(QUERY_STYLES)}")
