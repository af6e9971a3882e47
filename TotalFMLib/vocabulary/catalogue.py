"""Organ catalogue: the TotalSegmentator v2 ``total`` classes with names, SNOMED codes, colours and groups.

Label ids and structure names are TotalSegmentator's own (``map_to_binary.class_map["total"]``),
codes and colours come from its ``resources/totalsegmentator_snomed_mapping.csv``; both are
read by ``ts_resources`` (from the installed package, else from its pinned distribution on the
package index), and nothing here retypes them.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import InputError
from . import ts_resources

# Organs scored when the caller names none: parenchymal organs, hollow viscera, lungs,
# heart and the large vessels. Bones (ribs, vertebrae) and muscles are left out unless
# asked for (they can be named one by one or by group, e.g. "vertebrae").
DEFAULT_ORGANS: tuple[str, ...] = (
    "liver", "spleen", "pancreas", "gallbladder", "stomach",
    "kidney_left", "kidney_right", "adrenal_gland_left", "adrenal_gland_right",
    "esophagus", "duodenum", "small_bowel", "colon", "urinary_bladder", "prostate",
    "lung_upper_lobe_left", "lung_lower_lobe_left",
    "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right",
    "trachea", "thyroid_gland", "heart", "aorta", "inferior_vena_cava",
    "superior_vena_cava", "portal_vein_and_splenic_vein", "pulmonary_vein", "brain",
)


def _group_rules() -> dict[str, str]:
    """Group name -> regular expression over structure names."""
    return {
        "lungs": r"lung_(upper|middle|lower)_lobe_(left|right)",
        "lung_left": r"lung_(upper|lower)_lobe_left",
        "lung_right": r"lung_(upper|middle|lower)_lobe_right",
        "kidneys": r"kidney_(left|right)",
        "kidney_cysts": r"kidney_cyst_(left|right)",
        "adrenal_glands": r"adrenal_gland_(left|right)",
        "bowel": r"small_bowel|duodenum|colon",
        "vertebrae": r"vertebrae_[CTLS]\d+",
        "cervical_spine": r"vertebrae_C\d",
        "thoracic_spine": r"vertebrae_T\d+",
        "lumbar_spine": r"vertebrae_L\d",
        "ribs": r"rib_(left|right)_\d+",
        "great_vessels": r"aorta|inferior_vena_cava|superior_vena_cava|pulmonary_vein"
                         r"|portal_vein_and_splenic_vein|brachiocephalic_.*",
        "iliac_vessels": r"iliac_(artery|vena)_(left|right)",
        "hips": r"hip_(left|right)",
        "femurs": r"femur_(left|right)",
        "gluteal_muscles": r"gluteus_(maximus|medius|minimus)_(left|right)",
        "default": "|".join(DEFAULT_ORGANS),
    }


# How other tools name a group of structures as one segment (Slicer's sample segmentation has
# "right lung", "left lung", "ribs", "thoracic vertebral column"); group names themselves, and
# their words in either order ("lung right"), are recognised too.
GROUP_SEGMENT_NAMES: dict[str, tuple[str, ...]] = {
    "lungs": ("lung", "both lungs"),
    "kidneys": ("both kidneys",),
    "vertebrae": ("spine", "vertebral column", "spinal column"),
    "cervical_spine": ("cervical vertebral column", "cervical vertebrae"),
    "thoracic_spine": ("thoracic vertebral column", "thoracic vertebrae"),
    "lumbar_spine": ("lumbar vertebral column", "lumbar vertebrae"),
    "adrenal_glands": ("both adrenal glands",),
}


class Code(NamedTuple):
    """One coded concept: coding scheme ("SCT"), code value, code meaning; all "" if absent."""
    scheme: str = ""
    value: str = ""
    meaning: str = ""


# Organ field -> column prefix in TotalSegmentator's SNOMED table (DICOM attribute names)
SNOMED_COLUMNS = {
    "snomed_category": "SegmentedPropertyCategoryCodeSequence",
    "snomed_type": "SegmentedPropertyTypeCodeSequence",
    "snomed_type_modifier": "SegmentedPropertyTypeModifierCodeSequence",
    "snomed_region": "AnatomicRegionSequence",
    "snomed_region_modifier": "AnatomicRegionModifierSequence",
}


@dataclass(frozen=True)
class Organ:
    name: str                # TotalSegmentator structure name, e.g. "kidney_left"
    label_id: int            # id in the v2 ``total`` label map
    display_name: str        # "Left kidney"
    color: tuple[int, int, int]
    groups: tuple[str, ...] = field(default=())
    # the whole terminology row (terminology.py builds Slicer's TerminologyEntry from it)
    snomed_category: Code = Code()         # ("SCT", "123037004", "Anatomical Structure")
    snomed_type: Code = Code()             # ("SCT", "64033007", "Kidney")
    snomed_type_modifier: Code = Code()    # ("SCT", "7771000", "Left")
    snomed_region: Code = Code()           # anatomic region, e.g. "Kidney" for a kidney cyst
    snomed_region_modifier: Code = Code()  # laterality of the region

    @property
    def snomed_code(self) -> str:
        """SegmentedPropertyType code value (SCT), "" if unknown."""
        return self.snomed_type.value

    @property
    def snomed_meaning(self) -> str:
        """"Kidney"."""
        return self.snomed_type.meaning

    @property
    def snomed_modifier(self) -> str:
        """"Left", "Right" or ""."""
        return self.snomed_type_modifier.meaning

    @property
    def color_float(self) -> tuple[float, float, float]:
        return tuple(c / 255.0 for c in self.color)


def _display_name(name: str, type_: Code, modifier: Code, region: Code, region_modifier: Code) -> str:
    """"Left kidney", "Liver", "Right kidney cyst" (a finding's region names it), "L5 vertebra".

    Laterality comes from the type modifier, else the region modifier, else a structure name
    ending in _left/_right whose meaning does not already say the side."""
    meaning = type_.meaning
    if region.meaning and meaning:
        meaning = f"{region.meaning} {meaning[:1].lower() + meaning[1:]}"
    if not meaning:
        words = name.replace("_", " ")
        return words[:1].upper() + words[1:]
    side = modifier.meaning or region_modifier.meaning
    suffix = re.search(r"_(left|right)$", name)
    if not side and suffix and suffix.group(1) not in meaning.lower():
        side = suffix.group(1).capitalize()
    text = f"{side} {meaning[:1].lower() + meaning[1:]}" if side else meaning
    # keep vertebra codes such as "L5" upper case
    return text[:1].upper() + text[1:]


@functools.lru_cache(maxsize=1)
def organs() -> tuple[Organ, ...]:
    """All 117 ``total`` classes, ordered by label id."""
    rows = ts_resources.snomed_rows()
    rules = {g: re.compile(rf"(?:{rx})") for g, rx in _group_rules().items()}
    result = []
    for label_id, name in sorted(ts_resources.class_map("total").items()):
        row = rows.get(name, {})
        rgb = row.get("DicomRGBColor", "")
        color = tuple(int(c) for c in rgb.split(",")) if rgb else (128, 128, 128)
        codes = {attr: Code(*(row.get(f"{prefix}.{part}", "").strip()
                              for part in ("CodingSchemeDesignator", "CodeValue", "CodeMeaning")))
                 for attr, prefix in SNOMED_COLUMNS.items()}
        result.append(Organ(
            name=name,
            label_id=int(label_id),
            display_name=_display_name(name, codes["snomed_type"], codes["snomed_type_modifier"],
                                       codes["snomed_region"], codes["snomed_region_modifier"]),
            color=color,  # type: ignore[arg-type]
            groups=tuple(g for g, rx in rules.items() if rx.fullmatch(name)),
            **codes,
        ))
    return tuple(result)


@functools.lru_cache(maxsize=1)
def _by_name() -> dict[str, Organ]:
    return {o.name: o for o in organs()}


@functools.lru_cache(maxsize=1)
def _by_id() -> dict[int, Organ]:
    return {o.label_id: o for o in organs()}


def is_structure(name: str) -> bool:
    """Whether ``name`` is a structure name of the catalogue (exact, as in ``Organ.name``)."""
    return name in _by_name()


def groups() -> dict[str, tuple[str, ...]]:
    """Group name -> member structure names, in label order."""
    return {g: tuple(o.name for o in organs() if g in o.groups) for g in _group_rules()}


def organ(name_or_id: str | int | Organ) -> Organ:
    """Look an organ up by structure name, label id, or a segment/display name (an Organ is returned as is)."""
    if isinstance(name_or_id, Organ):
        return name_or_id
    if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdigit()):
        found = _by_id().get(int(name_or_id))
    else:
        found = match_segment_name(str(name_or_id))
    if found is None:
        raise InputError(None, f"unknown organ {name_or_id!r}; `totalfm organs` lists the known names")
    return found


def normalise_name(text: str) -> str:
    """Lower case, words joined by single underscores: "Kidney Left" -> "kidney_left"."""
    return re.sub(r"[^0-9a-z]+", "_", text.strip().lower()).strip("_")


@functools.lru_cache(maxsize=1)
def _aliases() -> dict[str, Organ]:
    """Normalised name -> organ: structure and display names (unique), and the table's
    meaning with its modifier either side where that names one organ only ("cyst" does not)."""
    loose: dict[str, set[Organ]] = {}
    for o in organs():
        for key in (f"{o.snomed_meaning} {o.snomed_modifier}", f"{o.snomed_modifier} {o.snomed_meaning}"):
            loose.setdefault(normalise_name(key), set()).add(o)
    table = {key: next(iter(found)) for key, found in loose.items() if key and len(found) == 1}
    for o in organs():
        table.update({normalise_name(o.name): o, normalise_name(o.display_name): o})
    return table


def match_segment_name(text: str) -> Organ | None:
    """Match a segment name as other tools write it ("Kidney left", "kidney_left",
    "Left kidney", "liver") to a catalogue organ; None when it is no known organ."""
    return _aliases().get(normalise_name(text))


def resolve(names: str | list[str] | tuple[str, ...] | None) -> list[Organ]:
    """Turn a user's organ selection into organs, in label order, without repeats.

    ``None`` or "default" gives ``DEFAULT_ORGANS``; "all" gives all 117 classes; group
    names ("lungs", "kidneys", "vertebrae", ...) expand to their members; a string is
    split on commas.
    """
    if names is None:
        names = ["default"]
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    chosen: dict[str, Organ] = {}
    group_table = groups()
    for raw in names:
        key = normalise_name(raw)
        if key == "all":
            members = [o.name for o in organs()]
        elif key in group_table:
            members = list(group_table[key])
        else:
            members = [organ(raw).name]
        for m in members:
            chosen[m] = _by_name()[m]
    return sorted(chosen.values(), key=lambda o: o.label_id)


@functools.lru_cache(maxsize=1)
def _group_aliases() -> dict[str, str]:
    table = {}
    for group in groups():
        if group == "default":
            continue
        words = group.split("_")
        table[group] = table["_".join(reversed(words))] = group
        for name in GROUP_SEGMENT_NAMES.get(group, ()):
            table[normalise_name(name)] = group
    return table


def segment_group(text: str) -> str | None:
    """The group a segment name stands for ("right lung" -> "lung_right"), None when it names
    no group (or names a single structure)."""
    if match_segment_name(text) is not None:
        return None
    return _group_aliases().get(normalise_name(text))


def group_segment_hint(names) -> str:
    """For segment names that name groups, one clause saying what to do; "" when none does."""
    found = {n: g for n in names if (g := segment_group(str(n)))}
    if not found:
        return ""
    named = ", ".join(f"{n!r} (group {g}: {', '.join(groups()[g][:3])}{', ...' if len(groups()[g]) > 3 else ''})"
                      for n, g in found.items())
    return (f"segments {named} each cover a group of structures, and TotalFM crops every structure on its own: "
            f"rename each such segment to one structure (e.g. 'lung_upper_lobe_right'), split it, or segment "
            f"the CT with TotalSegmentator")
