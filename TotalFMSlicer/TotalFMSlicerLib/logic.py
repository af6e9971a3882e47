"""The module's Logic: the reviewer's workflow (``workflow.CaseWorkflow``, shared with the browser
app) plus what needs the Slicer application: the parameter node, the dependency install at
Apply, TotalSegmentator through its module's Logic, the layout's views, the case library panel
and the DICOM export of a CT from Slicer's DICOM database. Heavy packages (torch, TotalFMLib's
model code) are imported inside functions only."""
import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
from TotalFMLib.errors import Cancelled

from . import dependencies
from .dependencies import totalSegmentatorLogic
from .parameters import TotalFMSlicerParameterNode
from .workflow import ANY_LESION, AnalysisRun, CaseWorkflow

__all__ = ["ANY_LESION", "AnalysisRun", "Cancelled", "TotalFMSlicerLogic"]


class TotalFMSlicerLogic(ScriptedLoadableModuleLogic, CaseWorkflow):
    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        CaseWorkflow.__init__(self)
        self._segmentationCancelled = False

    def getParameterNode(self):
        return TotalFMSlicerParameterNode(super().getParameterNode())

    # ------------------------------------------------------------ dependencies
    def ensureDependencies(self, requirementsPath, needSegmenter: bool = False) -> None:
        dependencies.ensure(requirementsPath, needSegmenter, self.log)

    @staticmethod
    def cacheDescription() -> str:
        """"12 MB in <folder>", or a hint before the first Apply has installed what it needs."""
        try:
            from TotalFMLib.models import hub

            return f"{hub.cache_size() / 1e6:.0f} MB in {hub.model_cache_dir()}"
        except ImportError:
            return _("(after the first Apply)")

    @staticmethod
    def clearCache() -> str:
        from TotalFMLib.models import hub

        return _("Freed {mb:.0f} MB.").format(mb=hub.clear_cache() / 1e6)

    # ------------------------------------------------------------------ inputs
    def segment(self, ctNode, fast: bool = True, cpu: bool = False):
        """A new segmentation node from the TotalSegmentator extension (task 'total'). It runs in
        the foreground (TotalSegmentator's Logic waits for its process), painting the GUI at every
        log line; ``cancelSegmentation()``, pressed meanwhile, kills TotalSegmentator's process
        and raises ``Cancelled`` with nothing left in the scene."""
        tsLogic = totalSegmentatorLogic()
        previousCallback = tsLogic.logCallback  # TotalSegmentator's own widget's log box, given back below
        running = []  # TotalSegmentator's process, seen as its Logic starts reading its output
        readOutput = tsLogic.logProcessOutput

        def watch(proc, *args, **kwargs):
            running.append(proc)
            return readOutput(proc, *args, **kwargs)

        def log(text):
            self.log(text)
            slicer.app.processEvents()  # keeps the GUI painting, and lets a Cancel click arrive
            if self._segmentationCancelled and running and running[-1].poll() is None:
                running[-1].kill()

        self._segmentationCancelled = False
        tsLogic.logCallback, tsLogic.logProcessOutput = log, watch  # instance attributes, removed below
        self.log(_("Segmenting {name} with TotalSegmentator ({mode})...").format(
            name=ctNode.GetName(), mode=_("fast") if fast else _("full resolution")))
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", ctNode.GetName() + " organs")
        try:
            tsLogic.process(ctNode, segmentationNode, fast, cpu, "total", interactive=False)
            if self._segmentationCancelled:
                raise Cancelled("cancelled")
        except Exception as e:
            slicer.mrmlScene.RemoveNode(segmentationNode)
            if self._segmentationCancelled:
                raise Cancelled("cancelled") from (None if isinstance(e, Cancelled) else e)
            raise
        finally:
            tsLogic.logCallback = previousCallback
            del tsLogic.logProcessOutput
        return segmentationNode

    def cancelSegmentation(self) -> None:
        """Stop a TotalSegmentator run in progress (called from a click while ``segment`` runs)."""
        self._segmentationCancelled = True

    def startAnalysis(self, ctNode, segmentationInput=None, source: str = "demo", fast: bool = True,
                      cpu: bool = False) -> AnalysisRun:
        """Segment if needed (main thread), then score on a background job; see finishAnalysis."""
        created = []
        if segmentationInput is None:
            segmentationInput = self.segment(ctNode, fast, cpu)
            created.append(segmentationInput)
        return self.startScoring(ctNode, segmentationInput, source, "cpu" if cpu else None, created)

    def process(self, ctNode, segmentationInput=None, source: str = "demo", fast: bool = True, cpu: bool = False,
                tableNode=None):
        """The whole path, waiting for the result (scripts and tests)."""
        run = self.startAnalysis(ctNode, segmentationInput, source, fast, cpu)
        run.job.wait()
        return self.finishAnalysis(run, tableNode)

    # ------------------------------------------------------------ case library
    def libraryFind(self, libraryPath, query: str, source: str = "demo", topK: int = 20, tableNode=None):
        """The case library's hits for a typed finding (``totalfm find``), as a table node."""
        from TotalFMLib.library.query import find_text
        from TotalFMLib.library.store import Library

        from . import library_panel

        library = Library(libraryPath)
        try:
            hits = find_text(library, self.loadModel(source), query, top_k=topK)
        finally:
            library.close()
        return library_panel.hits_table(slicer.mrmlScene, hits, tableNode)

    def openLibraryHit(self, tableNode, row: int):
        """Load a hit's study, highlight its organ, centre the views on it: (CT, segmentation)."""
        from . import library_panel

        hit = library_panel.hit_at(tableNode, row)
        ctNode, segmentationNode = library_panel.open_hit(slicer.mrmlScene, hit)
        slicer.util.setSliceViewerLayers(background=ctNode)
        self.centerViewsOnOrgan(segmentationNode, hit["organ"])
        return ctNode, segmentationNode

    @staticmethod
    def exportDicom(ctNode, segmentationNode, tableNode, folder):
        """organs_seg.dcm + findings_sr.dcm (with the review marks) of a CT loaded from DICOM."""
        from . import dicom_export

        return dicom_export.export_dicom(ctNode, segmentationNode, tableNode, folder,
                                         getattr(slicer, "dicomDatabase", None))
