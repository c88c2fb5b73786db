"""A small Starlette service with dspex inside: the actor runtime starts with the app and stops in order
with it; ``POST /predict`` answers through a compiled program loaded from JSON; the dashboard is mounted
under ``/_dspex``. Provider trouble is an HTTP answer a client can act on, never a 500 with a traceback:
a rate limit is 429 and an open breaker 503, both with ``Retry-After``.

    python examples/service/app.py --program compiled.json --model openai/gpt-4o-mini [--port 8000]
    curl -s localhost:8000/predict -d '{"question": "What is OTP?"}'
"""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

import dspex
from dspex.dashboard import DashboardApp

class Late:
    """An ASGI app that exists once the runtime has started (the dashboard is built at startup)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.app is None:
            await PlainTextResponse("starting", status_code=503)(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def error_response(exc: dspex.DspexError) -> Response:
    """A typed dspex error as the HTTP answer a client can act on."""
    match exc:
        case dspex.RateLimited():
            wait = exc.retry_after if exc.retry_after is not None else 1.0
            return JSONResponse({"error": "rate_limited", "detail": str(exc)[:300]}, 429,
                                headers={"Retry-After": str(max(1, math.ceil(wait)))})
        case dspex.CircuitOpen():
            return JSONResponse({"error": "provider_unavailable", "detail": str(exc)[:300]}, 503,
                                headers={"Retry-After": str(max(1, math.ceil(exc.retry_in)))})
        case dspex.BudgetExceeded():
            return JSONResponse({"error": "budget_spent", "detail": str(exc)[:300]}, 503)
        case dspex.LMTimeout():
            return JSONResponse({"error": "provider_timeout", "detail": str(exc)[:300]}, 504)
        case dspex.LMError():
            return JSONResponse({"error": "provider_error", "detail": str(exc)[:300]}, 502,
                                headers={"Retry-After": "1"})
        case dspex.AdapterParseError():
            return JSONResponse({"error": "unparseable_answer", "detail": str(exc)[:300]}, 502)
        case _:
            return JSONResponse({"error": type(exc).__name__, "detail": str(exc)[:300]}, 400)


def create_app(program_path: str, model: str, base_url: str | None = None, port: int = 8000,
               api_key: str | None = None, **lm_options: Any) -> Starlette:
    board = Late()
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        rt = app.state.runtime = dspex.runtime("local", log_level="warning").start()
        dashboard = None
        try:
            # a user is waiting: an open breaker is a 503 at once, not up to a minute in the breaker's line
            lm_options.setdefault("breaker", dspex.Breaker(max_wait=0))
            lm = dspex.LM(model, base_url=base_url, api_key=api_key, **lm_options)
            holder["program"] = dspex.load(program_path, lm=lm)
            dashboard = DashboardApp(rt, {f"127.0.0.1:{port}", f"localhost:{port}"})
            board.app = dashboard.asgi
            app.state.dashboard_url = f"http://127.0.0.1:{port}/_dspex/?token={dashboard.token}"
            print(f"dashboard: {app.state.dashboard_url}", file=sys.stderr)
            yield
        finally:
            board.app = None
            if dashboard is not None:
                dashboard.close()
            rt.close()  # the client actors, then the runtime: in order

    async def predict(request: Request) -> Response:
        try:
            inputs = await request.json()
        except ValueError:
            return JSONResponse({"error": "bad_request", "detail": "the body must be a JSON object of inputs"}, 400)
        if not isinstance(inputs, dict):
            return JSONResponse({"error": "bad_request", "detail": "the body must be a JSON object of inputs"}, 400)
        try:
            pred = await run_in_threadpool(lambda: holder["program"](**inputs))
        except dspex.DspexError as exc:
            return error_response(exc)
        except TypeError as exc:  # wrong input names
            return JSONResponse({"error": "bad_request", "detail": str(exc)[:300]}, 400)
        return JSONResponse({"outputs": dict(pred.items()), "usage": [pred.usage.prompt_tokens,
                                                                      pred.usage.completion_tokens], "cost": pred.cost})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Mount("/_dspex", app=board)],
                     lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--base-url")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.program, args.model, args.base_url, args.port), host="127.0.0.1", port=args.port,
                log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
