"""Request body size limit: 413 before the body is parsed or stored.

Without it a single request could carry megabytes of text into a job record (and into every error
message and listing that echoes the request). The check is an ASGI middleware so that it also
holds for chunked uploads that announce no ``Content-Length``.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardiosynth.gateway.problems import problem


class BodyLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413 (problem+json)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await problem(413, self._detail())(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            # A body streamed without (or beyond) its Content-Length is counted as it arrives; the
            # HTTPException surfaces through FastAPI's body reading as a 413 problem.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited, send)
