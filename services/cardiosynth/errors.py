"""What a failed job may tell its caller: the reason, never the service's insides.

A job's error is shown to API clients, who must not learn server paths, internal endpoints or
tracebacks. Bad input (``ValueError`` from the engine's validation) keeps its message, with any
absolute path or URL replaced; every other exception becomes a generic message naming only its
type, and the full text goes to the worker's log.
"""

from __future__ import annotations

import re

# Absolute POSIX or Windows paths, and URLs with a scheme (s3://, http://host:port/...).
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|/)(?:[^\s'\":,]+[/\\])*[^\s'\":,]*")
MAX_DETAIL = 500


def redact(text: str) -> str:
    """``text`` with URLs and absolute paths replaced by ``<url>`` and ``<path>``, and bounded."""
    out = _PATH.sub("<path>", _URL.sub("<url>", text))
    return out if len(out) <= MAX_DETAIL else out[: MAX_DETAIL - 3] + "..."


def public_detail(exc: BaseException) -> str:
    """The detail a client may see for ``exc`` (see the module docstring)."""
    if isinstance(exc, ValueError):
        return redact(str(exc))
    return f"internal error ({type(exc).__name__}); the operator's worker log has the details"
