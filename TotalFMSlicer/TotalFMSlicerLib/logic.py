"""The module's Logic, usable without the GUI: inputs from the scene, the core pipeline on a
background job (``TotalFMLib.pipeline.analyze``; the job gets plain arrays, never a node), the
results shown through the MRML layer, search, review and export. Heavy packages (torch,
TotalFMLib's model code) are imported inside functions only."""
import logging
from pathlib import Path

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
from TotalFMLib.errors import Cancelled

from . import dependencies
from .dependencies import totalSegmentatorLogic
from .parameters import MODEL_CHOICES, TotalFMSlicerParameterNode

ANY_LESION = "any lesion"  # TotalFMLib.results.ANY_LESION, repeated to keep imports light
SOURCE_LABELMAP_ATTRIBUTE = "TotalFM.sourceLabelmap"  # on segmentations made from a label map node


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
        self._segmentationCancelled = False

    def getParameterNode(self):
        return TotalFMSlicerParameterNode(super().getParameterNode())

    def log(self, text: str) -> None:
        if self.logCallback:
            self.logCallback(text)
        else:
            logging.info(text)

    # ------------------------------------------------------------ dependencies
    def ensureDependencies(self, requirementsPath, needSegmenter: bool = False) -> None:
        dependencies.ensure(requirementsPath, needSegmenter, self.log)

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
        """The model cache folder (created, so that it can be opened)."""
        from TotalFMLib.models import hub

        folder = hub.model_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return folder

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

    @staticmethod
    def caseVolumes(ctNode, segmentationInput):
        """(CT, label map) as TotalFMLib Volumes, read on the main thread."""
        from . import geometry, segments

        ct = geometry.volume_from_volume_node(ctNode)
        if segmentationInput.IsA("vtkMRMLLabelMapVolumeNode"):
            return ct, geometry.volume_from_volume_node(segmentationInput)
        return ct, segments.labelmap_from_segmentation(segmentationInput, ctNode)

    # ---------------------------------------------------------------- analysis
    def analyze(self, ct, seg, source: str = "demo", device=None, caseId: str = "case", progress=None, cancel=None):
        """The pipeline's ``CaseResult`` (score rows, organ embeddings, warnings). Touches no MRML
        node and no widget, so it may run on a worker thread."""
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
        from . import colouring, geometry, score_store, scores_table, segments

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
        score_store.store_embeddings(segmentationNode, embeddings, self._modelKey[0], self._model.model_id,
                                     self._model.checksum)
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
        from . import score_store

        return score_store.row_findings(score_store.scored_rows(segmentationNode))

    @staticmethod
    def showFinding(segmentationNode, finding: str):
        from . import colouring, score_store

        return colouring.apply_scores(segmentationNode, score_store.scored_rows(segmentationNode), finding)

    @staticmethod
    def legendHtml(legend) -> str:
        from .colouring import legend_html

        return legend_html(legend)

    @staticmethod
    def restoreColors(segmentationNode) -> int:
        from . import colouring

        return colouring.restore_colors(segmentationNode)

    @staticmethod
    def searchPresets() -> list:
        from TotalFMLib.zeroshot.search import preset_queries

        return preset_queries()

    def sceneEmbeddings(self, segmentationNode):
        """(organ embeddings, model) stored with the segmentation, the model loaded again from its
        stored source when it is not the one in memory (a reopened scene); refused with a
        message when the embeddings are missing or that model cannot be had with the same checksum."""
        from TotalFMLib.errors import InputError, ModelError

        from . import score_store

        embeddings, stored = score_store.read_embeddings(segmentationNode)
        if not embeddings or stored is None:
            raise InputError(None, "press Apply first: search needs this case's organ embeddings")
        if self._model is not None and self._model.checksum == stored["checksum"]:
            return embeddings, self._model
        problem = None
        try:
            if stored["source"] == "official" and not self.officialModelCached():
                raise InputError(None, "the released weights are not downloaded")  # never download unasked
            model = self.loadModel(stored["source"])
            if model.checksum == stored["checksum"]:
                return embeddings, model
            problem = "a different model now answers to that source"
        except (ModelError, InputError, OSError) as e:
            problem = str(e)
        raise InputError(None, f"this segmentation was scored with {stored['model_id']} (checksum "
                               f"{stored['checksum'][:12]}, from {stored['source']}), which cannot be loaded here "
                               f"({problem}): choose that model and press Apply")

    def search(self, segmentationNode, query: str, tableNode=None, topK=None, threshold=None):
        """Rank organs for a typed finding and highlight the matches: ranked within ``topK`` (3) with
        a score of at least ``threshold`` (the model's match score); the table lists them first."""
        from . import colouring, score_store, scores_table

        embeddings, model = self.sceneEmbeddings(segmentationNode)
        hits = model.search(embeddings, query, top_k=topK, threshold=threshold)
        colouring.highlight(segmentationNode, hits)
        if tableNode is not None:
            order = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
            scores_table.scores_table(slicer.mrmlScene, score_store.scored_rows(segmentationNode), tableNode,
                                      order=order)
        return hits

    # ------------------------------------------------------------------ review
    @staticmethod
    def tableOrgans(tableNode) -> list:
        from . import scores_table

        return scores_table.table_organs(tableNode) if tableNode else []

    @staticmethod
    def setReview(tableNode, organ: str, mark: str) -> None:
        from . import scores_table

        scores_table.set_review(tableNode, organ, mark)

    @staticmethod
    def centerViewsOnOrgan(segmentationNode, organ: str):
        """Jump the slice views to the organ's centre and aim the 3D views at it."""
        from . import segments

        r, a, s = segments.organ_center_ras(segmentationNode, organ)
        slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)
        cameras = slicer.modules.cameras.logic()
        for viewNode in slicer.util.getNodesByClass("vtkMRMLViewNode"):
            camera = cameras.GetViewActiveCameraNode(viewNode)
            if camera is not None:
                camera.SetFocalPoint(r, a, s)
        return r, a, s

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

    @staticmethod
    def exportCsv(segmentationNode, tableNode, path):
        from . import score_store, scores_table

        return scores_table.export_csv(score_store.scored_rows(segmentationNode), path, tableNode)
