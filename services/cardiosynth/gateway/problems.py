"""Errors as ``application/problem+json`` (RFC 9457); the API never answers a bare 500."""

from __future__ import annotations

import logging
import sqlite3
from http import HTTPStatus
from typing import Any

import kombu.exceptions
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardiosynth.storage.base import StorageError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,  # the Celery broker refused or is gone
    StorageError,
    sqlite3.OperationalError,  # the embedded job store: locked, unreadable or on a full disk
    ConnectionError,
    TimeoutError,
)


class ProblemError(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem(
    status: int, detail: str | None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def unexpected(exc: BaseException) -> JSONResponse:
    """The answer to an exception no route handled: 503 for a dependency outage, 500 otherwise.

    Called from the gateway's outermost middleware, which *returns* this response. An exception
    left to Starlette's ``ServerErrorMiddleware`` is answered and then re-raised, and the server
    closes the connection: clients saw no HTTP answer at all during a broker outage.
    """
    if isinstance(exc, UNAVAILABLE):
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return problem(503, "a backing service (broker, job store or storage) is unavailable",
                       {"Retry-After": "5"})  # fmt: skip
    log.error("unexpected error", exc_info=exc)
    return problem(500, "internal error")


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    # Last resort only: the middleware in ``app.py`` answers unexpected exceptions itself (see
    # :func:`unexpected`); this handler covers an exception raised by a middleware outside it.
    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected(exc)
