"""A job as Server-Sent Events (``GET /jobs/{id}/events``), and a parser of such a stream for clients.

The stream is built by polling the job store (one cheap read per ``poll_s``), never by a broker
subscription: the Redis and the embedded SQLite store serve it alike, and nothing has to publish.

- One event per change of the job's answer (state, progress, queue position, error): ``data`` is the
  same JSON as ``GET /jobs/{id}``; ``id`` is the job's version, the microseconds of its ``updated``
  stamp (which every state and progress write sets), raised where needed so that the ids one client
  sees always grow.
- It ends after the event of a terminal state. ``Last-Event-ID`` resumes: the snapshot the client
  already holds (same version) is not sent again; a job that ended in that very version answers 204,
  which tells an ``EventSource`` to stop reconnecting.
- A comment line every ``heartbeat_s`` while nothing changes keeps proxies from closing it, and the
  stream ends after ``max_s`` (the client reconnects with ``Last-Event-ID``), so no connection is
  held forever by a job that never moves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
HEARTBEAT = b": keep-alive\n\n"
MEDIA_TYPE = "text/event-stream"


@dataclass(frozen=True)
class Snapshot:
    """What one read of the job gives the stream: the answer's bytes, its version and its state."""

    body: bytes
    version: int
    state: str


@dataclass(frozen=True)
class StreamLimits:
    poll_s: float = 0.5
    heartbeat_s: float = 15.0
    max_s: float = 3600.0
    retry_ms: int = 2000  # how long an EventSource waits before it reconnects

    def __post_init__(self) -> None:
        if self.poll_s <= 0 or self.heartbeat_s <= 0 or self.max_s <= 0 or self.retry_ms < 0:
            raise ValueError(f"stream limits must be positive, got {self}")


def version_of(updated: float) -> int:
    """A job's version: the microseconds of its ``updated`` stamp."""
    return round(updated * 1_000_000)


def parse_last_event_id(value: str | None) -> int | None:
    """The ``Last-Event-ID`` header as a version; ``None`` (start afresh) when absent or not ours."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() and len(text) <= 20 else None


def frame(event_id: int, data: bytes) -> bytes:
    """One event. ``data`` is compact JSON, so it holds no newline (JSON escapes them in strings)."""
    if b"\n" in data or b"\r" in data:
        raise ValueError(f"event data must be one line, got {data[:80]!r}")
    return b"id: %d\ndata: %s\n\n" % (event_id, data)


async def job_events(
    read: Callable[[], Awaitable[Snapshot | None]],
    *,
    last_id: int | None,
    limits: StreamLimits,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[bytes]:
    """The stream's bytes: ``read()`` (``None`` once the job is gone) every ``limits.poll_s``."""
    yield b"retry: %d\n\n" % limits.retry_ms
    started = quiet_since = clock()
    sent_id, sent_body = last_id or 0, b""
    first = True
    while True:
        try:
            snap = await read()
        except Exception as exc:  # the store went away: end it; the reconnect gets a 503 or the job
            log.warning("event stream: reading the job failed (%s): stream ended", type(exc).__name__)
            return
        if snap is None:
            yield b": the job is gone\n\n"
            return
        if first and last_id is not None and snap.version == last_id:
            sent_body = snap.body  # the client holds this version: nothing to send
        elif snap.body != sent_body:
            sent_id = max(snap.version, sent_id + 1)
            sent_body = snap.body
            yield frame(sent_id, snap.body)
            quiet_since = clock()
        first = False
        if snap.state in TERMINAL_STATES:
            return
        now = clock()
        if now - started >= limits.max_s:
            return
        if now - quiet_since >= limits.heartbeat_s:
            yield HEARTBEAT
            quiet_since = now
        await sleep(limits.poll_s)


@dataclass(frozen=True)
class Event:
    id: str | None
    event: str
    data: str


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events of an SSE stream given line by line (line ends stripped or not), as the HTML standard
    parses them: comments skipped, ``data`` lines joined, dispatched at a blank line."""
    data: list[str] = []
    event_id: str | None = None
    name = "message"
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Event(event_id, name, "\n".join(data))
            data, name = [], "message"
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
        elif field == "event":
            name = value
