"""The gateway's outermost middleware: every request counted and timed (Prometheus), and an exception
no route handled answered here as a problem (503 for a dependency outage, 500 otherwise) instead of
being re-raised, so the connection stays open and the metrics count it (see ``problems.unexpected``).

A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware("http")``) runs every
request through an extra task and an in-memory stream, a large share of a small request's cost.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardiosynth.gateway.metrics import LATENCY, REQUESTS
from cardiosynth.gateway.problems import unexpected

log = logging.getLogger(__name__)


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        responded = False

        def record(status: int) -> None:
            # Timed to the response's start (its headers): an event stream's long body is not latency.
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)

        async def observed(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
                record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception as exc:
            if responded:  # the answer is under way: nothing left to say but the log
                log.error("error after the response started", exc_info=exc)
                return
            response = unexpected(exc)
            record(response.status_code)
            await response(scope, receive, send)
