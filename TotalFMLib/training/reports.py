"""Radiology report text -> organ-level sentence pairs (rule-based by default).

The chain: ``report_text.split_sentences`` cuts a report into sentences (section headers
such as "LIVER:" are kept so their organ carries over to the sentences under them),
``report_organs.assign_organs`` maps a sentence to TotalSegmentator structure names,
:func:`classify` (here) labels it "abnormal", "normal" or "uncertain" with NegEx-style
negation and hedge cues, and :func:`report_to_pairs` turns a whole report into
:class:`SentencePair` rows.

``llm_splitter.LLMSentenceSplitter`` does the split-and-assign step with an
OpenAI-compatible chat endpoint instead (off unless passed to ``report_to_pairs``);
labels still come from :func:`classify`.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterable

from ..errors import InputError
from ..vocabulary import catalogue
from .report_organs import assign_organs
from .report_text import sections

if TYPE_CHECKING:
    from .llm_splitter import LLMSentenceSplitter

LABELS = ("abnormal", "normal", "uncertain")


@dataclass(frozen=True)
class SentencePair:
    case_id: str
    organ: str      # TotalSegmentator structure name
    sentence: str
    label: str      # "abnormal" | "normal" | "uncertain"

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- labels

_PSEUDO_NEGATION = re.compile(
    r"\b(no (?:significant |interval |appreciable )?change|not (?:significantly )?changed|"
    r"no longer|not only|no increase|no decrease|without (?:significant )?change|gram negative)\b", re.I)
_PRE_NEGATION = re.compile(
    r"\b(no|not|without|negative for|free of|absence of|no evidence of|no sign of|no signs of|"
    r"rules? out|ruled out|resolution of|resolved|nor|neither)\b", re.I)
_POST_NEGATION = re.compile(
    r"\b(is|are|was|were) (?:not (?:seen|identified|present|visualized|demonstrated|detected|evident)"
    r"|absent)\b|\bhas resolved\b|\bhave resolved\b", re.I)
_TERMINATION = re.compile(
    r"\b(but|however|although|though|with|which|except|aside from|apart from|otherwise|yet|"
    r"whereas|while|containing|contains|showing|demonstrating)\b|[;:]", re.I)
_UNCERTAIN = re.compile(
    r"\b(cannot (?:be )?(?:exclude|excluded|ruled out|rule out)|can ?not (?:be )?(?:exclude|excluded|"
    r"ruled out)|not (?:be )?excluded|not ruled out|possible|possibly|likely|probable|probably|"
    r"suspicious for|suspicion for|suspected|suspect|may represent|may be|might represent|"
    r"could represent|could be|questionable|equivocal|indeterminate|concerning for|"
    r"worrisome for|differential (?:diagnosis )?includes|versus|vs\.?|presumably|presumed|"
    r"unlikely|suggestive of|suggests|favou?r(?:ed|s)?)\b|\?", re.I)
# "consistent with" and "compatible with" are confident reads, not hedges.
_NORMAL = re.compile(
    r"\b(unremarkable|normal|normally|within normal limits|wnl|clear|patent|preserved|intact|"
    r"symmetric|symmetrical|symmetrically|homogeneous|homogeneously|age[- ]appropriate|"
    r"not enlarged|no abnormality|no abnormalities|negative|physiologic|physiological)\b", re.I)
# Words that say something is wrong; only these count as an abnormal claim.
_ABNORMAL = re.compile(
    r"(lesion|mass|masses|nodul|nodule|tumou?r|cyst|metasta|neoplas|malignan|carcinoma|"
    r"hypodens|hyperdens|hypoattenuat|hyperattenuat|low[- ]attenuation|high[- ]attenuation|"
    r"low[- ]density|high[- ]density|focus|foci|stone|calcul|lith|calcif|"
    r"effusion|ascites|fluid|collection|abscess|hematoma|haematoma|hemorrhag|haemorrhag|"
    r"enlarg|megaly|hypertroph|atroph|steatosis|fatty|infiltrat|thicken|dilat|distend|"
    r"obstruct|hernia|aneurysm|dissection|thromb|occlu|stenos|plaque|atherosclero|"
    r"consolidat|opacit|atelecta|emphysema|fibros|edema|oedema|inflam|itis\b|fracture|"
    r"removed|resect|ectomy|post[- ]?surgical|surgically|air[- ]fluid|free air|"
    r"pneumo|degenerat|irregular|heterogen|ill[- ]defined|abnormal|suspicious|"
    r"hydronephros|hydroureter|varic|lymphadenopath|cirrho|nodular|scar|infarct|ischem|"
    r"diverticul|polyp|wall thickening|duct dilat|narrowing|perforat|"
    r"(?:increased|decreased|reduced) (?:in )?(?:density|attenuation|size))", re.I)


def _negated_spans(text: str) -> list[tuple[int, int]]:
    """Character spans covered by a negation: from a pre-negation cue to the next terminator,
    and from the clause start to a post-negation cue."""
    masked = _PSEUDO_NEGATION.sub(lambda m: "#" * len(m.group()), text)
    spans = []
    for m in _PRE_NEGATION.finditer(masked):
        term = _TERMINATION.search(masked, m.end())
        spans.append((m.start(), term.start() if term else len(text)))
    for m in _POST_NEGATION.finditer(masked):
        starts = [t.end() for t in _TERMINATION.finditer(masked, 0, m.start())]
        spans.append((starts[-1] if starts else 0, m.end()))
    return spans


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def classify(sentence: str) -> str:
    """"abnormal", "normal" or "uncertain" for one sentence.

    Abnormal: a finding word ("lesion", "stone", "enlarged", "effusion", ...) outside every
    negation scope, stated before any hedge: "hypodense lesions in the liver, likely small
    cysts" reports lesions for certain and hedges only what they are. Uncertain: a hedge cue
    ("cannot exclude", "possible", "likely", "suspicious for", "may represent", "?") outside a
    negation that comes before (or without) the finding it qualifies: "possible hypodense
    lesion". Normal: everything else -- a negation or normal cue ("no", "without", "negative
    for", "free of", "unremarkable", "normal"), or a sentence that names no finding at all,
    such as a measurement ("main pulmonary artery diameter is 2.5 cm").
    """
    text = sentence.strip()
    if not text:
        raise InputError(None, "empty sentence")
    spans = _negated_spans(text)
    hedges = [m.start() for m in _UNCERTAIN.finditer(text) if not _inside(m.start(), spans)]
    masked = _PSEUDO_NEGATION.sub(lambda m: "#" * len(m.group()), text)
    findings = [m.start() for m in _ABNORMAL.finditer(masked)
                if not _inside(m.start(), spans) and not _normal_phrase_at(masked, m)]
    if hedges and (not findings or hedges[0] <= findings[0]):
        return "uncertain"
    return "abnormal" if findings else "normal"


def _normal_phrase_at(text: str, m: re.Match) -> bool:
    """True when a finding word is part of a normal phrase ("no focal lesion" is handled
    by negation; this catches "normal in size and without enlargement" style leftovers)."""
    window = text[max(0, m.start() - 12):m.start()].lower()
    return window.rstrip().endswith(("not", "non-", "non"))


# --------------------------------------------------------------------------- pairs

def normal_sentence(organ: str) -> str:
    """Generated normal sentence for an organ no report sentence mentions."""
    o = catalogue.organ(organ)
    return f"{o.display_name} is unremarkable."


def report_to_pairs(case_id: str, report: str, organs: Iterable[str] | None = None,
                    fill_normal: bool = False, keep_uncertain: bool = True,
                    splitter: "LLMSentenceSplitter | None" = None) -> list[SentencePair]:
    """Organ-level (organ, sentence, label) pairs of one report.

    ``organs`` restricts the output to these structures (e.g. those present in the
    segmentation); with ``fill_normal`` every one of them that no sentence mentions gets
    the generated :func:`normal_sentence`. Sentences naming no organ are dropped;
    uncertain ones are dropped when ``keep_uncertain`` is false. ``splitter`` (an
    :class:`LLMSentenceSplitter`) replaces the rule-based split and organ assignment.
    """
    wanted = None if organs is None else [catalogue.organ(o).name for o in organs]
    if splitter is not None:
        items = [(organ, s) for organ, sents in splitter.split(report).items() for s in sents]
    else:
        items = [(organ, s) for header, s in sections(report) for organ in assign_organs(s, header)]
    pairs: list[SentencePair] = []
    seen = set()
    for organ, sentence in items:
        if wanted is not None and organ not in wanted:
            continue
        label = classify(sentence)
        if label == "uncertain" and not keep_uncertain:
            continue
        key = (organ, sentence)
        if key not in seen:
            seen.add(key)
            pairs.append(SentencePair(case_id, organ, sentence, label))
    if fill_normal and wanted is not None:
        covered = {p.organ for p in pairs}
        for organ in wanted:
            if organ not in covered:
                pairs.append(SentencePair(case_id, organ, normal_sentence(organ), "normal"))
    return pairs
