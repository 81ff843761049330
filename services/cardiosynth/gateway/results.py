"""A succeeded job's files as pages (``GET /jobs/{id}/results?cursor=&limit=``) and as one manifest
(``GET /jobs/{id}/manifest``): every key with its size and SHA-256.

Pages list the files in key order (stable: a succeeded job's files never change). The cursor is
opaque to clients: the job and the last key of the page before, base64url-encoded, so a page
boundary does not move when a page size changes and a cursor of another job is refused.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cardiosynth.gateway.schemas import FILE_EXAMPLE, FileOut, ResultsOut

# Every job the API accepted before pagination (n x trajectory <= 200: at most about 1,000 files)
# fits in one default page, so a client that never pages still gets every file.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 1000


def encode_cursor(job_id: str, last_key: str) -> str:
    raw = json.dumps([job_id, last_key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, job_id: str) -> str:
    """The last key of the page before; ``ValueError`` naming the cursor when it is not one of
    ``job_id``'s."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        owner, last_key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:  # JSONDecodeError and bad unpacking too
        raise ValueError(f"cursor {cursor!r} is not a cursor of this API") from exc
    if owner != job_id or not isinstance(last_key, str):
        raise ValueError(f"cursor {cursor!r} belongs to another job's results")
    return last_key


def page(
    files: list[dict[str, Any]], job_id: str, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The files after ``cursor`` (all from the first when ``None``), at most ``limit``, in key order,
    and the cursor of the next page (``None`` on the last)."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    ordered = sorted(files, key=lambda f: str(f["key"]))
    start = 0
    if cursor is not None:
        keys = [str(f["key"]) for f in ordered]
        start = bisect.bisect_right(keys, decode_cursor(cursor, job_id))
    items = ordered[start : start + limit]
    more = start + limit < len(ordered)
    return items, encode_cursor(job_id, str(items[-1]["key"])) if more and items else None


def manifest_key(job_id: str) -> str:
    """Where a job's manifest is kept, with its files (deleted with them by cancel, purge, retention)."""
    return f"jobs/{job_id}/manifest.json"


def checksummed(
    files: list[dict[str, Any]],
    read: Callable[[str], bytes],
    *,
    cached: Callable[[], bytes] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """``files`` with ``size`` and ``sha256`` each: as the workers recorded them when they stored the
    file, else as a stored manifest (``cached()``, read only when needed) lists them, else read back
    with ``read(key)`` and hashed here. Returns the files and whether any had to be hashed here."""

    def recorded(f: dict[str, Any]) -> bool:
        return isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)

    if all(recorded(f) for f in files):
        return files, False
    known: dict[str, dict[str, Any]] = {}
    if cached is not None:
        try:
            known = {str(m["key"]): m for m in json.loads(cached())["files"] if recorded(m)}
        except (KeyError, ValueError, TypeError):  # none stored yet, or not a manifest: hash the files
            known = {}
    out, computed = [], False
    for f in files:
        if recorded(f):
            out.append(f)
        elif str(f["key"]) in known:
            m = known[str(f["key"])]
            out.append({**f, "size": m["size"], "sha256": m["sha256"]})
        else:
            data = read(str(f["key"]))
            out.append({**f, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            computed = True
    return out, computed


class ResultFile(FileOut):
    """A file with its download link, and its size and checksum where the workers recorded them."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**FILE_EXAMPLE, "size": 48213, "sha256": "9f2c" + "0" * 60}]}
    )

    size: int | None = Field(default=None, description="bytes")
    sha256: str | None = None


class ResultsPage(ResultsOut):
    """``GET /jobs/{id}/results``: one page of the files (key order) with expiring URLs, the biomarkers
    of the subjects on the page, and the cursor of the next page."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job": "3f2a9c0d5e6b4a718293a4b5c6d7e8f9",
                    "files": [FILE_EXAMPLE],
                    "biomarkers": {
                        "HCM_000": {"1.00": {"lv_edv": 110.5, "lv_ef": 75.1, "max_wall_thickness": 26.2}}
                    },
                    "total": 1,
                    "next": None,
                }
            ]
        }
    )

    files: list[ResultFile]  # type: ignore[assignment]
    total: int = Field(description="files of the job in all pages")
    next: str | None = Field(
        default=None, description="pass as ?cursor= for the next page; null on the last page"
    )


class ManifestFile(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"key": FILE_EXAMPLE["key"], "size": 48213, "sha256": "9f2c" + "0" * 60, "subject": "HCM_000",
                 "kind": "label", "severity": "1.00", "phase": "ED"}
            ]
        }
    )  # fmt: skip

    key: str
    size: int
    sha256: str
    subject: str | None = None
    kind: str
    severity: str | None = None
    phase: str | None = None


class Manifest(BaseModel):
    """``GET /jobs/{id}/manifest``: every stored file of a job with its size and SHA-256."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job": "3f2a9c0d5e6b4a718293a4b5c6d7e8f9",
                    "request": {"pathology": "HCM", "n": 5},
                    "count": 1,
                    "total_bytes": 48213,
                    "files": [ManifestFile.model_config["json_schema_extra"]["examples"][0]],  # type: ignore[index]
                }
            ]
        }
    )

    job: str
    request: dict[str, Any]
    count: int
    total_bytes: int
    files: list[ManifestFile]
    biomarker_summary: dict[str, Any] | None = Field(
        default=None, description="per severity and biomarker: n, mean, sd, min, max (where recorded)"
    )
