"""Entity tags of JSON answers, so that a poller whose copy is current gets a bodiless 304.

The tag is a strong hash of the exact body bytes: whatever changes in the answer (state, progress,
queue position, an error) changes the tag, and nothing else does. No version field in the job store
is needed, so the Redis and the SQLite store behave alike.
"""

from __future__ import annotations

import hashlib

from fastapi import Response

# Shared caches must not keep a job's answer (it belongs to one key), and a client that keeps it must
# revalidate it each time: with If-None-Match that costs a 304.
CACHE_CONTROL = "private, no-cache"


def etag_of(body: bytes) -> str:
    """The strong entity tag (quoted, as the header carries it) of a response body."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (RFC 9110 13.1.2: weak comparison, so a
    ``W/`` prefix that a proxy added still matches; ``*`` matches any current representation)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def conditional_json(body: bytes, if_none_match: str | None) -> Response:
    """``body`` as a 200 JSON answer with its ETag, or a 304 with no body when the client has it."""
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "X-API-Key, Authorization"}
    if matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)
