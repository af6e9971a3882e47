"""SNOMED terminology of the catalogue organs in 3D Slicer's notation, and the way back.

Slicer keeps a segment's terminology in one string (segment tag ``TerminologyEntry``;
in a ``.seg.nrrd`` inside ``Segment<i>_Tags`` as ``TerminologyEntry:<string>|``)::

    <type context>~<category>~<type>~<type modifier>~<region context>~<region>~<region modifier>

with every code written ``scheme^value^meaning`` (``^^`` when absent). The codes are the
ones of TotalSegmentator's SNOMED table, carried by ``catalogue.Organ``.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import catalogue
from .catalogue import Code, Organ

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
TAG = "TerminologyEntry"

# Old DICOM files and Slicer tables name SNOMED "SRT"; both designators mean the same codes.
_SAME_SCHEME = {"SRT": "SCT", "SNM3": "SCT"}
CODE_FIELDS = ("category", "type", "type_modifier", "region", "region_modifier")


@dataclass(frozen=True)
class Terminology:
    """The five codes of a terminology entry plus its two context names."""
    category: Code = Code()
    type: Code = Code()
    type_modifier: Code = Code()
    region: Code = Code()
    region_modifier: Code = Code()
    type_context: str = TERMINOLOGY_CONTEXT
    region_context: str = ANATOMIC_CONTEXT

    def codes(self) -> dict[str, Code]:
        """{field: code} for the five code fields, absent ones included."""
        return {f: getattr(self, f) for f in CODE_FIELDS}



def organ_terminology(organ: str | int | Organ) -> Terminology:
    """The organ's codes from TotalSegmentator's SNOMED table."""
    o = catalogue.organ(organ)
    return Terminology(o.snomed_category, o.snomed_type, o.snomed_type_modifier,
                       o.snomed_region, o.snomed_region_modifier)


def format_entry(term: Terminology) -> str:
    """Slicer's string for a terminology (see the module docstring)."""
    codes = ["^".join(c) for c in (term.category, term.type, term.type_modifier)]
    regions = ["^".join(c) for c in (term.region, term.region_modifier)]
    return "~".join((term.type_context, *codes, term.region_context, *regions))


def terminology_entry(organ: str | int | Organ) -> str:
    """Slicer's ``TerminologyEntry`` string for an organ, e.g. ``"<context>~SCT^123037004^Anatomical
    Structure~SCT^64033007^Kidney~SCT^7771000^Left~<anatomic context>~^^~^^"``."""
    return format_entry(organ_terminology(organ))


def _code(text: str) -> Code:
    parts = [p.strip() for p in text.split("^", 2)]
    return Code(*(parts + ["", ""])[:3])


def parse_entry(text: str) -> Terminology | None:
    """A terminology from Slicer's string, or from a ``.seg.nrrd`` tags value that holds
    ``TerminologyEntry:<string>``; None when the text holds no terminology."""
    text = (text or "").strip()
    tagged = re.search(rf"(?:^|\|){TAG}:([^|]*)", text)
    if tagged:
        text = tagged.group(1).strip()
    parts = text.split("~")
    if len(parts) < 4:
        return None
    parts += [""] * (7 - len(parts))
    return Terminology(_code(parts[1]), _code(parts[2]), _code(parts[3]), _code(parts[5]), _code(parts[6]),
                       type_context=parts[0].strip(), region_context=parts[4].strip())


def _as_code(value) -> Code:
    if isinstance(value, str):
        return Code(value=value.strip())
    return Code(*(str(v).strip() for v in value))


def _query(entry_or_codes) -> dict[str, Code]:
    """The given (non-empty) codes of an entry string, a Terminology or a mapping."""
    if isinstance(entry_or_codes, str):
        term = parse_entry(entry_or_codes)
        codes = term.codes() if term else {}
    elif isinstance(entry_or_codes, Terminology):
        codes = entry_or_codes.codes()
    elif isinstance(entry_or_codes, Mapping):
        unknown = set(entry_or_codes) - set(CODE_FIELDS)
        if unknown:
            raise ValueError(f"unknown terminology fields {sorted(unknown)}; expected {', '.join(CODE_FIELDS)}")
        codes = {f: _as_code(v) for f, v in entry_or_codes.items() if v is not None}
    else:
        raise TypeError(f"expected a terminology string, Terminology or mapping, got {type(entry_or_codes).__name__}")
    return {f: c for f, c in codes.items() if c.value}


def _same(given: Code, known: Code) -> bool:
    if given.value != known.value:
        return False
    a, b = (_SAME_SCHEME.get(c.scheme.upper(), c.scheme.upper()) for c in (given, known))
    return not a or not b or a == b


@functools.lru_cache(maxsize=1)
def _table() -> tuple[tuple[Organ, dict[str, Code]], ...]:
    return tuple((o, organ_terminology(o).codes()) for o in catalogue.organs() if o.snomed_code)


def organ_from_terminology(entry_or_codes) -> Organ | None:
    """The one catalogue organ whose codes agree with every code given, else None.

    ``entry_or_codes``: Slicer's terminology string (or a ``.seg.nrrd`` tags value), a
    ``Terminology``, or a mapping {field: code} over ``CODE_FIELDS`` whose values are code
    values ("64033007") or (scheme, value, meaning). A type code is needed; empty codes
    are not compared, so "Kidney" without a modifier matches both kidneys and gives None.
    """
    given = _query(entry_or_codes)
    if "type" not in given:
        return None
    found = [o for o, known in _table() if all(_same(c, known[f]) for f, c in given.items())]
    return found[0] if len(found) == 1 else None
