"""The dashboard's web server: one page served by the running runtime itself (Starlette on uvicorn, in a
thread of this process; live updates as server-sent events via sse-starlette; the page's script is
vendored in the package, nothing comes from a CDN).

Safe by default: it binds 127.0.0.1; any other address needs ``allow_remote=True``. Every request needs
the access token (the URL's ``?token=`` once, exchanged for an HttpOnly cookie); the Host header must
name the bound address (no DNS rebinding); each action is a POST carrying the CSRF token the page was
given. No view holds a key, and every JSON answer has the keys this process knows masked (dspex.scrub).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..scrub import scrub_text
from .state import DashboardState

STATIC = Path(__file__).with_name("static")
COOKIE = "dspex_dashboard"
QUEUE = 1000  # updates waiting for one page; a page that falls behind skips to a fresh snapshot


class DashboardApp:
    """The dashboard as an ASGI app (``.asgi``) to serve alone or mount in a service (e.g. under
    ``/_dspex``): ``hosts`` are the Host headers it answers (``host:port``), ``token`` the access token."""

    def __init__(self, rt: Any, hosts: set[str], runs_dir: str | Path | None = None) -> None:
        self.rt, self.hosts = rt, hosts
        self.token, self.csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.state = DashboardState(rt, Path(runs_dir) if runs_dir is not None else None)
        self.asgi = self._app()

    def close(self) -> None:
        self.state.close()

    # --- the app ----------------------------------------------------------------------------------------

    def _app(self) -> Any:
        from sse_starlette.sse import EventSourceResponse
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
        from starlette.responses import JSONResponse as _JSONResponse
        from starlette.routing import Route

        class JSONResponse(_JSONResponse):
            """Every answer of the API with the known keys masked (a past journal, a row's error text)."""

            def render(self, content: Any) -> bytes:
                return scrub_text(super().render(content).decode("utf-8")).encode("utf-8")

        state, dash = self.state, self

        def foreign_host(request: Request) -> Response | None:
            if request.headers.get("host", "") not in dash.hosts:  # no DNS rebinding
                return PlainTextResponse("unexpected Host header", status_code=421)
            return None

        def allowed(request: Request) -> Response | None:
            refused = foreign_host(request)
            if refused is not None:
                return refused
            cookie = request.cookies.get(COOKIE, "")
            if not hmac.compare_digest(cookie, dash.token):
                return PlainTextResponse("open the dashboard's URL with its token", status_code=403)
            return None

        def guarded(handler: Any, post: bool = False) -> Any:
            async def endpoint(request: Request) -> Response:
                refused = allowed(request)
                if refused is not None:
                    return refused
                if post and not hmac.compare_digest(request.headers.get("x-csrf-token", ""), dash.csrf):
                    return PlainTextResponse("missing or wrong CSRF token", status_code=403)
                return await handler(request)

            return endpoint

        async def index(request: Request) -> Response:
            token = request.query_params.get("token")
            if token is not None:  # the URL's token, once: a cookie from now on, and a URL without it
                refused = foreign_host(request)
                if refused is not None:
                    return refused
                if not hmac.compare_digest(token, dash.token):
                    return PlainTextResponse("wrong token", status_code=403)
                response = RedirectResponse(request.url.path, status_code=303)
                response.set_cookie(COOKIE, dash.token, httponly=True, samesite="strict")
                return response
            refused = allowed(request)
            if refused is not None:
                return refused
            page = (STATIC / "index.html").read_text().replace("{{csrf}}", dash.csrf)
            return Response(page, media_type="text/html", headers={"Cache-Control": "no-store",
                                                                     "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'"})

        async def script(request: Request) -> Response:
            return FileResponse(STATIC / "app.js", media_type="text/javascript")

        async def style(request: Request) -> Response:
            return FileResponse(STATIC / "app.css", media_type="text/css")

        async def snapshot(request: Request) -> Response:
            return JSONResponse(await asyncio.to_thread(state.snapshot))

        async def nodes(request: Request) -> Response:
            return JSONResponse(await asyncio.to_thread(state.nodes))

        async def rows(request: Request) -> Response:
            return JSONResponse(state.run_rows(request.path_params["run"]))

        async def row(request: Request) -> Response:
            found = state.row(request.path_params["run"], int(request.path_params["index"]))
            return JSONResponse(found) if found is not None else JSONResponse({"error": "no such row"}, 404)

        async def past(request: Request) -> Response:
            return JSONResponse(await asyncio.to_thread(state.past_runs))

        async def past_one(request: Request) -> Response:
            found = await asyncio.to_thread(state.past_run, request.path_params["name"])
            return JSONResponse(found) if found is not None else JSONResponse({"error": "no such run"}, 404)

        async def cancel(request: Request) -> Response:
            run = request.path_params["run"]
            dash.rt.cancel_run(run)
            return JSONResponse({"cancelled": run})

        async def reset(request: Request) -> Response:
            from ..clients.messages import ResetBreaker

            wanted = request.path_params["client"]
            for info in await asyncio.to_thread(dash.rt.clients.which_children):
                if info.id == wanted and info.ref is not None:
                    await asyncio.to_thread(info.ref.call, ResetBreaker(), 5.0)
                    return JSONResponse({"reset": wanted})
            return JSONResponse({"error": "no such client"}, 404)

        async def events(request: Request) -> Response:
            queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE)
            loop = asyncio.get_running_loop()

            def push(update: dict) -> None:
                def put() -> None:
                    if queue.full():  # a page that falls behind reloads its snapshot instead of growing memory
                        while not queue.empty():
                            queue.get_nowait()
                        queue.put_nowait({"type": "resync"})
                    else:
                        queue.put_nowait(update)

                loop.call_soon_threadsafe(put)

            stop = state.listen(push)

            async def stream() -> Any:
                import json

                try:
                    while True:
                        update = await queue.get()
                        yield {"event": "update", "data": scrub_text(json.dumps(update))}
                finally:
                    stop()

            return EventSourceResponse(stream(), ping=15)

        routes = [Route("/", index), Route("/app.js", guarded(script)), Route("/app.css", guarded(style)), Route("/api/state", guarded(snapshot)),
                  Route("/api/nodes", guarded(nodes)),
                  Route("/api/runs/{run}/rows", guarded(rows)), Route("/api/runs/{run}/rows/{index:int}", guarded(row)),
                  Route("/api/past", guarded(past)), Route("/api/past/{name:path}", guarded(past_one)),
                  Route("/api/runs/{run}/cancel", guarded(cancel, post=True), methods=["POST"]),
                  Route("/api/clients/{client:path}/reset", guarded(reset, post=True), methods=["POST"]),
                  Route("/events", guarded(events))]
        return Starlette(routes=routes)


class Dashboard:
    """A running dashboard: ``url`` (with the access token), ``close()``; also closed with its runtime."""

    def __init__(self, rt: Any, host: str = "127.0.0.1", port: int = 0, runs_dir: str | Path | None = None,
                 allow_remote: bool = False) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback and not allow_remote:
            raise ConfigError(f"the dashboard binds 127.0.0.1 by default; to bind {host} pass allow_remote=True "
                              "(anyone who reaches it with the token can cancel runs)")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be an int in 0..65535, got {port!r}")
        import uvicorn

        self.host = host
        self.app = DashboardApp(rt, set(), runs_dir)
        config = uvicorn.Config(self.app.asgi, host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="dspex-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.app.close()
            raise ConfigError(f"the dashboard could not listen on {host}:{port} (in use? see the log above)")
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.app.hosts.update({f"{host}:{self.port}", f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
                              if loopback else {f"{host}:{self.port}"})

    @property
    def token(self) -> str:
        return self.app.token

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/?token={self.app.token}"

    def close(self) -> None:
        """Stop serving (open pages see the stream end). Idempotent."""
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self.app.close()

    def __enter__(self) -> "Dashboard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Dashboard http://{self.host}:{self.port}/>"  # never the token


__all__ = ["Dashboard", "DashboardApp"]
