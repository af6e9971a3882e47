"""One reader's review in the browser: the case in a trame-slicer scene, and every step of the
workflow through ``TotalFMSlicerLib.workflow.CaseWorkflow``, the code the Slicer module's Logic
runs. What this file adds is only what a page needs: long steps on background jobs watched
from the server's event loop, and plain values for the page (``ReviewState``).

A session serves one reader (``serve.py`` starts one process per session when asked to serve
several), so its scene, uploads and marks are its own."""
from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from TotalFMLib.errors import Cancelled, TotalFMError
from TotalFMSlicerLib import geometry, score_store, scores_table, segments
from TotalFMSlicerLib.workflow import ANY_LESION, CaseWorkflow

from . import case_files

POLL_S = 0.1  # how often a running job's progress is passed to the page


@dataclass
class OrganRow:
    """One line of the page's organ table."""

    organ: str
    label: str
    score: float | None
    flagged: bool
    mark: str = ""
    matched: bool = False


@dataclass
class ReviewState:
    """What the page shows; ``TotalFMWeb.page`` binds each field to a trame state variable."""

    status: str = "Open a case to begin."
    error: str = ""
    busy: bool = False
    progress: int = 0
    case_name: str = ""
    scored: bool = False
    findings: list = field(default_factory=list)
    finding: str = ANY_LESION
    legend_title: str = ""
    legend_colors: list = field(default_factory=list)
    query: str = ""
    match_score: float = 2.0  # the search's match score; the model's own after scoring
    matched: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    current_organ: str = ""
    ct_window: str = "soft_tissue"


class Review(CaseWorkflow):
    """The reader's case and its review; ``publish`` is called with the changed fields of
    ``ReviewState`` whenever the page should update."""

    def __init__(self, scene, publish) -> None:
        super().__init__()
        self.scene = scene
        self.publish = publish
        self.state = ReviewState()
        self.ctNode = None
        self.segmentationNode = None
        self.tableNode = None
        self._job = None
        self._folder = Path(tempfile.mkdtemp(prefix="totalfm-review-"))  # private (0700), under $TMPDIR
        self._modelLock = threading.Lock()  # the model is warmed on a thread while the reader opens a case
        self.logCallback = lambda text: self._set(status=text)

    @property
    def folder(self) -> Path:
        """This session's private folder: uploads, exports and saved cases."""
        return self._folder

    def plain(self, text: str) -> str:
        """Messages name uploaded files by their place in the session, not the server's folders."""
        return text.replace(str(self.folder) + "/", "")

    def _set(self, **changes) -> None:
        for name, value in changes.items():
            setattr(self.state, name, value)
        self.publish(changes)

    def loadModel(self, source: str, device=None):
        with self._modelLock:
            return super().loadModel(source, device)

    def warm(self, source: str) -> threading.Thread:
        """Load the model on a thread now, so that the first Score does not wait for it (the
        released weights only when already downloaded; a failure is reported at Score)."""

        def load():
            try:
                if source != "official" or self.officialModelCached():
                    self.loadModel(source)
            except (TotalFMError, OSError):
                pass

        thread = threading.Thread(target=load, daemon=True, name="totalfm-warm")
        thread.start()
        return thread

    # ---------------------------------------------------------------- jobs
    def _start(self, work, finish, message: str) -> None:
        """Run ``work(progress, cancel)`` on a background job; ``finish(result)`` runs on the
        event loop afterwards. Errors and cancellation end up in the page, one line each."""
        from TotalFMLib.background import BackgroundJob

        self._check_idle()
        self._follow(BackgroundJob(work).start(), finish, message)

    def _check_idle(self) -> None:
        if self._job is not None and not self._job.done:
            raise TotalFMError("wait for the running step to finish, or cancel it")

    def _follow(self, job, finish, message: str) -> None:
        self._job = job
        self._set(busy=True, progress=0, status=message, error="")
        asyncio.get_event_loop().create_task(self._watch(job, finish))

    async def _watch(self, job, finish) -> None:
        from TotalFMLib.background import FINISHED

        while not job.done:
            await asyncio.sleep(POLL_S)
            updates = job.poll()
            if updates:
                fraction, message = updates[-1]
                self._set(progress=int(100 * fraction), status=message or self.state.status)
        self._settle(job, finish if job.state == FINISHED else None)

    def _settle(self, job, finish) -> None:
        try:
            if finish is not None:
                finish(job.result)
            elif isinstance(job.error, Cancelled) or job.error is None:
                self._set(status="Cancelled; nothing was changed.")
            else:
                raise job.error
        except (TotalFMError, OSError) as e:
            self._set(error=self.plain(str(e)), status="")
        except Exception as e:  # a defect: the page gets one line, the server's log the traceback
            logging.getLogger(__name__).exception("review step failed")
            self._set(error=f"unexpected error ({type(e).__name__}): {self.plain(str(e))}", status="")
        finally:
            self._set(busy=False, progress=0)

    def cancel(self) -> None:
        if self._job is not None and not self._job.done:
            self._job.cancel()
            self._set(status="Cancelling ...")

    # --------------------------------------------------------------- opening
    def open_case(self, ct, seg=None, name: str | None = None) -> None:
        """Read and check a CT with its segmentation (paths; without one, TotalSegmentator
        segments the CT when its inference is installed), then show it."""
        from TotalFMLib.pipeline import case_id_of, open_case

        name = name or case_id_of(ct)

        def work(progress, cancel):
            progress(0.0, f"Reading {name}")
            return open_case(ct, seg, log=lambda text: progress(0.1, text))

        self._start(work, lambda case: self._show_case(case, name), f"Opening {name} ...")

    def open_uploads(self, ct_files: list[Path], seg_files: list[Path]) -> None:
        """Open what the reader uploaded (already in this session's folder): checked as a case."""
        ct, seg = case_files.arrange_uploads(ct_files, seg_files, self.folder / "case")
        self.open_case(ct, seg, name=case_files.case_name(ct))

    def open_example(self) -> None:
        """The real example CT and its TotalSegmentator segmentation (``totalfm demo``'s case)."""
        from TotalFMLib.inputs.sample_data import fetch

        self.open_case(fetch("example_ct"), fetch("example_seg"), name="example_ct")

    def _clear_case(self) -> None:
        for node in (self.tableNode, self.segmentationNode, self.ctNode):
            if node is not None and node.GetScene() is not None:
                self.scene.RemoveNode(node)
        self.ctNode = self.segmentationNode = self.tableNode = None

    def _show_case(self, case, name: str) -> None:
        self._clear_case()
        self.ctNode = geometry.volume_node_from_volume(self.scene, case.ct, name)
        self.segmentationNode = segments.segmentation_from_labelmap(self.scene, case.seg, self.ctNode,
                                                                    name + " organs")
        self.segmentationNode.CreateDefaultDisplayNodes()
        segments.ensure_closed_surfaces(self.segmentationNode)
        self._set(case_name=name, scored=False, rows=[], findings=[], matched=[], current_organ="", query="",
                  legend_title="", legend_colors=[],
                  status=f"{name}: {len(segments.organ_segments(self.segmentationNode))} organs. "
                         "Choose a model and press Score.")
        for warning in case.warnings:
            self._set(status=warning)
        self.on_case_shown()

    def on_case_shown(self) -> None:
        """Hook for the page: the views show the new case."""

    def on_colours_changed(self) -> None:
        """Hook for the page: the organs' colours or opacities changed."""

    # --------------------------------------------------------------- scoring
    def score(self, source: str = "demo", device=None) -> None:
        if self.ctNode is None:
            raise TotalFMError("open a case first")
        self._check_idle()
        run = self.startScoring(self.ctNode, self.segmentationNode, source, device)
        self._follow(run.job, lambda result: self._show_scores(run), "Scoring ...")

    def _show_scores(self, run) -> None:
        shown = self.finishAnalysis(run, self.tableNode)
        if shown is None:
            return
        self.segmentationNode, self.tableNode, legend = shown
        findings = self.scoredFindings(self.segmentationNode)
        self._set(scored=True, findings=findings, finding=ANY_LESION, match_score=self.default_match_score(),
                  status=f"Scored {len(self.table_rows())} organs with {self._model.model_id}.")
        self._show_legend(legend)
        self._refresh_rows()
        self.rankOrgans(self.segmentationNode, "normal")  # the text side warmed up before the first query

    # --------------------------------------------------------------- display
    def show_finding(self, finding: str, dim_below: bool = True) -> None:
        legend = self.showFinding(self.segmentationNode, finding, dim_below)
        self._set(finding=finding, matched=[], query="")
        self._show_legend(legend)
        self._refresh_rows()

    def _show_legend(self, legend) -> None:
        self.on_colours_changed()
        colors = ["#%02x%02x%02x" % tuple(int(round(255 * c)) for c in rgb) for _value, rgb in legend.stops]
        self._set(legend_title=legend.title, legend_colors=colors)

    def set_window(self, name: str) -> None:
        """The CT's window: one of the crop recipe's (lung, soft_tissue, bone)."""
        from TotalFMLib.crops.ct_windows import window

        if self.ctNode is None:
            raise TotalFMError("open a case first")
        try:
            level, width = window(name)
        except KeyError as e:
            raise TotalFMError(str(e.args[0])) from None
        display = self.ctNode.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevel(width, level)
        self._set(ct_window=name)

    def restore(self) -> None:
        self.restoreColors(self.segmentationNode)
        self.on_colours_changed()
        self._set(legend_title="Original TotalSegmentator colours", legend_colors=[], matched=[])
        self._refresh_rows()

    def default_match_score(self) -> float:
        """The model's own match score (chosen so that meaningless queries match nothing), 2 for
        a model without one."""
        score = getattr(self._model.config, "match_score", None) if self._model is not None else None
        return round(float(score), 2) if score is not None else 2.0

    def find(self, query: str, match_score: float | None = None) -> list[str]:
        """Highlight the organs matching a typed finding (empty: back to the scores); the
        views are centred on the best match."""
        query = query.strip()
        if match_score is not None:
            self._set(match_score=float(match_score))
        if not query:
            self.show_finding(self.state.finding)
            return []
        hits = self.rankOrgans(self.segmentationNode, query, threshold=self.state.match_score)
        matched = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
        self._set(query=query, matched=matched, legend_title=f"Search: {query}", legend_colors=[],
                  rows=[vars(r) for r in self.table_rows(matched)])
        self.defer(lambda: self._show_hits(hits, matched))  # the table first, the views just after
        return matched

    def _show_hits(self, hits, matched: list[str]) -> None:
        self.showHits(self.segmentationNode, hits, self.tableNode)
        self.on_colours_changed()
        if matched and matched[0] != self.state.current_organ:
            self.select(matched[0])

    def defer(self, work) -> None:
        """Run display work after the page has its new values (the app runs it on the next turn
        of its event loop); here, at once."""
        work()

    # ---------------------------------------------------------------- review
    def table_rows(self, matched: list[str] | None = None) -> list[OrganRow]:
        """The table's organs in its order; with ``matched`` (a search's matches), in the order
        the scores table takes after that search (``scores_table.table_order``)."""
        from TotalFMLib.vocabulary import catalogue

        if self.tableNode is None:
            return []
        scored = score_store.scored_rows(self.segmentationNode)
        marks = scores_table.review_marks(self.tableNode)
        if matched is None:
            organs, matched = self.tableOrgans(self.tableNode), self.state.matched
        else:
            organs = scores_table.table_order(scored, matched)
        shown = {r.organ: r for r in scored if r.finding == self.state.finding}
        return [OrganRow(organ, catalogue.organ(organ).display_name,
                         None if organ not in shown else round(float(shown[organ].score), 4),
                         bool(organ in shown and shown[organ].flagged), marks.get(organ, ""), organ in matched)
                for organ in organs]

    def _refresh_rows(self) -> None:
        self._set(rows=[vars(r) for r in self.table_rows()])

    def select(self, organ: str) -> None:
        self.centerViewsOnOrgan(self.segmentationNode, organ)
        self._set(current_organ=organ)

    def step(self, delta: int) -> str:
        organs = self.tableOrgans(self.tableNode)
        if not organs:
            raise TotalFMError("score the case first")
        index = organs.index(self.state.current_organ) + delta if self.state.current_organ in organs else 0
        organ = organs[index % len(organs)]
        self.select(organ)
        return organ

    def mark(self, mark: str, organ: str | None = None) -> None:
        organ = organ or self.state.current_organ
        if not organ:
            raise TotalFMError("choose an organ in the table first")
        self.setReview(self.tableNode, organ, mark)
        self._refresh_rows()

    # ---------------------------------------------------------------- output
    def csv_bytes(self) -> bytes:
        """The scores CSV (the CLI's columns plus the review column)."""
        if self.tableNode is None:
            raise TotalFMError("score the case first")
        path = self.folder / f"{self.state.case_name}_scores.csv"
        self.exportCsv(self.segmentationNode, self.tableNode, path)
        return path.read_bytes()

    def save_bytes(self, io_manager) -> bytes:
        """The reviewed case as a Slicer scene bundle (.mrb): CT, organs with their scores and
        embeddings, the table with the marks; it opens here again and in 3D Slicer."""
        if self.tableNode is None:
            raise TotalFMError("score the case first")
        path = self.folder / f"{self.state.case_name}_review.mrb"
        path.unlink(missing_ok=True)
        if not io_manager.save_scene(path):
            raise TotalFMError(f"{path.name}: the scene could not be saved")
        return path.read_bytes()

    def reopen(self, bundle: Path, io_manager) -> None:
        """A saved review (.mrb), checked first (``case_files.check_bundle``)."""
        case_files.check_bundle(bundle)
        self._clear_case()
        self.scene.Clear(0)
        if not io_manager.load_scene(bundle):
            raise TotalFMError(f"{bundle.name}: not a scene this app can open")
        self.ctNode, self.segmentationNode, self.tableNode = case_files.review_nodes(self.scene, bundle)
        name = self.ctNode.GetName()
        self.sceneEmbeddings(self.segmentationNode)  # the model that scored it, loaded for search
        self._set(case_name=name, scored=True, findings=self.scoredFindings(self.segmentationNode),
                  finding=ANY_LESION, matched=[], query="", match_score=self.default_match_score(),
                  status=f"Reopened {name} from {bundle.name}.")
        self._show_legend(self.showFinding(self.segmentationNode, ANY_LESION))
        self._refresh_rows()
        self.on_case_shown()
