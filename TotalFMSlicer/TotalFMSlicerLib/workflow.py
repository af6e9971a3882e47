"""The reviewer's workflow on any MRML scene: the model kept warm, scoring on a background job,
results shown through the MRML layer, search, review marks, centring and the CSV export.

It reaches the scene only through the nodes it is given (``node.GetScene()``), never
``slicer.mrmlScene``, ``slicer.app``, ``slicer.modules``, Qt or CTK: the Slicer module's Logic
(``logic.py``, which adds what needs the Slicer application: TotalSegmentator's module, the
dependency install, the views of the layout) and the browser app (``TotalFMWeb``, a
trame-slicer scene) both inherit it, so neither writes the workflow again. Heavy packages (torch,
TotalFMLib's model code) are imported inside functions only."""
from __future__ import annotations

import logging
from pathlib import Path

from TotalFMLib.errors import Cancelled

MODEL_CHOICES = ["demo", "official", "checkpoint"]
ANY_LESION = "any lesion"  # TotalFMLib.results.ANY_LESION, repeated to keep imports light
SOURCE_LABELMAP_ATTRIBUTE = "TotalFM.sourceLabelmap"  # on segmentations made from a label map node


class AnalysisRun:
    """One analysis: its inputs, the nodes it created so far, and the background job."""

    def __init__(self, ctNode, segmentationInput, createdNodes, job):
        self.ctNode = ctNode
        self.segmentationInput = segmentationInput
        self.createdNodes = createdNodes
        self.job = job


def _remove(nodes) -> None:
    for node in nodes:
        scene = node.GetScene()
        if scene is not None:
            scene.RemoveNode(node)


class CaseWorkflow:
    """Scoring, display, search, review and export of one scene's cases with one warm model."""

    def __init__(self) -> None:
        self.logCallback = None
        self._model = None
        self._modelKey = None

    def log(self, text: str) -> None:
        if self.logCallback:
            self.logCallback(text)
        else:
            logging.info(text)

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

    def loadModel(self, source: str, device=None):
        """The TotalFM model (kept between runs while the source and device stay the same)."""
        if self._model is None or self._modelKey != (source, device):
            from TotalFMLib import runtime
            from TotalFMLib.totalfm import TotalFM

            runtime.setup()  # once per process: CPU threads (torch is already loaded inside Slicer)
            self._model = TotalFM.load(source, device=device)
            self._modelKey = (source, device)
        return self._model

    # ---------------------------------------------------------------- analysis
    @staticmethod
    def caseVolumes(ctNode, segmentationInput):
        """(CT, label map) as TotalFMLib Volumes, read on the main thread."""
        from . import geometry, segments

        ct = geometry.volume_from_volume_node(ctNode)
        if segmentationInput.IsA("vtkMRMLLabelMapVolumeNode"):
            return ct, geometry.volume_from_volume_node(segmentationInput)
        return ct, segments.labelmap_from_segmentation(segmentationInput, ctNode)

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

    def startScoring(self, ctNode, segmentationInput, source: str = "demo", device=None, createdNodes=()):
        """Score a CT node with its segmentation (or label map) node on a background job; see
        finishAnalysis. ``createdNodes`` are removed again if the run fails or is cancelled."""
        from TotalFMLib.background import BackgroundJob

        created = list(createdNodes)
        try:
            ct, seg = self.caseVolumes(ctNode, segmentationInput)
        except Exception:
            _remove(created)
            raise
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
            _remove(run.createdNodes)
            if run.job.error is not None:
                raise run.job.error
            return None
        result = run.job.result
        for warning in result.warnings:
            self.log(warning)
        return self.showResults(run.ctNode, run.segmentationInput, result.rows, result.embeddings, tableNode)

    def showResults(self, ctNode, segmentationInput, rows, embeddings, tableNode=None, finding: str = ANY_LESION):
        from . import colouring, geometry, score_store, scores_table, segments

        scene = ctNode.GetScene()
        segmentationNode = segmentationInput
        if segmentationInput.IsA("vtkMRMLLabelMapVolumeNode"):
            # one segmentation per label map: a new run replaces the one the last run made
            for old in list(scene.GetNodesByClass("vtkMRMLSegmentationNode")):
                if old.GetAttribute(SOURCE_LABELMAP_ATTRIBUTE) == segmentationInput.GetID():
                    scene.RemoveNode(old)
            labelmap = geometry.volume_from_volume_node(segmentationInput)
            segmentationNode = segments.segmentation_from_labelmap(
                scene, labelmap, ctNode, segmentationInput.GetName() + " organs")
            segmentationNode.SetAttribute(SOURCE_LABELMAP_ATTRIBUTE, segmentationInput.GetID())
        legend = colouring.apply_scores(segmentationNode, rows, finding)
        tableNode = scores_table.scores_table(scene, rows, tableNode)
        segments.ensure_closed_surfaces(segmentationNode)
        score_store.store_embeddings(segmentationNode, embeddings, self._modelKey[0], self._model.model_id,
                                     self._model.checksum)
        return segmentationNode, tableNode, legend

    # ------------------------------------------------------ display and search
    @staticmethod
    def scoredFindings(segmentationNode) -> list:
        from . import score_store

        return score_store.row_findings(score_store.scored_rows(segmentationNode))

    @staticmethod
    def showFinding(segmentationNode, finding: str, dimBelowThreshold: bool = True):
        """Colour the organs by their scores for ``finding``; organs below their threshold are
        faint unless ``dimBelowThreshold`` is off."""
        from . import colouring, score_store

        dim = colouring.DIM_OPACITY if dimBelowThreshold else 1.0
        return colouring.apply_scores(segmentationNode, score_store.scored_rows(segmentationNode), finding,
                                      dim_opacity=dim)

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
        hits = self.rankOrgans(segmentationNode, query, topK, threshold)
        self.showHits(segmentationNode, hits, tableNode)
        return hits

    def rankOrgans(self, segmentationNode, query: str, topK=None, threshold=None):
        """The search's ranking alone (``search`` without the display)."""
        embeddings, model = self.sceneEmbeddings(segmentationNode)
        return model.search(embeddings, query, top_k=topK, threshold=threshold)

    @staticmethod
    def showHits(segmentationNode, hits, tableNode=None) -> None:
        """A search's matches highlighted, and listed first in the table."""
        from . import colouring, score_store, scores_table

        colouring.highlight(segmentationNode, hits)
        if tableNode is not None:
            order = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
            scores_table.scores_table(segmentationNode.GetScene(), score_store.scored_rows(segmentationNode),
                                      tableNode, order=order)

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
        """Centre every slice view of the scene on the organ's centre and aim every 3D camera
        at it: (R, A, S)."""
        from . import segments

        r, a, s = segments.organ_center_ras(segmentationNode, organ)
        scene = segmentationNode.GetScene()
        for sliceNode in list(scene.GetNodesByClass("vtkMRMLSliceNode")):
            sliceNode.JumpSliceByCentering(r, a, s)
        for camera in list(scene.GetNodesByClass("vtkMRMLCameraNode")):
            camera.SetFocalPoint(r, a, s)
        return r, a, s

    @staticmethod
    def exportCsv(segmentationNode, tableNode, path):
        from . import score_store, scores_table

        return scores_table.export_csv(score_store.scored_rows(segmentationNode), path, tableNode)
