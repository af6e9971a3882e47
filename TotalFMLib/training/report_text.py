"""Report text -> sentences: :func:`split_sentences` cuts a radiology report into sentences,
and ``sections`` keeps each one's section header (such as "LIVER:"), so that the organ a
header names carries over to the sentences under it (``report_organs.assign_organs``)."""
from __future__ import annotations

import re

from ..errors import InputError

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


def sections(text: str) -> list[tuple[str, str]]:
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
    return [s for _, s in sections(text)]
