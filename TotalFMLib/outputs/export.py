"""CSV and JSON export of score rows, written whole or not at all.

One row per organ and finding, columns in this fixed order (``results.SCORE_COLUMNS``;
extra columns, such as a reviewer's marks, are appended after them):

  case_id         case identifier given by the caller (file name stem by default)
  organ           TotalSegmentator structure name, e.g. kidney_left
  label_id        the organ's id in the TotalSegmentator v2 ``total`` label map
  snomed_code     SNOMED CT code of the organ (TotalSegmentator's table), may be empty
  finding         "any lesion" or a finding catalogue name (``totalfm findings``)
  score           probability-like score in [0, 1] (abnormal vs normal prompts)
  similarity      mean abnormal minus mean normal prompt cosine similarity
  threshold       score >= threshold flags the row (model calibration, else 0.5)
  flagged         true / false
  model_id        model identifier, e.g. totalfm-official
  model_checksum  SHA-256 of the checkpoint file
  created_at      ISO 8601 time in UTC, the same for all rows of one analysis

CSV: UTF-8, comma-separated, header line, floats with 6 significant digits, booleans as
``true``/``false``. JSON: ``{"columns": [...], "meta": {...}, "rows": [{column: value}]}``
with numbers and booleans as JSON values. Files are written to a temporary file in the
target's folder and renamed over the target only when complete.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..results import SCORE_COLUMNS, ScoreRow

_FLOATS = ("score", "similarity", "threshold")


def _as_dict(row, path, number: int) -> dict:
    if isinstance(row, ScoreRow):
        return row.as_dict()
    if isinstance(row, Mapping):
        missing = [c for c in SCORE_COLUMNS if c not in row]
        if not missing:
            return dict(row)
        raise InputError(path, f"row {number} lacks the column(s) {', '.join(missing)}")
    raise InputError(path, f"row {number} is a {type(row).__name__}, not a score row")


def _typed(row: dict, path, number: int) -> dict:
    """The row's fixed columns as JSON/CSV-ready Python values; InputError on a bad value."""
    out = {}
    for column in SCORE_COLUMNS:
        value = row[column]
        try:
            if column in _FLOATS:
                if isinstance(value, (bool, str)):
                    raise TypeError
                out[column] = float(value)
            elif column == "label_id":
                if isinstance(value, bool) or int(value) != value:
                    raise TypeError
                out[column] = int(value)
            elif column == "flagged":
                if not isinstance(value, (bool, np.bool_)):
                    raise TypeError
                out[column] = bool(value)
            else:
                out[column] = "" if value is None else str(value)
        except (TypeError, ValueError):
            raise InputError(path, f"row {number}: {column} = {value!r} cannot be written") from None
    return out


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".6g")
    return "" if value is None else str(value)


def _extra(extra_columns: Mapping[str, list] | None, n_rows: int, path) -> dict[str, list]:
    extra = dict(extra_columns or {})
    for name, values in extra.items():
        if not str(name).strip() or name in SCORE_COLUMNS:
            raise InputError(path, f"extra column name {name!r} is empty or a fixed column")
        if len(values) != n_rows:
            raise InputError(path, f"extra column {name!r} has {len(values)} values for {n_rows} rows")
    return extra


def write_csv(rows: Iterable, path: str | os.PathLike,
              extra_columns: Mapping[str, list] | None = None) -> Path:
    """Write ``rows`` (ScoreRow or mappings with the fixed columns) as CSV; returns the path."""
    path = Path(path)
    rows = list(rows)
    extra = _extra(extra_columns, len(rows), path)
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*SCORE_COLUMNS, *extra])
            for i, row in enumerate(rows):
                values = _typed(_as_dict(row, path, i + 1), path, i + 1)
                writer.writerow([_cell(values[c]) for c in SCORE_COLUMNS]
                                + [_cell(v[i]) for v in extra.values()])
    return path


def write_json(rows: Iterable, path: str | os.PathLike, meta: Mapping | None = None,
               extra_columns: Mapping[str, list] | None = None) -> Path:
    """Write ``rows`` as JSON (``columns``, ``meta``, ``rows``); returns the path."""
    path = Path(path)
    rows = list(rows)
    extra = _extra(extra_columns, len(rows), path)
    with atomic_path(path, suffix=".json") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write('{"columns": ' + json.dumps([*SCORE_COLUMNS, *extra]))
            try:
                f.write(', "meta": ' + json.dumps(dict(meta or {}), allow_nan=False))
            except (TypeError, ValueError) as e:
                raise InputError(path, f"meta cannot be written as JSON ({e})") from None
            f.write(', "rows": [')
            for i, row in enumerate(rows):
                values = _typed(_as_dict(row, path, i + 1), path, i + 1)
                values = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                          for k, v in values.items()}
                values.update((name, v[i]) for name, v in extra.items())
                try:
                    text = json.dumps(values, allow_nan=False)
                except (TypeError, ValueError):
                    raise InputError(path, f"row {i + 1}: an extra column value cannot be written as JSON") from None
                f.write(("\n  " if i == 0 else ",\n  ") + text)
            f.write("\n]}\n")
    return path


def parse_value(column: str, text: str):
    """The typed value of one score-row column from its text; ValueError when it is not one."""
    if column in _FLOATS:
        return float(text)
    if column == "label_id":
        return int(text)
    if column == "flagged":
        if text.strip().lower() not in ("true", "false"):
            raise ValueError
        return text.strip().lower() == "true"
    return text


def read_csv(path: str | os.PathLike) -> list[ScoreRow]:
    """Read a score CSV back (extra columns are ignored)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in SCORE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(path, f"not a TotalFM score CSV: missing column(s) {', '.join(missing)}")
            names = [fl.name for fl in fields(ScoreRow)]
            rows = []
            for record in reader:
                try:
                    rows.append(ScoreRow(**{c: parse_value(c, record[c] or "") for c in names}))
                except (TypeError, ValueError):
                    raise InputError(path, f"line {reader.line_num}: bad value in a score row") from None
            return rows
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text") from None
