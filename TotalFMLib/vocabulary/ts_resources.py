"""TotalSegmentator's own tables: its class maps (label id -> structure name, per task: the v2
``total`` map and the v1 ``total_v1`` map among them), its ``map_to_total`` (structures of
other tasks and versions -> the ``total`` structure that contains them, e.g. the v1 heart
chambers -> heart) and its SNOMED table (codes and colours per structure). Nothing here
retypes them.

They are read from the installed ``totalsegmentator`` package when there is one (Slicer's
TotalSegmentator extension, or ``pip install -e ".[segment]"``), else out of the pinned
TotalSegmentator source distribution on the package index (``package_files``: the same
download that brings the example CTs), where ``map_to_binary.py`` is parsed, never run. So
the library needs neither the package nor its many requirements, and an offline machine
needs either of the two once.
"""
from __future__ import annotations

import ast
import csv
import functools
import io
from pathlib import Path

from ..errors import InputError

SDIST_FOLDER = "totalsegmentator-2.18.0/totalsegmentator/"
MAP_FILE = "map_to_binary.py"
TO_TOTAL_FILE = "map_to_total.py"
SNOMED_FILE = "resources/totalsegmentator_snomed_mapping.csv"


def _installed_folder() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("totalsegmentator")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _read(relative: str) -> tuple[str, str]:
    """(text of a file of the TotalSegmentator package, where it came from)."""
    folder = _installed_folder()
    if folder is not None and (folder / relative).is_file():
        return (folder / relative).read_text(encoding="utf-8"), str(folder / relative)
    from ..package_files import PackageIndexUnavailable, member

    try:
        path = member("totalsegmentator", SDIST_FOLDER + relative)
    except PackageIndexUnavailable as e:
        raise InputError(None, f"TotalSegmentator's class map and SNOMED table are the organ catalogue, and "
                               f"neither the totalsegmentator package nor the package index is available ({e}); "
                               f"install the package once: pip install --no-deps totalsegmentator==2.18.0") from None
    return path.read_text(encoding="utf-8"), str(path)


def _literal_assignment(source: str, name: str, where: str):
    """The value of the module-level ``name = <literal>`` of a Python source, without running it."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise InputError(where, f"holds no {name} = {{...}} table")


@functools.lru_cache(maxsize=1)
def class_maps() -> dict[str, dict[int, str]]:
    """{task: {label id: structure name}} as TotalSegmentator's ``map_to_binary.class_map``
    writes it (``total``, ``total_v1``, ...)."""
    source, where = _read(MAP_FILE)
    table = _literal_assignment(source, "class_map", where)
    return {task: {int(k): str(v) for k, v in mapping.items()} for task, mapping in table.items()}


def class_map(task: str = "total") -> dict[int, str]:
    """{label id: structure name} of one TotalSegmentator task."""
    maps = class_maps()
    if task not in maps:
        raise InputError(None, f"TotalSegmentator has no task {task!r}; known: {', '.join(sorted(maps))}")
    return dict(maps[task])


@functools.lru_cache(maxsize=1)
def map_to_total() -> dict[str, str]:
    """{structure name of another task or version: the ``total`` structure it belongs to}."""
    source, where = _read(TO_TOTAL_FILE)
    return {str(k): str(v) for k, v in _literal_assignment(source, "map_to_total", where).items()}


@functools.lru_cache(maxsize=1)
def snomed_rows() -> dict[str, dict[str, str]]:
    """{structure name: row} of TotalSegmentator's SNOMED table (``Structure`` column)."""
    text, _ = _read(SNOMED_FILE)
    return {row["Structure"]: row for row in csv.DictReader(io.StringIO(text))}
