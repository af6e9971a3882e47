"""Report sentences -> organs: :func:`assign_organs` maps a sentence to TotalSegmentator
structure names through an organ lexicon (catalogue names, display names, SNOMED meanings
and hand-written synonyms, with left/right/bilateral)."""
from __future__ import annotations

import functools
import re
from typing import Iterable

from ..vocabulary import catalogue

# Family name -> member structures. Laterality picks members ending in _left/_right.
_FAMILIES: dict[str, tuple[str, ...]] = {
    "liver": ("liver",),
    "spleen": ("spleen",),
    "pancreas": ("pancreas",),
    "gallbladder": ("gallbladder",),
    "stomach": ("stomach",),
    "esophagus": ("esophagus",),
    "duodenum": ("duodenum",),
    "small_bowel": ("small_bowel",),
    "colon": ("colon",),
    "bowel": ("small_bowel", "duodenum", "colon"),
    "urinary_bladder": ("urinary_bladder",),
    "prostate": ("prostate",),
    "kidneys": ("kidney_left", "kidney_right"),
    "adrenals": ("adrenal_gland_left", "adrenal_gland_right"),
    "lungs": ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
              "lung_middle_lobe_right", "lung_lower_lobe_right"),
    "lower_lobes": ("lung_lower_lobe_left", "lung_lower_lobe_right"),
    "upper_lobes": ("lung_upper_lobe_left", "lung_upper_lobe_right"),
    "middle_lobe": ("lung_middle_lobe_right",),
    "lingula": ("lung_upper_lobe_left",),
    "heart": ("heart",),
    "aorta": ("aorta",),
    "ivc": ("inferior_vena_cava",),
    "svc": ("superior_vena_cava",),
    "portal_vein": ("portal_vein_and_splenic_vein",),
    "pulmonary_vein": ("pulmonary_vein",),
    "trachea": ("trachea",),
    "thyroid": ("thyroid_gland",),
    "brain": ("brain",),
    "iliac_arteries": ("iliac_artery_left", "iliac_artery_right"),
    "iliac_veins": ("iliac_vena_left", "iliac_vena_right"),
    "hepatosplenic": ("liver", "spleen"),
}

# Hand-written synonyms (lower case, matched on word boundaries) -> family.
_SYNONYMS: dict[str, str] = {
    # liver
    "liver": "liver", "hepatic": "liver", "hepatomegaly": "liver", "perihepatic": "liver",
    "hepatic parenchyma": "liver", "hepatic steatosis": "liver", "fatty liver": "liver",
    "hepatosplenomegaly": "hepatosplenic", "subcapsular hepatic": "liver",
    # spleen
    "spleen": "spleen", "splenic": "spleen", "splenomegaly": "spleen", "perisplenic": "spleen",
    # pancreas
    "pancreas": "pancreas", "pancreatic": "pancreas", "pancreatic duct": "pancreas",
    # gallbladder
    "gallbladder": "gallbladder", "gall bladder": "gallbladder", "gallstone": "gallbladder",
    "gallstones": "gallbladder", "cholelithiasis": "gallbladder", "cholecystitis": "gallbladder",
    "cholecystectomy": "gallbladder", "cholecystic": "gallbladder", "pericholecystic": "gallbladder",
    "gallbladder wall": "gallbladder",
    # gut
    "stomach": "stomach", "gastric": "stomach", "esophagus": "esophagus", "oesophagus": "esophagus",
    "esophageal": "esophagus", "oesophageal": "esophagus", "duodenum": "duodenum",
    "duodenal": "duodenum", "small bowel": "small_bowel", "small intestine": "small_bowel",
    "jejunum": "small_bowel", "jejunal": "small_bowel", "ileum": "small_bowel", "ileal": "small_bowel",
    "colon": "colon", "colonic": "colon", "large bowel": "colon", "sigmoid": "colon",
    "sigmoid colon": "colon", "cecum": "colon", "caecum": "colon", "cecal": "colon",
    "rectosigmoid": "colon", "hepatic flexure": "colon", "splenic flexure": "colon",
    "pericolic": "colon", "diverticulosis": "colon", "diverticulitis": "colon",
    "bowel": "bowel", "bowel loops": "bowel",
    # urinary
    "kidney": "kidneys", "kidneys": "kidneys", "renal": "kidneys", "nephrolithiasis": "kidneys",
    "hydronephrosis": "kidneys", "perirenal": "kidneys", "perinephric": "kidneys",
    "renal calculus": "kidneys", "renal calculi": "kidneys", "kidney stone": "kidneys",
    "kidney stones": "kidneys", "renal collecting system": "kidneys", "renal pelvis": "kidneys",
    "urinary bladder": "urinary_bladder", "bladder": "urinary_bladder", "vesical": "urinary_bladder",
    "bladder wall": "urinary_bladder", "cystolithiasis": "urinary_bladder",
    "prostate": "prostate", "prostatic": "prostate", "prostatomegaly": "prostate",
    # adrenal
    "adrenal": "adrenals", "adrenals": "adrenals", "adrenal gland": "adrenals",
    "adrenal glands": "adrenals", "suprarenal": "adrenals",
    # chest
    "lung": "lungs", "lungs": "lungs", "pulmonary": "lungs", "pleural": "lower_lobes",
    "pleural effusion": "lower_lobes", "pleural effusions": "lower_lobes",
    "lung base": "lower_lobes", "lung bases": "lower_lobes", "basal": "lower_lobes",
    "lower lobe": "lower_lobes", "lower lobes": "lower_lobes", "upper lobe": "upper_lobes",
    "upper lobes": "upper_lobes", "middle lobe": "middle_lobe", "lingula": "lingula",
    "lingular": "lingula", "heart": "heart", "cardiac": "heart", "cardiomegaly": "heart",
    "pericardial": "heart", "coronary": "heart", "trachea": "trachea", "tracheal": "trachea",
    "thyroid": "thyroid", "thyroid gland": "thyroid",
    # vessels
    "aorta": "aorta", "aortic": "aorta", "abdominal aorta": "aorta", "thoracic aorta": "aorta",
    "aortic wall": "aorta", "inferior vena cava": "ivc", "ivc": "ivc",
    "superior vena cava": "svc", "svc": "svc", "portal vein": "portal_vein",
    "splenic vein": "portal_vein", "portal venous system": "portal_vein",
    "pulmonary vein": "pulmonary_vein", "pulmonary veins": "pulmonary_vein",
    "iliac artery": "iliac_arteries", "iliac arteries": "iliac_arteries",
    "iliac vein": "iliac_veins", "iliac veins": "iliac_veins", "brain": "brain",
}

# Phrases that look like organ words but are not that organ.
_NOT_ORGAN = ("pulmonary embol", "pulmonary arter", "renal arter", "renal vein", "hepatic vein",
              "hepatic arter", "splenic arter", "pulmonary trunk")

_SIDE = re.compile(r"\b(left|right|bilateral|bilaterally|both)\b", re.I)
_VERTEBRA = re.compile(r"\b([CTLS])\s?(\d{1,2})\b(?=\s*(?:vertebra|vertebral|level|body|$|[.,;]))")


@functools.lru_cache(maxsize=1)
def organ_lexicon() -> dict[str, tuple[str, ...]]:
    """Term (lower case) -> structure names it can mean before laterality is applied.

    Built from the catalogue (structure names, display names, SNOMED meanings with and
    without their laterality modifier) plus the hand-written synonyms above.
    """
    lex: dict[str, set[str]] = {}

    def add(term: str, names: Iterable[str]) -> None:
        term = re.sub(r"\s+", " ", term.strip().lower().replace("_", " "))
        if len(term) >= 3:
            lex.setdefault(term, set()).update(n for n in names if catalogue.is_structure(n))

    for o in catalogue.organs():
        if o.name.startswith("kidney_cyst"):
            continue  # "kidney cyst" is a finding in reports, not the organ
        add(o.name, [o.name])
        add(o.display_name, [o.name])
        if o.snomed_meaning:
            add(o.snomed_meaning, [o.name])  # "kidney" -> both sides, laterality decides
            if o.snomed_modifier:
                add(f"{o.snomed_modifier} {o.snomed_meaning}", [o.name])
    for term, family in _SYNONYMS.items():
        add(term, _FAMILIES[family])
    return {t: tuple(sorted(v)) for t, v in lex.items() if v}


@functools.lru_cache(maxsize=1)
def _lexicon_regex() -> re.Pattern:
    terms = sorted(organ_lexicon(), key=len, reverse=True)
    body = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in terms)
    return re.compile(rf"\b(?:{body})\b", re.I)


def _lateral(members: tuple[str, ...], side: str | None) -> tuple[str, ...]:
    if side in (None, "both"):
        return members
    picked = tuple(m for m in members if m.endswith("_" + side) or f"_{side}_" in m)
    lateral = [m for m in members if m.endswith(("_left", "_right")) or "_left_" in m or "_right_" in m]
    if picked:
        return picked + tuple(m for m in members if m not in lateral)
    return members


def _one_side(members: tuple[str, ...]) -> str | None:
    """"left" or "right" when the term itself names one side ("left kidney"), else None."""
    sides = {side for m in members for side in ("left", "right") if m.endswith("_" + side) or f"_{side}_" in m}
    return sides.pop() if len(sides) == 1 else None


def _side_word(word: str) -> str:
    w = word.lower()
    return w if w in ("left", "right") else "both"


def assign_organs(sentence: str, header: str = "") -> list[str]:
    """Structure names a sentence talks about, in order of first mention.

    A side word ("left", "right", "bilateral") between the previous organ mention and
    this one picks the side; a lone trailing side ("kidney, left") applies too. A mention
    without a side that covers a more specific mention of the same sentence adds nothing
    ("renal cyst in the superior pole of the left kidney": the left kidney only;
    "pulmonary nodule in the left upper lobe": that lobe only); one that overlaps a mention
    with a side takes that side; otherwise no side means both. ``header`` (a section label such as "KIDNEYS") supplies
    the organs when the sentence names none.
    """
    text = sentence.lower()
    for bad in _NOT_ORGAN:
        text = re.sub(re.escape(bad) + r"\w*", lambda m: " " * len(m.group()), text)
    lex = organ_lexicon()
    prev_end = 0
    bilateral = re.search(r"\b(bilateral|bilaterally|both)\b", text) is not None
    matches = list(_lexicon_regex().finditer(text))
    mentions: list[tuple[tuple[str, ...], str | None]] = []  # (members, side named for them)
    for i, m in enumerate(matches):
        members = lex[re.sub(r"\s+", " ", m.group().lower())]
        side = None
        before = list(_SIDE.finditer(text[prev_end:m.start()]))
        if before:
            side = _side_word(before[-1].group())
        else:
            nxt = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            after = re.match(r"[\s,]*(?:\(\s*)?(left|right|bilateral)\b", text[m.end():nxt])
            if after:
                side = _side_word(after.group(1))
        mentions.append((members, side or _one_side(members)))
        prev_end = m.end()
    resolved = [set(_lateral(members, side)) for members, side in mentions]
    found: list[str] = []
    for k, (members, side) in enumerate(mentions):
        if side is None:
            paired = all(_one_side((m,)) for m in members)  # kidneys, lung lobes: not liver and spleen
            if paired and any(j != k and other < set(members) for j, other in enumerate(resolved)):
                continue  # "pulmonary nodule in the left upper lobe": the specific mention speaks
            shared = {s for other, s in mentions if s in ("left", "right") and set(other) & set(members)}
            side = shared.pop() if len(shared) == 1 else ("both" if bilateral else None)
        for name in _lateral(members, side):
            if name not in found:
                found.append(name)
    for v in _VERTEBRA.finditer(sentence):
        name = f"vertebrae_{v.group(1).upper()}{int(v.group(2))}"
        if catalogue.is_structure(name) and name not in found:
            found.append(name)
    if not found and header:
        sides = {_side_word(m.group()) for m in _SIDE.finditer(text)}
        side = sides.pop() if len(sides) == 1 else None
        found = list(_lateral(tuple(assign_organs(header)), side))
    return found
