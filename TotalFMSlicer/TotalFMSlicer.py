"""TotalFM in 3D Slicer: organ-wise lesion scores, finding search and organ-by-organ review.

The widget only wires the .ui to the logic; the logic delegates to TotalFMLib, whose one
door to MRML is the module's own package ``TotalFMSlicerLib`` (tested in plain pytest). Heavy packages
(torch, transformers, TotalFMLib's model code) are imported inside functions only.
"""
import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated, Union

import qt
import vtk

import slicer
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

DOCS_URL = "https://github.com/TotalFMSlicer/SlicerTotalFM#3d-slicer"
MODEL_CHOICES = ["demo", "official", "checkpoint"]
ANY_LESION = "any lesion"  # TotalFMLib.results.ANY_LESION, repeated to keep imports light
SOURCE_LABELMAP_ATTRIBUTE = "TotalFM.sourceLabelmap"  # on segmentations made from a label map node

# The example CT and its TotalSegmentator segmentation: TotalSegmentator's own test data
# (Apache-2.0), pinned to the v2.18.0 tag and checked by SHA-256.
EXAMPLE_DATA_URL = "https://raw.githubusercontent.com/wasserth/TotalSegmentator/v2.18.0/tests/reference_files/"
EXAMPLE_CT = ("example_ct.nii.gz", "SHA256:dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1")
EXAMPLE_SEG = ("example_seg_fast_force_split.nii.gz",
               "SHA256:e8097758e56e73099075b6caaebce23ef11bc6fad66a4ec3753b9406846558c7")


#
# TotalFMSlicer
#


class TotalFMSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("TotalFM")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["TotalFMSlicer developers"]
        self.parent.helpText = _("""
Organ-wise zero-shot CT findings with TotalFM, an organ-separated CT vision-language model.
Select a CT and a TotalSegmentator segmentation (or let TotalSegmentator make one), press Apply:
each organ is coloured by its lesion score, a typed finding highlights the matching organs, and
the table lets you review organ by organ and export CSV.
See the <a href="{docs}">documentation</a>.<br><br>
<b>Models and licences.</b> TotalFMSlicer and TotalFMLib: Apache-2.0.
<i>demo</i>: a small model bundled with the extension to try the workflow; its scores mean little.
<i>official</i>: the released TotalFM weights (Hugging Face jichi-labo/TotalFM), downloaded on first
use after you agree; the authors release them for research purposes only.
TotalSegmentator (<i>total</i> task): Apache-2.0.<br>
Research software, not a medical device: not for clinical decisions.
""").format(docs=DOCS_URL)
        self.parent.acknowledgementText = _("""
TotalFM: Yamamoto and Kikuchi, MICCAI 2026, arXiv:2601.00260 (code: github.com/jichi-labo/TotalFM).
TotalSegmentator: Wasserthal J. et al., TotalSegmentator: Robust Segmentation of 104 Anatomic
Structures in CT Images, Radiology: Artificial Intelligence 2023;5(5):e230024.
The example CT is TotalSegmentator's test data.
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """The example abdomen CT and its TotalSegmentator label map in the Sample Data module."""
    import SampleData

    icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "TotalFMSlicer.png")
    SampleData.SampleDataLogic.registerCustomSampleDataCategory("TotalFM", title=_("TotalFM"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="TotalFM", sampleName="TotalFMExampleCT", thumbnailFileName=icon,
        uris=EXAMPLE_DATA_URL + EXAMPLE_CT[0], fileNames="TotalFMExampleCT.nii.gz",
        checksums=EXAMPLE_CT[1], nodeNames="TotalFMExampleCT", loadFileTypes="VolumeFile")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="TotalFM", sampleName="TotalFMExampleSegmentation", thumbnailFileName=icon,
        uris=EXAMPLE_DATA_URL + EXAMPLE_SEG[0], fileNames="TotalFMExampleSegmentation.nii.gz",
        checksums=EXAMPLE_SEG[1], nodeNames="TotalFMExampleSegmentation", loadFileTypes="VolumeFile",
        loadFileProperties={"labelmap": True})


#
# Parameter node
#


@parameterNodeWrapper
class TotalFMSlicerParameterNode:
    """inputVolume: CT; inputSegmentation: TotalSegmentator segmentation or label map (None: run
    TotalSegmentator); resultSegmentation and scoresTable: what the last run showed."""

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    fastSegmentation: bool = True
    forceCpu: bool = False
    modelSource: Annotated[str, Choice(MODEL_CHOICES)] = "demo"
    checkpointPath: str = ""  # bound by hand: Slicer's path box connector takes only Path, whose default shows "."
    resultSegmentation: vtkMRMLSegmentationNode
    scoresTable: vtkMRMLTableNode


#
# Widget: wiring only
#


class TotalFMSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None  # the AnalysisRun in progress
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
        self.ui.checkpointPathLineEdit.connect("currentPathChanged(QString)", self.onCheckpointPathChanged)

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
        if self._parameterNode:
            self._parameterNode.checkpointPath = path

    def updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self._run is not None
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = running or bool(p and p.inputVolume)
        self.ui.checkpointPathLineEdit.enabled = bool(p and p.modelSource == "checkpoint")
        hasSegmenter = bool(p) and not p.inputSegmentation
        self.ui.fastCheckBox.enabled = hasSegmenter
        hasResults = bool(p and p.resultSegmentation and p.scoresTable) and not running
        for widget in (self.ui.findingComboBox, self.ui.restoreColorsButton, self.ui.searchButton,
                       self.ui.presetComboBox, self.ui.previousButton, self.ui.nextButton, self.ui.agreeButton,
                       self.ui.disagreeButton, self.ui.unsureButton, self.ui.exportButton):
            widget.enabled = hasResults

    def addLog(self, text: str) -> None:
        logging.info(text)
        self.ui.statusLabel.text = text
        self.ui.logTextEdit.appendPlainText(text)

    # ----------------------------------------------------------------- run
    def onApplyButton(self) -> None:
        if self._run is not None:
            self._run.job.cancel()
            self.addLog(_("Cancelling..."))
            return
        p = self._parameterNode
        if p is None or not p.inputVolume:
            return
        with slicer.util.tryWithErrorDisplay(_("TotalFM could not start."), waitCursor=True):
            self.logic.ensureDependencies(self.resourcePath("requirements.txt"), needSegmenter=not p.inputSegmentation)
            source = self.logic.modelSource(p.modelSource, p.checkpointPath)
            if source == "official" and not self.logic.officialModelCached():
                if not slicer.util.confirmOkCancelDisplay(
                        _("Download the released TotalFM weights (more than 1 GB) from Hugging Face "
                          "(jichi-labo/TotalFM)? The authors release them for research purposes only; "
                          "they are kept in the model cache folder."),
                        _("TotalFM weights")):
                    return
            self.fillPresets()
            self.ui.logTextEdit.clear()
            self.ui.applyButton.enabled = False  # TotalSegmentator runs first, in the foreground
            try:
                self._run = self.logic.startAnalysis(p.inputVolume, p.inputSegmentation, source,
                                                     fast=p.fastSegmentation, cpu=p.forceCpu)
            finally:
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
        try:
            self.ui.cacheSizeLabel.text = self.logic.cacheDescription()
        except ImportError:
            self.ui.cacheSizeLabel.text = _("(after the first Apply)")

    def onOpenCache(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot open the model cache folder."), waitCursor=False):
            folder = self.logic.cacheFolder()
            folder.mkdir(parents=True, exist_ok=True)
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))

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
        self.ui.legendLabel.text = legendHtml(legend)

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
        """The parameter node when it holds a scored segmentation and its table, else None (no
        scene yet, a closed scene, or nothing scored): the handlers below then do nothing."""
        p = self._parameterNode
        return p if p and p.resultSegmentation and p.scoresTable else None

    def onFindingChosen(self, index: int) -> None:
        p = self.shownResults()
        if p is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot show the scores."), waitCursor=True):
            legend = self.logic.showFinding(p.resultSegmentation, self.ui.findingComboBox.currentText)
            self.ui.legendLabel.text = legendHtml(legend)

    def onRestoreColors(self) -> None:
        p = self.shownResults()
        if p is None:
            return
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
        p = self.shownResults()
        if p is None:
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
        p = self.shownResults()
        if p is None:
            return
        name = (p.inputVolume.GetName() if p.inputVolume else "totalfm") + "_totalfm.csv"
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Export CSV"), name,
                                              _("CSV files (*.csv)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
            written = self.logic.exportCsv(p.resultSegmentation, p.scoresTable, path)
            self.addLog(_("Wrote {path}").format(path=written))


def legendHtml(legend) -> str:
    """A colour bar for the legend label: 0 ... 1 with the colour map's stops."""
    cells = "".join(
        '<td style="background-color:#%02x%02x%02x">&nbsp;&nbsp;&nbsp;</td>' % tuple(int(round(255 * c)) for c in rgb)
        for _value, rgb in legend.stops)
    return (f"<table cellspacing=0><tr><td>0&nbsp;</td>{cells}<td>&nbsp;1</td></tr></table>"
            f"{legend.title}; faint organs: below threshold or not scored")


#
# Logic: usable without the GUI
#


class AnalysisRun:
    """One Apply: its inputs, the nodes it created so far, and the background job."""

    def __init__(self, ctNode, segmentationInput, createdNodes, job):
        self.ctNode = ctNode
        self.segmentationInput = segmentationInput
        self.createdNodes = createdNodes
        self.job = job


class TotalFMSlicerLogic(ScriptedLoadableModuleLogic):
    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.logCallback = None
        self._model = None
        self._modelKey = None
        self.embeddings = {}
        self.embeddingsSegmentationID = None

    def getParameterNode(self):
        return TotalFMSlicerParameterNode(super().getParameterNode())

    def log(self, text: str) -> None:
        if self.logCallback:
            self.logCallback(text)
        else:
            logging.info(text)

    # ------------------------------------------------------------ dependencies
    def ensureDependencies(self, requirementsPath, needSegmenter: bool = False) -> None:
        """torch through the PyTorch extension, TotalSegmentator's package through its extension
        (its label map is TotalFMLib's organ catalogue), the rest with pip_ensure."""
        try:
            import PyTorchUtils
        except ModuleNotFoundError as e:
            raise RuntimeError(_("TotalFM needs the PyTorch extension; install it from the Extensions Manager.")) from e
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            self.log(_("Installing PyTorch (several minutes)..."))
            if torchLogic.installTorch(askConfirmation=True, torchVersionRequirement=">=2.1") is None:
                raise RuntimeError(_("PyTorch is required; install it with the PyTorch module."))
        if needSegmenter or not _importable("totalsegmentator"):
            self.log(_("Checking TotalSegmentator's Python packages..."))
            totalSegmentatorLogic().setupPythonRequirements()
        import slicer.packaging

        slicer.packaging.pip_ensure(slicer.packaging.load_requirements(str(requirementsPath)),
                                    requester="TotalFMSlicer")

    # -------------------------------------------------------------- the model
    @staticmethod
    def modelSource(choice: str, checkpointPath=None) -> str:
        """"demo", "official" or the checkpoint file path."""
        from TotalFMLib.errors import InputError

        if choice in ("demo", "official"):
            return choice
        if choice != "checkpoint":
            raise InputError(None, f"unknown model choice {choice!r}; use one of {', '.join(MODEL_CHOICES)}")
        text = str(checkpointPath or "").strip()
        if text in ("", "."):
            raise InputError(None, "choose a TotalFM checkpoint file (.pt) for the 'checkpoint' model")
        path = Path(text).expanduser()
        if not path.is_file():
            raise InputError(path, "checkpoint file not found")
        return str(path)

    @staticmethod
    def officialModelCached() -> bool:
        from TotalFMLib.models import hub

        return hub.official_cached()

    @staticmethod
    def cacheFolder() -> Path:
        from TotalFMLib.models import hub

        return hub.model_cache_dir()

    @staticmethod
    def cacheDescription() -> str:
        from TotalFMLib.models import hub

        return f"{hub.cache_size() / 1e6:.0f} MB in {hub.model_cache_dir()}"

    @staticmethod
    def clearCache() -> str:
        from TotalFMLib.models import hub

        return _("Freed {mb:.0f} MB.").format(mb=hub.clear_cache() / 1e6)

    def loadModel(self, source: str, device=None):
        """The TotalFM model (kept between runs while the source and device stay the same)."""
        if self._model is None or self._modelKey != (source, device):
            from TotalFMLib import runtime
            from TotalFMLib.totalfm import TotalFM

            runtime.setup()  # once per process: CPU threads (torch is already loaded inside Slicer)
            self._model = TotalFM.load(source, device=device)
            self._modelKey = (source, device)
        return self._model

    # ------------------------------------------------------------------ inputs
    def segment(self, ctNode, fast: bool = True, cpu: bool = False):
        """A new segmentation node from the TotalSegmentator extension (task 'total')."""
        tsLogic = totalSegmentatorLogic()
        previousCallback = tsLogic.logCallback  # TotalSegmentator's own widget's log box, given back below

        def log(text):
            self.log(text)
            slicer.app.processEvents()  # TotalSegmentator runs in the foreground: keep the GUI painting

        tsLogic.logCallback = log
        self.log(_("Segmenting {name} with TotalSegmentator ({mode})...").format(
            name=ctNode.GetName(), mode=_("fast") if fast else _("full resolution")))
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", ctNode.GetName() + " organs")
        try:
            tsLogic.process(ctNode, segmentationNode, fast, cpu, "total", interactive=False)
        except Exception:
            slicer.mrmlScene.RemoveNode(segmentationNode)
            raise
        finally:
            tsLogic.logCallback = previousCallback
        return segmentationNode

    @staticmethod
    def caseVolumes(ctNode, segmentationInput):
        """(CT, label map) as TotalFMLib Volumes, read on the main thread."""
        from TotalFMSlicerLib import geometry, segments

        ct = geometry.volume_from_volume_node(ctNode)
        if segmentationInput.IsA("vtkMRMLLabelMapVolumeNode"):
            return ct, geometry.volume_from_volume_node(segmentationInput)
        return ct, segments.labelmap_from_segmentation(segmentationInput, ctNode)

    # ---------------------------------------------------------------- analysis
    def analyze(self, ct, seg, source: str = "demo", device=None, caseId: str = "case", progress=None, cancel=None):
        """The pipeline's ``CaseResult`` (score rows, organ embeddings, warnings). Touches no MRML
        node and no widget, so it may run on a worker thread."""
        from TotalFMLib.errors import Cancelled
        from TotalFMLib.progress import sub_progress

        progress = progress or (lambda fraction, message: None)
        cancel = cancel or (lambda: False)
        if source == "official" and not self.officialModelCached():
            from TotalFMLib.models import hub

            # the first half of the bar follows the download, the analysis takes the second
            progress(0.0, "Downloading the released TotalFM weights (more than 1 GB; see the cache folder)")
            hub.official_checkpoint(progress=sub_progress(progress, 0.0, 0.5), cancel=cancel)
            progress = sub_progress(progress, 0.5, 1.0)
        progress(0.0, "Loading the TotalFM model")
        model = self.loadModel(source, device)
        if cancel():
            raise Cancelled("cancelled")
        from TotalFMLib.pipeline import analyze

        return analyze(model, ct, seg, case_id=caseId, progress=sub_progress(progress, 0.05, 1.0), cancel=cancel)

    def startAnalysis(self, ctNode, segmentationInput=None, source: str = "demo", fast: bool = True,
                      cpu: bool = False) -> AnalysisRun:
        """Segment if needed (main thread), then score on a background job; see finishAnalysis."""
        from TotalFMLib.background import BackgroundJob

        created = []
        if segmentationInput is None:
            segmentationInput = self.segment(ctNode, fast, cpu)
            created.append(segmentationInput)
        try:
            ct, seg = self.caseVolumes(ctNode, segmentationInput)
        except Exception:
            for node in created:
                slicer.mrmlScene.RemoveNode(node)
            raise
        device = "cpu" if cpu else None
        caseId = ctNode.GetName()  # read here: the job runs on a worker thread, which must not touch MRML
        job = BackgroundJob(lambda progress, cancel: self.analyze(ct, seg, source, device, caseId, progress, cancel))
        return AnalysisRun(ctNode, segmentationInput, created, job.start())

    def finishAnalysis(self, run: AnalysisRun, tableNode=None):
        """Show a finished run: (segmentation node, table node, legend). A cancelled or failed run
        removes what it created and returns None or raises its error."""
        from TotalFMLib.background import FINISHED

        if run.ctNode.GetScene() is None or run.segmentationInput.GetScene() is None:
            return None  # the scene was closed (or the inputs deleted) while the job ran: nothing to show on
        if run.job.state != FINISHED:
            for node in run.createdNodes:
                slicer.mrmlScene.RemoveNode(node)
            if run.job.error is not None:
                raise run.job.error
            return None
        result = run.job.result
        for warning in result.warnings:
            self.log(warning)
        rows, embeddings = result.rows, result.embeddings
        return self.showResults(run.ctNode, run.segmentationInput, rows, embeddings, tableNode)

    def showResults(self, ctNode, segmentationInput, rows, embeddings, tableNode=None, finding: str = ANY_LESION):
        from TotalFMSlicerLib import colouring, geometry, scores_table, segments

        segmentationNode = segmentationInput
        if segmentationInput.IsA("vtkMRMLLabelMapVolumeNode"):
            # one segmentation per label map: a new run replaces the one the last run made
            for old in slicer.util.getNodesByClass("vtkMRMLSegmentationNode"):
                if old.GetAttribute(SOURCE_LABELMAP_ATTRIBUTE) == segmentationInput.GetID():
                    slicer.mrmlScene.RemoveNode(old)
            labelmap = geometry.volume_from_volume_node(segmentationInput)
            segmentationNode = segments.segmentation_from_labelmap(
                slicer.mrmlScene, labelmap, ctNode, segmentationInput.GetName() + " organs")
            segmentationNode.SetAttribute(SOURCE_LABELMAP_ATTRIBUTE, segmentationInput.GetID())
        legend = colouring.apply_scores(segmentationNode, rows, finding)
        tableNode = scores_table.scores_table(slicer.mrmlScene, rows, tableNode)
        segments.ensure_closed_surfaces(segmentationNode)
        self.embeddings = embeddings
        self.embeddingsSegmentationID = segmentationNode.GetID()
        return segmentationNode, tableNode, legend

    def process(self, ctNode, segmentationInput=None, source: str = "demo", fast: bool = True, cpu: bool = False,
                tableNode=None):
        """The whole path, waiting for the result (scripts and tests)."""
        run = self.startAnalysis(ctNode, segmentationInput, source, fast, cpu)
        run.job.wait()
        return self.finishAnalysis(run, tableNode)

    # ------------------------------------------------------ display and search
    @staticmethod
    def scoredFindings(segmentationNode) -> list:
        from TotalFMSlicerLib import score_store

        return score_store.row_findings(score_store.scored_rows(segmentationNode))

    @staticmethod
    def showFinding(segmentationNode, finding: str):
        from TotalFMSlicerLib import colouring, score_store

        return colouring.apply_scores(segmentationNode, score_store.scored_rows(segmentationNode), finding)

    @staticmethod
    def restoreColors(segmentationNode) -> int:
        from TotalFMSlicerLib import colouring

        return colouring.restore_colors(segmentationNode)

    @staticmethod
    def searchPresets() -> list:
        from TotalFMLib.zeroshot.search import preset_queries

        return preset_queries()

    def search(self, segmentationNode, query: str, tableNode=None, topK=None, threshold=None):
        """Rank organs for a typed finding and highlight the matches: ranked within ``topK`` (3) with
        a score of at least ``threshold`` (the model's match score); the table lists them first."""
        from TotalFMSlicerLib import colouring, score_store, scores_table
        from TotalFMLib.errors import InputError

        if self._model is None or self.embeddingsSegmentationID != segmentationNode.GetID():
            raise InputError(None, "press Apply first: search needs this case's organ embeddings")
        hits = self._model.search(self.embeddings, query, top_k=topK, threshold=threshold)
        colouring.highlight(segmentationNode, hits)
        if tableNode is not None:
            order = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
            scores_table.scores_table(slicer.mrmlScene, score_store.scored_rows(segmentationNode), tableNode,
                                      order=order)
        return hits

    # ------------------------------------------------------------------ review
    @staticmethod
    def tableOrgans(tableNode) -> list:
        from TotalFMSlicerLib import scores_table

        return scores_table.table_organs(tableNode) if tableNode else []

    @staticmethod
    def setReview(tableNode, organ: str, mark: str) -> None:
        from TotalFMSlicerLib import scores_table

        scores_table.set_review(tableNode, organ, mark)

    @staticmethod
    def centerViewsOnOrgan(segmentationNode, organ: str):
        """Jump the slice views to the organ's centre and aim the 3D views at it."""
        from TotalFMSlicerLib import segments

        r, a, s = segments.organ_center_ras(segmentationNode, organ)
        slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)
        cameras = slicer.modules.cameras.logic()
        for viewNode in slicer.util.getNodesByClass("vtkMRMLViewNode"):
            camera = cameras.GetViewActiveCameraNode(viewNode)
            if camera is not None:
                camera.SetFocalPoint(r, a, s)
        return r, a, s

    @staticmethod
    def exportCsv(segmentationNode, tableNode, path):
        from TotalFMSlicerLib import score_store, scores_table

        return scores_table.export_csv(score_store.scored_rows(segmentationNode), path, tableNode)


def totalSegmentatorLogic():
    """The TotalSegmentator extension's logic (declared in EXTENSION_DEPENDS)."""
    try:
        return slicer.util.getModuleLogic("TotalSegmentator")
    except (AttributeError, RuntimeError) as e:
        raise RuntimeError(_("TotalFM needs the TotalSegmentator extension to segment the CT and for its "
                             "organ catalogue; install it from the Extensions Manager.")) from e


def missingRequirements(requirementsPath) -> list:
    """torch and the requirements in requirements.txt that are not installed (no install, no network)."""
    import importlib.metadata
    import re

    names = ["torch"]
    for line in Path(requirementsPath).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0])
    missing = []
    for name in names:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


#
# Test
#


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
        """The example CT and its segmentation through SampleData (its cache serves them offline)."""
        import SampleData

        registerSampleData()
        ctNode = SampleData.downloadSample("TotalFMExampleCT")
        labelNode = SampleData.downloadSample("TotalFMExampleSegmentation")
        self.assertIsNotNone(ctNode, "the example CT could not be downloaded, and SampleData has no cached copy")
        self.assertTrue(labelNode.IsA("vtkMRMLLabelMapVolumeNode"))
        return ctNode, labelNode

    def test_TotalFMSlicer_demo_model(self):
        import numpy as np

        from TotalFMLib.vocabulary import catalogue
        from TotalFMSlicerLib import colouring, score_store

        self.delayDisplay("Loading the example CT and its segmentation")
        ctNode, labelNode = self.loadExample()
        logic = TotalFMSlicerLogic()
        self.delayDisplay("Scoring with the demo model")
        segmentationNode, tableNode, legend = logic.process(ctNode, labelNode, "demo", cpu=True)

        rows = score_store.scored_rows(segmentationNode)
        organs = {r.organ for r in rows}
        self.assertGreater(len(organs), 5)
        self.assertEqual(tableNode.GetNumberOfRows(), len(organs))
        self.assertEqual(set(logic.tableOrgans(tableNode)), organs)
        segmentation = segmentationNode.GetSegmentation()
        display = segmentationNode.GetDisplayNode()
        for row in rows:
            if row.finding != ANY_LESION:
                continue
            segment = segmentation.GetSegment(row.organ)
            self.assertTrue(np.allclose(segment.GetColor(), legend.color(row.score), atol=1e-6))
            expected = 1.0 if row.flagged else colouring.DIM_OPACITY
            self.assertAlmostEqual(display.GetSegmentOpacity3D(row.organ), expected)

        self.delayDisplay("Finding search")
        hits = logic.search(segmentationNode, "kidney stone", tableNode, topK=3, threshold=float("-inf"))
        matched = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
        self.assertEqual(len(matched), 3)
        self.assertEqual(logic.tableOrgans(tableNode)[: len(matched)], matched)
        self.assertTrue(np.allclose(segmentation.GetSegment(matched[0]).GetColor(), colouring.HIGHLIGHT_COLOR))

        self.delayDisplay("Review and export")
        logic.setReview(tableNode, matched[0], "agree")
        logic.centerViewsOnOrgan(segmentationNode, matched[0])
        path = os.path.join(tempfile.mkdtemp(), "scores.csv")
        logic.exportCsv(segmentationNode, tableNode, path)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), len(rows) + 1)
        self.assertTrue(lines[0].endswith(",review"))

        logic.restoreColors(segmentationNode)
        liver = segmentation.GetSegment("liver")
        self.assertTrue(np.allclose(liver.GetColor(), np.array(catalogue.organ("liver").color) / 255.0))
        self.delayDisplay("Test passed")

    def test_TotalFMSlicer_cancel_leaves_scene(self):
        ctNode, labelNode = self.loadExample()
        before = slicer.mrmlScene.GetNumberOfNodes()
        logic = TotalFMSlicerLogic()
        run = logic.startAnalysis(ctNode, labelNode, "demo", cpu=True)
        run.job.cancel()
        run.job.wait()
        self.assertIsNone(logic.finishAnalysis(run))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Test passed")
