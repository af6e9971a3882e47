"""Radiology report text -> organ-level sentence pairs (rule-based by default).

The chain: :func:`split_sentences` cuts a report into sentences (section headers such
as "LIVER:" are kept so their organ carries over to the sentences under them),
:func:`assign_organs` maps a sentence to TotalSegmentator structure names through an
organ lexicon (catalogue names, display names, SNOMED meanings and hand-written
synonyms, with left/right/bilateral), :func:`classify` labels it "abnormal", "normal"
or "uncertain" with NegEx-style negation and hedge cues, and :func:`report_to_pairs`
turns a whole report into :class:`SentencePair` rows.

:class:`LLMSentenceSplitter` does the split-and-assign step with an OpenAI-compatible
chat endpoint instead (off unless passed to ``report_to_pairs``); labels still come
from :func:`classify`.
"""
from __future__ import annotations

import functools
import json
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Iterable

from ..vocabulary import catalogue
from ..errors import InputError, ModelError

LABELS = ("abnormal", "normal", "uncertain")


@dataclass(frozen=True)
class SentencePair:
    case_id: str
    organ: str      # TotalSegmentator structure name
    sentence: str
    label: str      # "abnormal" | "normal" | "uncertain"

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- sentences

# Abbreviations whose trailing dot does not end a sentence.
_ABBREVIATIONS = ("approx", "e.g", "i.e", "vs", "dr", "mr", "mrs", "ms", "no", "fig", "cf",
                  "etc", "sec", "ca", "max", "min", "hx", "pt", "st", "incl")
_TITLES = ("dr", "mr", "mrs", "ms", "st", "fig", "e.g", "i.e", "vs", "cf")
_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z /&,()-]{1,60}):\s*")
_LIST_MARK = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")
_SECTION_WORDS = {"findings", "impression", "conclusion", "clinical history", "history",
                  "indication", "technique", "comparison", "report", "summary", "exam",
                  "examination", "procedure", "result", "results", "opinion", "comment",
                  "comments", "addendum", "diagnosis", "ct abdomen", "ct chest"}


def _split_line(line: str) -> list[str]:
    """Cut one line at sentence ends (". ", "! ", "? ", ";"), keeping abbreviations and decimals."""
    out: list[str] = []
    start = 0
    for m in re.finditer(r"[.!?;](?=\s|$)", line):
        end = m.end()
        piece = line[start:end]
        if m.group() == ".":
            word = re.search(r"([A-Za-z.]+)\.$", piece)
            abbreviation = word.group(1).lower().rstrip(".") if word else ""
            if abbreviation in _ABBREVIATIONS:
                nxt = line[end:].lstrip()[:1]
                # "Dr. Smith", "approx. 3 cm" go on; "... etc. The liver" and "No. The" end here
                if abbreviation in _TITLES or not nxt.isupper():
                    continue
        out.append(piece)
        start = end
    out.append(line[start:])
    return [s.strip(" \t;") for s in out if s.strip(" \t;.")]


def _logical_lines(text: str) -> list[str]:
    """Lines with hard wraps undone: a line that does not end a sentence continues on the
    next one unless that one starts a header or a list item. Blank lines stay ("")."""
    lines: list[str] = []
    for raw in re.split(r"\r?\n", text):
        starts_item = bool(_LIST_MARK.match(raw)) or bool(_HEADER.match(raw))
        line = _LIST_MARK.sub("", raw).strip()
        if (line and lines and lines[-1] and not starts_item
                and not re.search(r"[.!?;:]$", lines[-1])):
            lines[-1] = f"{lines[-1]} {line}"
        else:
            lines.append(line)
    return lines


def _sections(text: str) -> list[tuple[str, str]]:
    """(header, sentence) for every sentence; header is the "ORGAN:" label in force ("" if none)."""
    if not isinstance(text, str):
        raise InputError(None, f"report text must be a string, not {type(text).__name__}")
    result: list[tuple[str, str]] = []
    header = ""
    for line in _logical_lines(text):
        if not line:
            header = ""  # a blank line ends a section
            continue
        m = _HEADER.match(line)
        if m and len(m.group(1).split()) <= 6:
            name = m.group(1).strip()
            header = "" if name.lower() in _SECTION_WORDS else name
            line = line[m.end():]
        for sentence in _split_line(line):
            result.append((header, sentence))
    return result


def split_sentences(text: str) -> list[str]:
    """Sentences of a report, in order; section words ("FINDINGS:") and list marks dropped."""
    return [s for _, s in _sections(text)]


# --------------------------------------------------------------------------- organs

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


def _side_word(word: str) -> str:
    w = word.lower()
    return w if w in ("left", "right") else "both"


def assign_organs(sentence: str, header: str = "") -> list[str]:
    """Structure names a sentence talks about, in order of first mention.

    A side word ("left", "right", "bilateral") between the previous organ mention and
    this one picks the side; a lone trailing side ("kidney, left") applies too; no
    side means both. ``header`` (a section label such as "KIDNEYS") supplies the
    organs when the sentence names none.
    """
    text = sentence.lower()
    for bad in _NOT_ORGAN:
        text = re.sub(re.escape(bad) + r"\w*", lambda m: " " * len(m.group()), text)
    lex = organ_lexicon()
    found: list[str] = []
    prev_end = 0
    bilateral = re.search(r"\b(bilateral|bilaterally|both)\b", text) is not None
    matches = list(_lexicon_regex().finditer(text))
    for i, m in enumerate(matches):
        term = re.sub(r"\s+", " ", m.group().lower())
        members = lex[term]
        side = None
        before = list(_SIDE.finditer(text[prev_end:m.start()]))
        if before:
            side = _side_word(before[-1].group())
        else:
            nxt = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            after = re.match(r"[\s,]*(?:\(\s*)?(left|right|bilateral)\b", text[m.end():nxt])
            if after:
                side = _side_word(after.group(1))
        if side is None and bilateral:
            side = "both"
        for name in _lateral(members, side):
            if name not in found:
                found.append(name)
        prev_end = m.end()
    for v in _VERTEBRA.finditer(sentence):
        name = f"vertebrae_{v.group(1).upper()}{int(v.group(2))}"
        if catalogue.is_structure(name) and name not in found:
            found.append(name)
    if not found and header:
        sides = {_side_word(m.group()) for m in _SIDE.finditer(text)}
        side = sides.pop() if len(sides) == 1 else None
        found = list(_lateral(tuple(assign_organs(header)), side))
    return found


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
    r"diverticul|polyp|wall thickening|duct dilat|narrowing|perforat)", re.I)


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

    Uncertain: a hedge cue ("cannot exclude", "possible", "likely", "suspicious for",
    "may represent", "?") outside a negation. Abnormal: a finding word ("lesion",
    "stone", "enlarged", "effusion", ...) outside every negation scope. Normal: a
    negation or normal cue ("no", "without", "negative for", "free of",
    "unremarkable", "normal") and no un-negated finding word. A sentence with neither
    counts as abnormal: reports rarely state a normal organ without saying so.
    """
    text = sentence.strip()
    if not text:
        raise InputError(None, "empty sentence")
    spans = _negated_spans(text)
    for m in _UNCERTAIN.finditer(text):
        if not _inside(m.start(), spans):
            return "uncertain"
    masked = _PSEUDO_NEGATION.sub(lambda m: "#" * len(m.group()), text)
    for m in _ABNORMAL.finditer(masked):
        if not _inside(m.start(), spans) and not _normal_phrase_at(masked, m):
            return "abnormal"
    if spans or _NORMAL.search(text):
        return "normal"
    return "abnormal"


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
        items = [(organ, s) for header, s in _sections(report) for organ in assign_organs(s, header)]
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


# --------------------------------------------------------------------------- LLM option

LLM_PROMPT = (
    "You split CT radiology reports into organ-level statements. Organs must be chosen "
    "from this list of TotalSegmentator structure names: {organs}. For every organ the "
    "report mentions, copy the report's sentences (or sentence fragments) about that organ, "
    "keeping negations such as 'no' or 'without'. Answer with one JSON object only, "
    "mapping organ name to a list of sentences, for example "
    '{{"liver": ["2 cm hypodense lesion in segment 7."], "kidney_left": ["No stones."]}}.'
)


class LLMSentenceSplitter:
    """Report -> {organ: [sentences]} through an OpenAI-compatible ``/v1/chat/completions``.

    ``endpoint_url`` may be the server root ("http://host:8000"), its "/v1" or the full
    chat-completions URL. Only the standard library is used (urllib). Organ keys of the
    answer are matched to catalogue names (groups such as "kidneys" expand); unknown
    keys are dropped. Any transport or format problem raises :class:`ModelError` naming
    the endpoint.
    """

    def __init__(self, endpoint_url: str, model: str, api_key: str | None = None,
                 timeout: float = 60.0, organs: Iterable[str] | None = None):
        url = endpoint_url.rstrip("/")
        if not re.match(r"^https?://", url):
            raise InputError(endpoint_url, "the LLM endpoint must be an http(s) URL")
        if not url.endswith("/chat/completions"):
            url = url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")
        self.url = url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.organs = [o.name for o in catalogue.resolve(list(organs) if organs else None)]

    def _request(self, report: str) -> dict:
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": LLM_PROMPT.format(organs=", ".join(self.organs))},
                {"role": "user", "content": report},
            ],
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", errors="replace")[:200].strip()
            raise ModelError(f"LLM endpoint {self.url}: HTTP {e.code} {e.reason}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ModelError(f"LLM endpoint {self.url}: cannot connect ({reason})") from None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise ModelError(f"LLM endpoint {self.url}: answer is not JSON: {raw[:120]!r}") from None

    def split(self, report: str) -> dict[str, list[str]]:
        """{structure name: [sentences]} for one report."""
        answer = self._request(report)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"LLM endpoint {self.url}: no choices[0].message.content in the answer") from None
        text = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", str(content))
        try:
            table = json.loads(text)
        except json.JSONDecodeError:
            raise ModelError(f"LLM endpoint {self.url}: the model's reply is not a JSON object: "
                             f"{text[:120]!r}") from None
        if not isinstance(table, dict):
            raise ModelError(f"LLM endpoint {self.url}: the model's reply is JSON but not an object")
        result: dict[str, list[str]] = {}
        for key, sentences in table.items():
            if isinstance(sentences, str):
                sentences = [sentences]
            if not isinstance(sentences, list):
                continue
            try:
                names = [o.name for o in catalogue.resolve([str(key)])]
            except InputError:
                names = assign_organs(str(key).replace("_", " "))
            for name in names:
                if name in self.organs:
                    result.setdefault(name, []).extend(str(s).strip() for s in sentences if str(s).strip())
        return result
