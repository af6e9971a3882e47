"""The scores table: one row per organ, one numeric column per finding ("any lesion" first),
the flagged findings, and the reviewer's mark (agree / disagree / unsure); and the CSV export
with those marks."""
from __future__ import annotations

import vtk

from TotalFMLib.errors import InputError
from TotalFMLib.outputs.export import write_csv
from TotalFMLib.results import ScoreRow
from TotalFMLib.vocabulary import catalogue

from .score_store import row_findings

ATTR_FINDINGS = "TotalFM.findings"    # table node attribute: finding columns, "|"-separated
ATTR_CASE = "TotalFM.caseId"          # table node attribute: the case its rows belong to

REVIEW_MARKS = ("agree", "disagree", "unsure")
TABLE_FLAGGED = "flagged"
TABLE_REVIEW = "review"


def _column_values(table_node, name: str) -> list[str]:
    table = table_node.GetTable()
    column = table.GetColumnByName(name)
    if column is None:
        return []
    return [column.GetValue(i).ToString() if hasattr(column.GetValue(i), "ToString") else str(column.GetValue(i))
            for i in range(column.GetNumberOfTuples())]


def table_organs(table_node) -> list[str]:
    """Structure names of the table rows, top to bottom."""
    return _column_values(table_node, "organ")


def review_marks(table_node) -> dict[str, str]:
    """{structure name: mark} for the organs the reviewer marked."""
    organs = table_organs(table_node)
    marks = _column_values(table_node, TABLE_REVIEW)
    return {o: m for o, m in zip(organs, marks) if m}


def table_order(rows: list[ScoreRow], order: list[str] | None = None) -> list[str]:
    """The table's organs, top to bottom: ``order`` (e.g. a search ranking) first, then by
    falling score of the first finding."""
    findings = row_findings(rows)
    first = findings[0] if findings else None
    scores = {r.organ: r.score for r in rows if r.finding == first}
    organs = sorted({r.organ for r in rows}, key=lambda o: (-scores.get(o, -1.0), catalogue.organ(o).label_id))
    front = [o for o in (order or []) if o in organs]
    return front + [o for o in organs if o not in front]


def scores_table(scene, rows: list[ScoreRow], table_node=None, review: dict[str, str] | None = None,
                 order: list[str] | None = None):
    """Fill (or create) a table node: one row per organ with one numeric column per finding
    ("any lesion" first), the flagged findings, and the reviewer's mark.

    Rows are ordered by ``order`` (e.g. a search ranking) first, then by falling score of
    the first finding. Marks already in ``table_node`` are kept when it holds the same case
    (``case_id``); ``review`` overrides them.
    """
    case_id = rows[0].case_id if rows else ""
    same_case = table_node is not None and table_node.GetAttribute(ATTR_CASE) == case_id
    marks = review_marks(table_node) if same_case else {}
    for organ, mark in (review or {}).items():
        marks[catalogue.organ(organ).name] = _check_mark(mark)
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", "TotalFM scores")
    findings = row_findings(rows)
    by_organ: dict[str, dict[str, ScoreRow]] = {}
    for row in rows:
        by_organ.setdefault(row.organ, {})[row.finding] = row
    organs = table_order(rows, order)

    table = vtk.vtkTable()
    text_columns = {name: vtk.vtkStringArray() for name in ("organ", "segment")}
    label_ids = vtk.vtkIntArray()
    score_columns = {f: vtk.vtkDoubleArray() for f in findings}
    flagged, reviewed = vtk.vtkStringArray(), vtk.vtkStringArray()
    for name, array in (*text_columns.items(), ("label_id", label_ids), *score_columns.items(),
                        (TABLE_FLAGGED, flagged), (TABLE_REVIEW, reviewed)):
        array.SetName(name)
        table.AddColumn(array)
    for organ in organs:
        o = catalogue.organ(organ)
        text_columns["organ"].InsertNextValue(o.name)
        text_columns["segment"].InsertNextValue(o.display_name)
        label_ids.InsertNextValue(o.label_id)
        for f in findings:
            row = by_organ[organ].get(f)
            score_columns[f].InsertNextValue(row.score if row is not None else float("nan"))
        flagged.InsertNextValue("; ".join(f for f, r in by_organ[organ].items() if r.flagged))
        reviewed.InsertNextValue(marks.get(organ, ""))
    table_node.SetAndObserveTable(table)
    titles = {"organ": "Structure", "segment": "Organ", "label_id": "Label",
              TABLE_FLAGGED: "Flagged", TABLE_REVIEW: "Review"}
    for name, title in titles.items():
        table_node.SetColumnTitle(name, title)
    for f in findings:
        table_node.SetColumnTitle(f, f"Score: {f}")
        table_node.SetColumnDescription(f, f"TotalFM score for '{f}' (0-1)")
    table_node.SetColumnDescription(TABLE_REVIEW, "Reviewer mark: " + " / ".join(REVIEW_MARKS))
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetAttribute(ATTR_FINDINGS, "|".join(findings))
    table_node.SetAttribute(ATTR_CASE, case_id)
    table_node.SetLocked(True)
    table_node.Modified()
    return table_node


def _check_mark(mark: str) -> str:
    mark = (mark or "").strip().lower()
    if mark and mark not in REVIEW_MARKS:
        raise InputError(None, f"review mark {mark!r} is not one of {', '.join(REVIEW_MARKS)}")
    return mark


def set_review(table_node, organ: str, mark: str) -> None:
    """Set an organ's reviewer mark (agree / disagree / unsure; "" clears it)."""
    mark = _check_mark(mark)
    name = catalogue.organ(organ).name
    organs = table_organs(table_node)
    if name not in organs:
        raise InputError(table_node.GetName(), f"organ {name!r} is not in the scores table")
    column = table_node.GetTable().GetColumnByName(TABLE_REVIEW)
    column.SetValue(organs.index(name), mark)
    column.Modified()
    table_node.Modified()


def export_csv(rows: list[ScoreRow], path, table_node=None):
    """Write the core CSV columns plus the reviewer's marks (column ``review``) atomically."""
    marks = review_marks(table_node) if table_node is not None else {}
    return write_csv(rows, path, extra_columns={TABLE_REVIEW: [marks.get(r.organ, "") for r in rows]})
