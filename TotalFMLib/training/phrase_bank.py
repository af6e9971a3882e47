"""Report sentences for the synthetic-lesion benchmark: abnormal phrasings per finding,
normal phrasings per organ, each marked for training or held out for testing.

Sources: the finding catalogue's names and synonyms (``TotalFMLib/data/findings.csv``),
synonyms from ``radiology-semantic-dict`` (``radiology_synonyms.json``: e.g.
nephrolithiasis -> kidney stone, renal calculus, urolithiasis; ascites -> peritoneal
fluid) and hand-written radiology phrasings. Every sentence names its organ, so the
rule-based report parser (``reports.py``) maps it back to the organ and label.

Slots: ``{organ}``/``{Organ}`` the organ in running text ("left kidney"), ``{adj}``
the organ's adjective ("hepatic", "left renal"), ``{size}`` the lesion size ("2.3 cm",
"8 mm"), ``{side}``/``{Side}`` "left"/"right", ``{peri}`` ("perihepatic"), ``{term}``
a finding name or synonym.
"""
from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path

import numpy as np

from ..vocabulary.prompts import organ_phrase
from .report_organs import assign_organs

# Phrasings listed after "|" are held out: they appear only in the test split.
_ABNORMAL: dict[str, str] = {
    "hypodense lesion": """
        {Size} hypodense lesion in the {organ}.
        There is a {size} hypoattenuating lesion in the {organ}.
        Focal hypodensity in the {organ} measuring {size}.
        A low attenuation lesion is seen in the {organ}.
        {Adj} hypodense lesion, {size}.
        |
        The {organ} contains a {size} area of low density.
        Ill-defined low-density focus within the {organ}, measuring {size}.
    """,
    "renal hypodensities": """
        {Size} hypodense lesion in the {organ}.
        Hypoattenuating lesion of the {organ}, {size}.
        Low attenuation {adj} lesion measuring {size}.
        Renal hypodensity in the {organ}.
        |
        The {organ} shows a {size} low-density focus.
        Small hypodensity arising from the {organ}.
    """,
    "hyperdense lesion": """
        {Size} hyperdense lesion in the {organ}.
        There is a hyperattenuating focal lesion in the {organ}.
        High attenuation lesion in the {organ} measuring {size}.
        {Adj} hyperdensity, {size}.
        |
        The {organ} contains a {size} area of increased density.
        Dense focal lesion within the {organ}.
    """,
    "stone": """
        {Size} calculus in the {organ}.
        Stone in the {organ} measuring {size}.
        Calcified calculus within the {organ}, {size}.
        There is a {size} stone in the {organ}.
        |
        A {size} calculus is present in the {organ}.
        Dense calculus lying in the {organ}.
    """,
    "gallstones": """
        Cholelithiasis.
        Gallstones in the gallbladder, the largest {size}.
        {Size} gallstone in the gallbladder lumen.
        Calcified gallstones are present in the gallbladder.
        |
        Dependent calcified calculi within the gallbladder.
        The gallbladder contains a {size} stone.
    """,
    "hepatomegaly": """
        Hepatomegaly.
        The liver is enlarged.
        Enlarged liver.
        Hepatomegaly without focal lesion.
        |
        Liver enlargement is noted.
        The liver is increased in size.
    """,
    "splenomegaly": """
        Splenomegaly.
        The spleen is enlarged.
        Enlarged spleen.
        Splenomegaly without focal splenic lesion.
        |
        Splenic enlargement is noted.
        The spleen is increased in size.
    """,
    "hepatic steatosis": """
        Hepatic steatosis.
        Diffuse fatty infiltration of the liver.
        The liver is diffusely low in attenuation, in keeping with steatosis.
        Fatty liver.
        |
        Decreased hepatic attenuation compatible with fatty liver.
        The liver parenchyma is diffusely hypodense.
    """,
    "ascites": """
        Small amount of {peri} ascites.
        {Peri} free fluid.
        Ascites adjacent to the {organ}.
        Fluid collects around the {organ}.
        |
        Thin rim of {peri} fluid.
        Peritoneal fluid surrounding the {organ}.
    """,
    "pleural effusion": """
        Small {side} pleural effusion.
        {Side} pleural effusion.
        Fluid in the {side} pleural space.
        {Side} sided pleural effusion layering posteriorly.
        |
        Dependent {side} pleural fluid.
        Layering {side} effusion at the lung base.
    """,
    "atherosclerosis": """
        Atherosclerotic calcification of the {organ}.
        Calcified plaque in the {organ}.
        Atherosclerosis of the {organ}.
        Scattered wall calcifications of the {organ}.
        |
        Vascular calcification along the {organ} wall.
        Calcified atheroma of the {organ}.
    """,
}

# Extra abnormal phrasings built from finding names and synonyms ({term}); findings not
# listed here are named by their own phrasings only (their names already carry the organ).
_FOCAL_TERMS = """
    {Term} is seen in the {organ}.
    |
    The {organ} demonstrates {term}.
"""
_TERM_TEMPLATES: dict[str, str] = {
    "hypodense lesion": _FOCAL_TERMS, "renal hypodensities": _FOCAL_TERMS,
    "hyperdense lesion": _FOCAL_TERMS, "stone": _FOCAL_TERMS, "atherosclerosis": _FOCAL_TERMS,
    "ascites": "{Term} around the {organ}. | The {organ} is surrounded by {term}.",
}

_NORMAL = """
    {Organ} is unremarkable.
    The {organ} is normal.
    No abnormality of the {organ}.
    Normal {organ}.
    {Organ}: no focal abnormality.
    |
    {Organ} appears within normal limits.
    The {organ} is unremarkable in appearance.
    No {organ} abnormality is seen.
"""

# organ-specific normal sentences (train | test)
_ORGAN_NORMAL: dict[str, str] = {
    "liver": "No focal liver lesion. | The liver is normal in size and attenuation.",
    "spleen": "The spleen is normal in size. | No splenic lesion.",
    "pancreas": "No pancreatic mass. | The pancreas is without focal lesion.",
    "kidney": "No stones or hydronephrosis in the {organ}. | The {organ} is without calculi or masses.",
    "gallbladder": "No gallstones. | The gallbladder is without stones.",
    "urinary_bladder": "The urinary bladder is unremarkable. | No bladder calculi.",
    "lung": "The {organ} is clear. | No pleural effusion on the {side} side.",
    "artery": "The {organ} is normal in caliber without calcification. | No {adj} calcification.",
}

# Pertinent negatives ({term}: a finding the organ could carry): reports state what was looked
# for and not found, and these sentences teach the text side that "no X" is the normal organ,
# which the scorer's "{Organ} without {finding}" prompts rely on. The wordings differ from the
# scorer's prompt templates (prompts.py), so scoring stays zero-shot. train | test
_NEGATED = """
    The {organ} shows no {term}.
    No evidence of {term} in the {organ}.
    {Organ} is negative for {term}.
    |
    There is no sign of {term} involving the {organ}.
"""

# finding -> keys of radiology_synonyms.json whose synonyms name it
_DICTIONARY_KEYS: dict[str, tuple[str, ...]] = {
    "stone": ("nephrolithiasis",),
    "ascites": ("ascites",),
}

_ADJECTIVES = {"liver": "hepatic", "spleen": "splenic", "pancreas": "pancreatic", "kidney_left": "left renal",
               "kidney_right": "right renal", "aorta": "aortic", "gallbladder": "gallbladder",
               "iliac_artery_left": "left iliac artery", "iliac_artery_right": "right iliac artery",
               "urinary_bladder": "bladder"}
_PERI = {"liver": "perihepatic", "spleen": "perisplenic", "colon": "pericolic"}


def _split(block: str) -> tuple[list[str], list[str]]:
    train, _, test = block.partition("|")
    clean = lambda part: [" ".join(line.split()) for line in part.splitlines() if line.strip()]  # noqa: E731
    return clean(train), clean(test)


def _side(organ: str) -> str:
    return "left" if "_left" in organ else "right" if "_right" in organ else ""


def organ_slots(organ: str) -> dict[str, str]:
    """Slot values for one organ (see the module docstring)."""
    phrase = organ_phrase(organ)
    side = _side(organ)
    adj = _ADJECTIVES.get(organ, "")
    peri = _PERI.get(organ, "")
    return dict(organ=phrase, Organ=phrase[:1].upper() + phrase[1:], adj=adj, Adj=adj[:1].upper() + adj[1:],
                side=side, Side=side[:1].upper() + side[1:], peri=peri, Peri=peri[:1].upper() + peri[1:])


def size_text(mm: float | None) -> str:
    if not mm:
        return "small"
    return f"{mm / 10:.1f} cm" if round(mm) >= 10 else f"{int(round(mm))} mm"


def _usable(template: str, slots: dict[str, str]) -> bool:
    needed = [k for k in ("adj", "Adj", "side", "Side", "peri", "Peri") if "{" + k + "}" in template]
    return all(slots[k] for k in needed)


@functools.lru_cache(maxsize=1)
def dictionary_synonyms() -> dict[str, tuple[str, ...]]:
    """finding -> synonyms taken from radiology-semantic-dict (empty when it cannot be fetched)."""
    from ..inputs.sample_data import fetch
    from ..package_files import PackageIndexUnavailable

    try:
        folder = Path(fetch("radiology_semantic"))
        table = json.loads((folder / "radiology_synonyms.json").read_text(encoding="utf-8"))
    except (PackageIndexUnavailable, OSError, json.JSONDecodeError):
        return {}
    out = {}
    for finding, keys in _DICTIONARY_KEYS.items():
        terms = []
        for key in keys:
            terms += [key] + [str(t) for t in table.get(key, [])]
        out[finding] = tuple(dict.fromkeys(t.lower() for t in terms))
    return out


@functools.lru_cache(maxsize=None)
def finding_terms(finding: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, test) names of a finding: catalogue name and synonyms plus dictionary
    synonyms; every third one (by a stable hash) is held out for the test split."""
    from ..vocabulary.findings import find

    f = find(finding)
    names = list(dict.fromkeys([n.lower() for n in f.names] + list(dictionary_synonyms().get(finding, ()))))
    train, test = [names[0]], []
    for name in names[1:]:
        (test if zlib.crc32(name.encode()) % 3 == 0 else train).append(name)
    return tuple(train), tuple(test)


def _term_sentences(finding: str, organ: str, split: str, templates: tuple[list[str], list[str]],
                    slots: dict[str, str]) -> list[str]:
    """``templates`` (train, test) filled with every name of ``finding`` that ``split`` may use,
    skipping names that point at another organ ("bladder stone" is no phrasing for a kidney)."""
    names_train, names_test = finding_terms(finding)
    out = []
    for term in (names_test if split == "test" else names_train):
        named = assign_organs(term)
        if named and organ not in named:
            continue
        out += [t.format(**slots, term=term, Term=term[:1].upper() + term[1:])
                for t in (templates[1] if split == "test" else templates[0])]
    return out


def abnormal_phrasings(finding: str, organ: str, split: str, size_mm: float | None = None) -> list[str]:
    """All phrasings of ``finding`` in ``organ`` for ``split`` ("test" = the held-out ones,
    anything else = the training ones)."""
    slots = dict(organ_slots(organ), size=size_text(size_mm))
    slots["Size"] = slots["size"][:1].upper() + slots["size"][1:]
    train, test = _split(_ABNORMAL[finding])
    templates = test if split == "test" else train
    out = [t.format(**slots) for t in templates if _usable(t, slots)]
    if finding in _TERM_TEMPLATES:
        term_templates = _split(_TERM_TEMPLATES[finding].replace("|", "\n|\n").replace(". ", ".\n"))
        out += _term_sentences(finding, organ, split, term_templates, slots)
    return out


def negated_phrasings(organ: str, split: str) -> list[str]:
    """Pertinent negatives for ``split``: "no {term}" for every finding the benchmark can insert
    into ``organ``, with the names the split may use (``finding_terms``)."""
    from .lesions import INSERTIONS

    slots, templates = organ_slots(organ), _split(_NEGATED)
    return [s for finding, (_, organs) in INSERTIONS.items() if organ in organs
            for s in _term_sentences(finding, organ, split, templates, slots)]


def normal_phrasings(organ: str, split: str) -> list[str]:
    """Normal-organ phrasings for ``split``: generic, organ-specific and pertinent negatives."""
    slots = organ_slots(organ)
    train, test = _split(_NORMAL)
    key = organ if organ in _ORGAN_NORMAL else ("kidney" if organ.startswith("kidney_") else
                                                 "lung" if organ.startswith("lung_") else
                                                 "artery" if organ in ("aorta", "iliac_artery_left",
                                                                       "iliac_artery_right") else "")
    if key:
        extra_train, extra_test = (p.strip() for p in _ORGAN_NORMAL[key].split("|"))
        train, test = train + [extra_train], test + [extra_test]
    templates = test if split == "test" else train
    return [t.format(**slots) for t in templates if _usable(t, slots)] + negated_phrasings(organ, split)


def pick(phrasings: list[str], rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct phrasings (fewer if fewer exist), in random order."""
    n = min(n, len(phrasings))
    return [phrasings[i] for i in rng.choice(len(phrasings), n, replace=False)]
