"""The case library in Slicer: hits of ``totalfm find`` as a table node, and opening a hit's
study with its organ highlighted.

``hits_table`` fills a table node, one row per (study, organ) hit, with the paths needed to
open it; ``open_hit`` loads that study's CT and segmentation (through TotalFMLib's door, so
DICOM study folders and every segmentation form work as in the CLI), shows the organ in the
search colour with the others dimmed (``colouring.highlight_organs``) and returns the nodes. The
panel's widgets live in the module's ``.ui`` (``Case library``); ``LibraryPanel`` wires them
to the Logic so that the module file stays small.
"""
from __future__ import annotations

import vtk
from slicer.i18n import tr as _

from TotalFMLib.errors import InputError

HIT_COLUMNS = ("rank", "organ", "score", "study", "path", "seg_path")
TITLES = {"rank": "#", "organ": "Organ", "score": "Score", "study": "Study", "path": "CT", "seg_path": "Segmentation"}


def hits_table(scene, hits, table_node=None):
    """A table node of library hits (``TotalFMLib.library.query.LibraryHit``), best first."""
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", "TotalFM library hits")
    table = vtk.vtkTable()
    columns = {}
    for name in HIT_COLUMNS:
        columns[name] = vtk.vtkDoubleArray() if name == "score" else (
            vtk.vtkIntArray() if name == "rank" else vtk.vtkStringArray())
        columns[name].SetName(name)
        table.AddColumn(columns[name])
    for h in hits:
        for name in HIT_COLUMNS:
            value = getattr(h, name)
            columns[name].InsertNextValue(value if name in ("rank", "score") else str(value or ""))
    table_node.SetAndObserveTable(table)
    for name, title in TITLES.items():
        table_node.SetColumnTitle(name, title)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetLocked(True)
    table_node.Modified()
    return table_node


def hit_at(table_node, row: int) -> dict:
    """The hit in ``row`` of a hits table as {column: text}."""
    table = table_node.GetTable() if table_node is not None else None
    if table is None or not 0 <= row < table.GetNumberOfRows():
        raise InputError(None, "select a hit in the library table first")
    return {name: table.GetValueByName(row, name).ToString() for name in HIT_COLUMNS}


def open_hit(scene, hit: dict):
    """(CT node, segmentation node) of a hit's study, its organ highlighted."""
    from TotalFMLib.inputs.case import load_case

    from . import colouring, geometry, segments

    if not hit["seg_path"]:
        raise InputError(hit["path"], "was segmented by TotalSegmentator while indexing; its segmentation was not "
                                      "kept, so open the CT and press Apply")
    case = load_case(hit["path"], hit["seg_path"])
    name = hit["study"].replace("/", " ")
    ct_node = geometry.volume_node_from_volume(scene, case.ct, name)
    segmentation = segments.segmentation_from_labelmap(scene, case.seg, ct_node, f"{name} organs")
    colouring.highlight_organs(segmentation, [hit["organ"]])
    return ct_node, segmentation


class LibraryPanel:
    """The ``Case library`` section of the module's panel: library folder, query, hits, Open."""

    def __init__(self, ui, logic, log):
        self.ui, self.logic, self.log = ui, logic, log
        self.hits = None
        ui.libraryFindButton.connect("clicked(bool)", self.onFind)
        ui.libraryQueryLineEdit.connect("returnPressed()", self.onFind)
        ui.libraryOpenButton.connect("clicked(bool)", self.onOpen)

    def onFind(self) -> None:
        import slicer

        with slicer.util.tryWithErrorDisplay(_("Library search failed."), waitCursor=True):
            self.hits = self.logic.libraryFind(self.ui.libraryPathLineEdit.currentPath,
                                               self.ui.libraryQueryLineEdit.text, tableNode=self.hits)
            self.ui.libraryTableView.setMRMLTableNode(self.hits)
            self.log(_("library: {n} hits for '{q}'").format(n=self.hits.GetNumberOfRows(),
                                                            q=self.ui.libraryQueryLineEdit.text))

    def onOpen(self) -> None:
        import slicer

        with slicer.util.tryWithErrorDisplay(_("Cannot open the study."), waitCursor=True):
            index = self.ui.libraryTableView.currentIndex()
            row = index.row() if index.isValid() else -1
            ct, segmentation = self.logic.openLibraryHit(self.hits, row)
            self.log(_("opened {name}").format(name=ct.GetName()))
