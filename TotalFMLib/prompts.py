"""Prompt texts for zero-shot scoring and search, and the one door through which text is encoded.

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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import catalogue
from .errors import InputError, ModelError

FINDING_ABNORMAL = ("{Organ} with {finding}.", "{Finding} in the {organ}.", "{Organ}: {finding} is present.")
FINDING_NORMAL = ("{Organ} without {finding}.", "No {finding} in the {organ}.", "{Organ}: {finding} is not present.")
LESION_ABNORMAL = ("{Organ} with a lesion.", "Abnormal {organ}.", "{Organ} is abnormal.",
                   "{Organ}: an abnormality is present.")
LESION_NORMAL = ("{Organ} without a lesion.", "Normal {organ}.", "{Organ} is normal.",
                 "{Organ}: no abnormality is present.")
QUERY_STYLES = ("organ", "plain")

TextEncoder = Callable[[list[str]], "np.ndarray | Mapping[str, np.ndarray]"]


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


def encode_texts(encode_text: TextEncoder, texts: list[str]) -> np.ndarray:
    """Encode ``texts`` in one call; (N, D) float unit vectors in the order given.

    A text given more than once is encoded once (``encode_text`` sees each distinct text
    once, in first-seen order). ``encode_text`` may return an (N, D) array or a {text:
    vector} mapping (the facade's ``TotalFM.encode_text``). Rows are re-normalised so dot
    products are cosines.
    """
    texts = list(texts)
    distinct = list(dict.fromkeys(texts))
    out = encode_text(distinct)
    if isinstance(out, Mapping):
        try:
            out = [out[t] for t in distinct]
        except KeyError as e:
            raise ModelError(f"text encoder returned no vector for {e.args[0]!r}") from None
    vectors = np.asarray(out, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(distinct):
        raise ModelError(f"text encoder returned shape {vectors.shape} for {len(distinct)} texts")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
        raise ModelError("text encoder returned a zero or non-finite vector")
    vectors = vectors / norms
    if len(distinct) == len(texts):
        return vectors
    row = {t: i for i, t in enumerate(distinct)}
    return vectors[[row[t] for t in texts]]
