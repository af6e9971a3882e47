"""Several readers on one server (``totalfm serve --sessions N``): a front door that gives each
browser its own review process and passes its requests and its websocket through.

Each session is a ``python -m TotalFMWeb`` process on a free loopback port with its own random
token (so no other local user can reach it directly), its own scene, upload folder, model and
marks. A browser is tied to its session by a cookie; a session ends when its process exits
(``--idle-exit`` seconds after its page was closed), and at most N run at once. The front
door itself applies the access token when it listens beyond loopback."""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
from dataclasses import dataclass

from . import access

SESSION_COOKIE = "totalfm_session"
START_TIMEOUT_S = 180
IDLE_EXIT_S = 300
HOP_HEADERS = {"host", "connection", "upgrade", "keep-alive", "transfer-encoding", "content-length",
               "proxy-connection", "te", "trailer", "cookie"}


@dataclass
class Session:
    process: asyncio.subprocess.Process
    port: int
    token: str

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launcher:
    def __init__(self, settings, limit: int) -> None:
        self.settings = settings
        self.limit = limit
        self.sessions: dict[str, Session] = {}
        self._starting = asyncio.Lock()

    # ------------------------------------------------------------ sessions
    def live(self) -> dict[str, Session]:
        self.sessions = {k: s for k, s in self.sessions.items() if s.alive}
        return self.sessions

    async def start_session(self) -> tuple[str, Session]:
        async with self._starting:
            if len(self.live()) >= self.limit:
                raise RuntimeError(f"all {self.limit} reader sessions of this server are in use; "
                                   "try again when a reader has closed their page")
            port, token = free_port(), access.new_token()
            s = self.settings
            argv = [sys.executable, "-m", "TotalFMWeb", "--host", "127.0.0.1", "--port", str(port),
                    "--model", s.model, "--max-upload-mb", str(s.max_upload_mb), "--idle-exit", str(IDLE_EXIT_S)]
            if s.device:
                argv += ["--device", s.device]
            env = {**os.environ, access.TOKEN_ENV: token}
            process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.DEVNULL)
            try:
                await asyncio.wait_for(self._ready(process), START_TIMEOUT_S)
            except BaseException:
                process.kill()
                raise
            key = secrets.token_urlsafe(18)
            self.sessions[key] = Session(process, port, token)
            return key, self.sessions[key]

    @staticmethod
    async def _ready(process) -> None:
        while True:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError("a review session failed to start")
            if line.startswith(b"TotalFM review: open"):
                asyncio.get_event_loop().create_task(process.stdout.read())  # keep draining its output
                return

    async def stop_all(self, _app=None) -> None:
        for session in self.sessions.values():
            if session.alive:
                session.process.terminate()
        for session in self.sessions.values():
            await session.process.wait()

    # --------------------------------------------------------------- proxy
    async def handle(self, request):
        from aiohttp import web

        key = request.cookies.get(SESSION_COOKIE)
        session = self.live().get(key)
        new = session is None
        if new:
            if request.path != "/":  # assets or a websocket of a session that has ended
                return web.Response(status=410, text="this review session has ended; open the address again")
            try:
                key, session = await self.start_session()
            except RuntimeError as e:
                return web.Response(status=503, text=str(e))
        import aiohttp

        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                response = await self._websocket(request, session)
            else:
                response = await self._http(request, session)
        except aiohttp.ClientError:
            return web.Response(status=502, text="this review session stopped; open the address again")
        if new:
            response.set_cookie(SESSION_COOKIE, key, httponly=True, samesite="Strict")
        return response

    @staticmethod
    def _headers(request, session: Session) -> dict:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["Cookie"] = f"{access.COOKIE}={session.token}"
        return headers

    async def _http(self, request, session: Session):
        import aiohttp
        from aiohttp import web

        url = f"http://127.0.0.1:{session.port}{request.rel_url.path}"
        query = [(k, v) for k, v in request.query.items() if k != "token"]
        async with aiohttp.ClientSession(auto_decompress=False) as client:
            async with client.request(request.method, url, params=query, headers=self._headers(request, session),
                                      data=request.content if request.body_exists else None,
                                      allow_redirects=False) as reply:
                body = await reply.read()
                headers = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_HEADERS | {"set-cookie"}}
                return web.Response(status=reply.status, body=body, headers=headers)

    async def _websocket(self, request, session: Session):
        import aiohttp
        from aiohttp import web

        browser = web.WebSocketResponse(max_msg_size=0)
        await browser.prepare(request)
        url = f"ws://127.0.0.1:{session.port}{request.rel_url.path}"
        async with aiohttp.ClientSession() as client:
            async with client.ws_connect(url, headers={"Cookie": f"{access.COOKIE}={session.token}"},
                                         max_msg_size=0) as worker:

                async def pump(source, sink):
                    async for message in source:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            await sink.send_str(message.data)
                        elif message.type == aiohttp.WSMsgType.BINARY:
                            await sink.send_bytes(message.data)
                        else:
                            break

                tasks = [asyncio.ensure_future(pump(browser, worker)), asyncio.ensure_future(pump(worker, browser))]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()
        await browser.close()
        return browser


def run_launcher(settings, limit: int) -> int:
    from aiohttp import web

    launcher = Launcher(settings, limit)
    middlewares = [access.middleware(settings.token)] if settings.token else []
    app = web.Application(middlewares=middlewares, client_max_size=(settings.max_upload_mb + 16) * 1_000_000)
    app.router.add_route("*", "/{tail:.*}", launcher.handle)
    app.on_shutdown.append(launcher.stop_all)
    token = f"?token={settings.token}" if settings.token else ""

    async def announce(_app):
        print(f"TotalFM review ({limit} sessions): open http://{settings.host}:{settings.port}/{token}", flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host=settings.host, port=settings.port, print=None)
    return 0
