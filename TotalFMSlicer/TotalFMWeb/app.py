"""The review app of one session: a trame server with trame-slicer's scene and views, the page,
and the page's triggers wired to ``review.Review`` (the shared workflow)."""
from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path

from TotalFMLib.errors import TotalFMError

from . import access, page
from .review import Review
from .uploads import UploadRefused, Uploads

WWW = Path(__file__).resolve().parent / "www"
LAYOUT = "Quad View"
FAINT = 0.45  # brightness of a faint organ's outline in the slice views
OUTLINE_PX = 2


def quiet_vtk() -> None:
    """VTK's warnings (a render window's, on a machine without a screen) stay out of the console."""
    import vtk

    window = vtk.vtkFileOutputWindow()
    window.SetFileName(os.devnull)
    vtk.vtkOutputWindow.SetInstance(window)
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)


class ReviewApp:
    def __init__(self, server, settings) -> None:
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        self.server = server
        self.settings = settings
        self.slicer = SlicerApp()
        quiet_vtk()  # after SlicerApp, which sends VTK's warnings to the console
        register_rca_factories(self.slicer.view_manager, server)
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layout_manager.set_layout(LAYOUT)
        self.review = Review(self.slicer.scene, self.publish)
        self.review.on_case_shown = self.show_views
        self.review.on_colours_changed = self.outline_slices
        self.review.defer = self.defer
        self.uploads = Uploads(self.review.folder, settings.max_upload_mb * 1_000_000)
        server.enable_module({"serve": {"totalfm": str(WWW)}, "scripts": ["totalfm/totalfm.js"]})
        server.state.trame__title = "TotalFM review"
        server.state.local_paths = settings.local_paths
        self.publish(vars(self.review.state))
        page.build(server, self.layout_manager)
        self._wire()
        server.controller.on_server_bind.add(self._bind)

    # ------------------------------------------------------------ state
    def publish(self, changes: dict) -> None:
        with self.server.state as state:
            for name, value in changes.items():
                state[name] = value

    def show_views(self) -> None:
        display = self.slicer.display_manager
        display.show_volume_in_slice_background(self.review.ctNode)
        display.reset_views()
        self.outline_slices()

    def outline_slices(self) -> None:
        """Organs in the slice views as outlines: in their colours, the faint ones (below
        threshold, or not matched by a search) darkened. This software-rendered stack (the slice
        views of slicer-core 5.11 on Mesa) does not blend translucent segments over the CT: a
        faint fill came out nearly black, a full one hid the CT. The 3D view keeps the workflow's
        opacities (faint organs hardly show there)."""
        from TotalFMSlicerLib.colouring import modifying

        node = self.review.segmentationNode
        if node is None:
            return
        segmentation = node.GetSegmentation()
        with modifying(node) as display:
            display.SetSliceIntersectionThickness(OUTLINE_PX)
            for sid in segmentation.GetSegmentIDs():
                display.SetSegmentVisibility2DFill(sid, False)
                display.SetSegmentVisibility2DOutline(sid, True)
                display.SetSegmentOpacity2DOutline(sid, 1.0)
                if display.GetSegmentOpacity3D(sid) < 1.0:
                    segment = segmentation.GetSegment(sid)
                    segment.SetColor(*(FAINT * c for c in segment.GetColor()))

    def defer(self, work) -> None:
        """Display work on the next turn of the event loop, after the page's values went out."""
        asyncio.get_event_loop().call_later(0.01, lambda: self._guarded(self._published(work))())

    def _published(self, work):
        def run():
            with self.server.state:
                work()
        return run

    def rerender(self) -> None:
        """Render every view now (the browser tests call it before a capture)."""
        for view in self.slicer.view_manager.get_views():
            view.render()

    # --------------------------------------------------------- triggers
    def _wire(self) -> None:
        state, review = self.server.state, self.review
        handlers = {
            "open_example": review.open_example,
            "open_uploads": lambda: review.open_uploads(self.uploads.latest.get("ct", []),
                                                        self.uploads.latest.get("seg", [])),
            "open_paths": self._open_paths,
            "score": self._score,
            "cancel": review.cancel,
            "show_finding": lambda finding: review.show_finding(finding, state.dim_below),
            "restore": review.restore,
            "window": review.set_window,
            "find": review.find,
            "select": review.select,
            "step": review.step,
            "mark": review.mark,
            "export_csv": lambda: review.csv_bytes().decode("utf-8"),
            "save_review": lambda: review.save_bytes(self.slicer.io_manager),
            "rerender": self.rerender,
        }
        for name, handler in handlers.items():
            self.server.trigger(name)(self._guarded(handler))

        @state.change("query_input")
        def _on_query(query_input, **_):
            if review.state.scored:
                self._guarded(review.find)(query_input or "", state.match_score)

    def _guarded(self, handler):
        """A trigger's errors become the page's one-line error, never a traceback in the page."""

        @functools.wraps(handler)
        def run(*args):
            try:
                return handler(*args)
            except (TotalFMError, UploadRefused, OSError, ValueError) as e:
                self.publish({"error": self.review.plain(str(e)), "busy": bool(self.review.state.busy)})
                return None

        return run

    def _open_paths(self) -> None:
        if not self.settings.local_paths:
            raise TotalFMError("opening server paths is only offered on a loopback server")
        state = self.server.state
        self.review.open_case(Path(state.ct_path).expanduser(),
                              Path(state.seg_path).expanduser() if state.seg_path else None)

    def _score(self, consented: bool = False) -> None:
        state = self.server.state
        source = self.review.modelSource(state.model_choice, state.checkpoint_path)
        if source == "official" and not self.review.officialModelCached() and not consented:
            from TotalFMLib.models import hub

            self.publish({"consent_open": True,
                          "consent_text": f"Download the released TotalFM weights (more than 1 GB) from "
                                          f"{hub.OFFICIAL_URL}? The authors release them for research purposes "
                                          f"only; they are kept in {hub.model_cache_dir()}."})
            return
        self.review.score(source, self.settings.device)

    # ----------------------------------------------------------- HTTP
    def _bind(self, wslink_server) -> None:
        """The access check in front of every request, and the upload route."""
        app = wslink_server.app
        if self.settings.token:
            app.middlewares.append(access.middleware(self.settings.token))
        app.router.add_post("/upload", self._upload)

    async def _upload(self, request):
        from aiohttp import web

        kind = request.query.get("kind", "")
        try:
            files = await self.uploads.receive(request, kind)
            size = sum(f.stat().st_size for f in files)
            text = f"{len(files)} file{'s' if len(files) > 1 else ''} received ({size / 1e6:.1f} MB)"
            if kind == "review":
                self._guarded(self.review.reopen)(files[0], self.slicer.io_manager)
                text = f"{files[0].name}: opened" if not self.server.state.error else self.server.state.error
            return web.Response(text=text)
        except UploadRefused as e:
            self.publish({"error": str(e)})
            return web.Response(status=413, text=str(e))
