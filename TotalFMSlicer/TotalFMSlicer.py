"""TotalFM in 3D Slicer: the Module, a Widget that only wires the .ui to the Logic, and the
self-test. The Logic, the parameter node, the dependency install and the MRML layer live in
``TotalFMSlicerLib`` (tested in pytest on slicer-core); heavy packages are imported in functions.
"""
import logging
import os

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from TotalFMSlicerLib import module_text
from TotalFMSlicerLib.dependencies import missingRequirements
from TotalFMSlicerLib.library_panel import LibraryPanel
from TotalFMSlicerLib.logic import ANY_LESION, Cancelled, TotalFMSlicerLogic
from TotalFMSlicerLib.parameters import TotalFMSlicerParameterNode  # noqa: F401 (Slicer finds it here)

class TotalFMSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("TotalFM")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["TotalFMSlicer developers"]
        self.parent.helpText = module_text.helpText()
        self.parent.acknowledgementText = module_text.acknowledgementText()
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    from TotalFMSlicerLib.sample_data import registerSampleData as register

    resources = os.path.join(os.path.dirname(__file__), "Resources")
    register(os.path.join(resources, "Icons", "TotalFMSlicer.png"), os.path.join(resources, "SampleData"))


class TotalFMSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None  # the AnalysisRun in progress
        self._segmenting = False  # TotalSegmentator is running (in the foreground)
        self._lastMessage = ""
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self.onPoll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TotalFMSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TotalFMSlicerLogic()
        self.logic.logCallback = self.addLog
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.openCacheButton.connect("clicked(bool)", self.onOpenCache)
        self.ui.clearCacheButton.connect("clicked(bool)", self.onClearCache)
        self.ui.findingComboBox.connect("activated(int)", self.onFindingChosen)
        self.ui.restoreColorsButton.connect("clicked(bool)", self.onRestoreColors)
        self.ui.searchButton.connect("clicked(bool)", self.onSearch)
        self.ui.searchLineEdit.connect("returnPressed()", self.onSearch)
        self.ui.presetComboBox.connect("activated(int)", self.onPresetChosen)
        self.ui.scoresTableView.connect("selectionChanged()", self.onTableSelection)
        self.ui.previousButton.connect("clicked()", lambda: self.stepOrgan(-1))
        self.ui.nextButton.connect("clicked()", lambda: self.stepOrgan(+1))
        self.ui.agreeButton.connect("clicked()", lambda: self.onReview("agree"))
        self.ui.disagreeButton.connect("clicked()", lambda: self.onReview("disagree"))
        self.ui.unsureButton.connect("clicked()", lambda: self.onReview("unsure"))
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicom)
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", self.onCheckpointPathChanged)
        self.libraryPanel = LibraryPanel(self.ui, self.logic, self.addLog)
        self.initializeParameterNode()
        self.updateCacheLabel()
        self.fillPresets()

    def cleanup(self) -> None:
        if self._run is not None:
            self._run.job.cancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self._run.job.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.ui.scoresTableView.setMRMLTableNode(self._parameterNode.scoresTable)
            self.ui.checkpointPathLineEdit.currentPath = self._parameterNode.checkpointPath
            self.updateButtons()

    def onCheckpointPathChanged(self, path: str) -> None:
        if self._parameterNode:  # the path widget has no parameter-node connector
            self._parameterNode.checkpointPath = path

    def updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self._run is not None or self._segmenting
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = running or bool(p and p.inputVolume)
        self.ui.checkpointPathLineEdit.enabled = bool(p and p.modelSource == "checkpoint")
        hasSegmenter = bool(p) and not p.inputSegmentation
        self.ui.fastCheckBox.enabled = hasSegmenter
        hasResults = bool(p and p.resultSegmentation and p.scoresTable) and not running
        for name in ("findingComboBox", "restoreColorsButton", "searchButton", "presetComboBox", "previousButton",
                     "nextButton", "agreeButton", "disagreeButton", "unsureButton", "exportButton", "exportDicomButton"):
            getattr(self.ui, name).enabled = hasResults

    def addLog(self, text: str) -> None:
        logging.info(text)
        self.ui.statusLabel.text = text
        self.ui.logTextEdit.appendPlainText(text)

    # ----------------------------------------------------------------- run
    def onApplyButton(self) -> None:
        if self._run is not None or self._segmenting:
            self._run.job.cancel() if self._run is not None else self.logic.cancelSegmentation()
            self.addLog(_("Cancelling..."))
            return
        p = self._parameterNode
        if p is None or not p.inputVolume:
            return
        with slicer.util.tryWithErrorDisplay(_("TotalFM could not start."), waitCursor=True):
            self.logic.ensureDependencies(self.resourcePath("requirements.txt"), needSegmenter=not p.inputSegmentation)
            source = self.logic.modelSource(p.modelSource, p.checkpointPath)
            if source == "official" and not self.logic.officialModelCached():
                if not slicer.util.confirmOkCancelDisplay(module_text.officialDownloadQuestion(), _("TotalFM weights")):
                    return
            self.fillPresets()
            self.ui.logTextEdit.clear()
            self._segmenting = not p.inputSegmentation  # TotalSegmentator first, in the foreground
            self.updateButtons()
            try:
                self._run = self.logic.startAnalysis(p.inputVolume, p.inputSegmentation, source,
                                                     fast=p.fastSegmentation, cpu=p.forceCpu)
            except Cancelled:
                return self.addLog(_("Cancelled: the scene is as it was."))
            finally:
                self._segmenting = False
                self.updateButtons()
            self._lastMessage = ""
            self.ui.progressBar.value = 0
            self._timer.start()
            self.updateButtons()

    def onPoll(self) -> None:
        run = self._run
        if run is None:
            self._timer.stop()
            return
        job = run.job
        for fraction, message in job.poll():
            self.ui.progressBar.value = int(round(100 * fraction))
            if message and message != self._lastMessage:
                self._lastMessage = message
                self.addLog(message)
        if not job.done:
            return
        self._timer.stop()
        self._run = None
        if self._parameterNode is None:  # the scene was closed meanwhile (the job was cancelled)
            return
        try:
            self.showRun(run)
        finally:  # tryWithErrorDisplay re-raises after showing the error: the buttons must still reset
            self.updateButtons()

    def showRun(self, run) -> None:
        with slicer.util.tryWithErrorDisplay(_("TotalFM failed."), waitCursor=True):
            result = self.logic.finishAnalysis(run, self._parameterNode.scoresTable)
            if result is None:
                self.addLog(_("Cancelled: the scene is as it was."))
            else:
                segmentationNode, tableNode, legend = result
                self._parameterNode.resultSegmentation = segmentationNode
                self._parameterNode.scoresTable = tableNode
                self.ui.scoresTableView.setMRMLTableNode(tableNode)
                self.fillFindings(segmentationNode, legend)
                self.ui.progressBar.value = 100
                self.addLog(_("Done: {n} organs scored.").format(n=tableNode.GetNumberOfRows()))

    # ------------------------------------------------------------- model cache
    def updateCacheLabel(self) -> None:
        self.ui.cacheSizeLabel.text = self.logic.cacheDescription()

    def onOpenCache(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot open the model cache folder."), waitCursor=False):
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self.logic.cacheFolder())))

    def onClearCache(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot clear the model cache."), waitCursor=True):
            if slicer.util.confirmOkCancelDisplay(_("Delete the downloaded model weights?")):
                self.addLog(self.logic.clearCache())
            self.updateCacheLabel()

    # ------------------------------------------------------ display and search
    def fillFindings(self, segmentationNode, legend) -> None:
        self.ui.findingComboBox.clear()
        for finding in self.logic.scoredFindings(segmentationNode):
            self.ui.findingComboBox.addItem(finding)
        self.ui.findingComboBox.currentIndex = max(0, self.ui.findingComboBox.findText(ANY_LESION))
        self.ui.legendLabel.text = self.logic.legendHtml(legend)

    def fillPresets(self) -> None:
        if self.ui.presetComboBox.count:
            return
        try:
            presets = self.logic.searchPresets()
        except ImportError:  # TotalSegmentator's label map is installed at the first Apply
            self.ui.presetComboBox.toolTip = _("Presets appear after the first Apply.")
            return
        self.ui.presetComboBox.addItems(presets)

    def shownResults(self):
        """The parameter node when it holds scored results, else None (the handlers then do nothing)."""
        p = self._parameterNode
        return p if p and p.resultSegmentation and p.scoresTable else None

    def onFindingChosen(self, index: int) -> None:
        if not (p := self.shownResults()):
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot show the scores."), waitCursor=True):
            legend = self.logic.showFinding(p.resultSegmentation, self.ui.findingComboBox.currentText)
            self.ui.legendLabel.text = self.logic.legendHtml(legend)

    def onRestoreColors(self) -> None:
        if p := self.shownResults():
            restored = self.logic.restoreColors(p.resultSegmentation)
            self.addLog(_("Original colours restored on {n} segments.").format(n=restored))

    def onPresetChosen(self, index: int) -> None:
        self.ui.searchLineEdit.text = self.ui.presetComboBox.currentText
        self.onSearch()

    def onSearch(self) -> None:
        p = self._parameterNode
        if not (p and p.resultSegmentation):
            return
        with slicer.util.tryWithErrorDisplay(_("Search failed."), waitCursor=True):
            hits = self.logic.search(p.resultSegmentation, self.ui.searchLineEdit.text, p.scoresTable)
            matched = [h.organ for h in hits if h.matched]
            self.addLog(_("'{q}': {organs}").format(q=self.ui.searchLineEdit.text,
                                                    organs=", ".join(matched) or _("no organ matches")))

    # ------------------------------------------------------------------ review
    def currentRow(self) -> int:
        view = self.ui.scoresTableView
        index = view.currentIndex()
        if not index.isValid():
            return -1
        return view.sortFilterProxyModel().mapToSource(index).row()

    def currentOrgan(self):
        if not (p := self.shownResults()):
            return None
        organs = self.logic.tableOrgans(p.scoresTable)
        row = self.currentRow()
        return organs[row] if 0 <= row < len(organs) else None

    def onTableSelection(self) -> None:
        organ = self.currentOrgan()
        if organ is None:
            return
        self.ui.currentOrganLabel.text = organ
        with slicer.util.tryWithErrorDisplay(_("Cannot centre the views."), waitCursor=False):
            self.logic.centerViewsOnOrgan(self.shownResults().resultSegmentation, organ)

    def stepOrgan(self, step: int, fromRow=None) -> None:
        p = self.shownResults()
        table = p.scoresTable if p else None
        if not table or table.GetNumberOfRows() == 0:
            return
        view = self.ui.scoresTableView
        start = view.currentIndex().row() if fromRow is None else fromRow
        view.selectRow(min(max(start + step, 0), table.GetNumberOfRows() - 1))

    def onReview(self, mark: str) -> None:
        organ = self.currentOrgan()
        if organ is None:
            slicer.util.infoDisplay(_("Select an organ in the table first."))
            return
        row = self.ui.scoresTableView.currentIndex().row()  # the table refreshes when a mark is stored
        with slicer.util.tryWithErrorDisplay(_("Cannot store the review mark."), waitCursor=False):
            self.logic.setReview(self.shownResults().scoresTable, organ, mark)
            self.stepOrgan(+1, fromRow=row)

    def onExport(self) -> None:
        if not (p := self.shownResults()):
            return
        name = (p.inputVolume.GetName() if p.inputVolume else "totalfm") + "_totalfm.csv"
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Export CSV"), name,
                                              _("CSV files (*.csv)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
            written = self.logic.exportCsv(p.resultSegmentation, p.scoresTable, path)
            self.addLog(_("Wrote {path}").format(path=written))

    def onExportDicom(self) -> None:
        p = self.shownResults()
        folder = p and qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Export DICOM SEG and SR"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("DICOM export failed."), waitCursor=True):
            done = self.logic.exportDicom(p.inputVolume, p.resultSegmentation, p.scoresTable, folder)
            self.addLog(_("Wrote {paths}").format(paths=", ".join(str(path) for path in done.paths)))


class TotalFMSlicerTest(ScriptedLoadableModuleTest):
    """The whole path on the example CT with the demo model (the segmentation is the example's,
    as running TotalSegmentator on a build machine takes too long)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        missing = missingRequirements(self.resourcePath("requirements.txt"))
        if missing:  # a fresh Slicer (extension build machines): pip_ensure installs nothing in testing mode
            self.delayDisplay(_("TotalFMSlicerTest skipped: {names} not installed. Press Apply once in the "
                                "TotalFM module (it installs them), then run the test again.").format(
                names=", ".join(missing)))
            return
        self.setUp()
        self.test_TotalFMSlicer_demo_model()
        self.setUp()
        self.test_TotalFMSlicer_cancel_leaves_scene()

    @staticmethod
    def resourcePath(name: str) -> str:
        return os.path.join(os.path.dirname(__file__), "Resources", name)

    def loadExample(self):
        """The example CT and its segmentation through SampleData (bundled: no network needed)."""
        import SampleData

        registerSampleData()
        ctNode = SampleData.downloadSample("TotalFMExampleCT")
        labelNode = SampleData.downloadSample("TotalFMExampleSegmentation")
        self.assertIsNotNone(ctNode, "the example CT could not be downloaded, and SampleData has no cached copy")
        self.assertTrue(labelNode.IsA("vtkMRMLLabelMapVolumeNode"))
        return ctNode, labelNode

    def test_TotalFMSlicer_demo_model(self):
        from TotalFMSlicerLib.self_test_checks import checkWholePath

        self.delayDisplay("Loading the example CT and its segmentation")
        ctNode, labelNode = self.loadExample()
        checkWholePath(self, TotalFMSlicerLogic(), ctNode, labelNode)
        self.delayDisplay("Test passed")

    def test_TotalFMSlicer_cancel_leaves_scene(self):
        from TotalFMSlicerLib.self_test_checks import checkCancelLeavesScene

        checkCancelLeavesScene(self, TotalFMSlicerLogic(), *self.loadExample())
        self.delayDisplay("Test passed")
