"""``totalfm serve`` and ``python -m TotalFMWeb``: the review app in the browser.

One process serves one reader by default, on 127.0.0.1, with the model loaded at start. With
``--sessions N`` the process is a front door instead (``launcher.py``): each browser gets its
own review process, so readers never share a scene, an upload folder or marks."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    model: str = "demo"
    device: str | None = None
    max_upload_mb: int = 2048
    local_paths: bool = True
    ct: str | None = None
    seg: str | None = None
    idle_exit: int = 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="totalfm serve",
        description="Review CTs in the browser: open a case, score it, colour organs by finding, search, "
                    "step through the organs, mark them, export CSV, save the review.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only). Any other address "
                        "needs --token")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    p.add_argument("--token", help="access token readers must show (?token=... once); required beyond "
                                   "loopback, also read from $TOTALFM_SERVE_TOKEN")
    p.add_argument("--model", default="demo",
                   help="model loaded at start: demo (default), official or a checkpoint file; the page can "
                        "choose another")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the GPU where there is one)")
    p.add_argument("--sessions", type=int, default=0, metavar="N",
                   help="serve up to N readers at once, each in its own process (default: one reader, "
                        "this process)")
    p.add_argument("--max-upload-mb", type=int, default=2048, metavar="MB",
                   help="largest upload accepted, in MB (default 2048)")
    p.add_argument("--ct", help="open this CT (file or DICOM folder) at start")
    p.add_argument("--seg", help="with this segmentation (label map, mask folder or .seg.nrrd)")
    p.add_argument("--idle-exit", type=int, default=0, metavar="S",
                   help="stop S seconds after the last page was closed (default 0: keep running); the "
                        "sessions of --sessions use 300")
    return p


def settings_from(args) -> Settings:
    from . import access

    token = access.listen_token(args.host, args.token)
    return Settings(host=args.host, port=args.port, token=token, model=args.model, device=args.device,
                    max_upload_mb=args.max_upload_mb, local_paths=access.is_loopback(args.host),
                    ct=args.ct, seg=args.seg, idle_exit=args.idle_exit)


def serve(settings: Settings, ready=None) -> None:
    """Run one review session until it is stopped (blocking)."""
    from trame.app import get_server

    from .app import ReviewApp

    server = get_server(name=None, client_type="vue3")
    parse = server.cli.parse_known_args
    server.cli.parse_known_args = lambda *a, **k: parse([])  # trame reads our options, not sys.argv
    app = ReviewApp(server, settings)
    app.review.warm(settings.model)
    server.state.model_choice = settings.model if settings.model in ("demo", "official") else "checkpoint"
    server.state.checkpoint_path = "" if settings.model in ("demo", "official") else settings.model
    if settings.ct:
        server.controller.on_server_ready.add(lambda **_: app._guarded(app.review.open_case)(
            Path(settings.ct), Path(settings.seg) if settings.seg else None))
    if ready is not None:
        server.controller.on_server_ready.add(lambda **_: ready(server))
    server.start(host=settings.host, port=settings.port, open_browser=False, show_connection_info=False,
                 timeout=settings.idle_exit)


def address(settings: Settings, port: int) -> str:
    url = f"http://{settings.host}:{port}/"
    return url + (f"?token={settings.token}" if settings.token else "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as e:
        print(f"totalfm serve: error: {e}", file=sys.stderr)
        return 2
    try:
        if args.sessions:
            from .launcher import run_launcher

            return run_launcher(settings, args.sessions)
        serve(settings, ready=lambda server: print(f"TotalFM review: open {address(settings, server.port)}",
                                                   flush=True))
    except KeyboardInterrupt:
        pass
    return 0
