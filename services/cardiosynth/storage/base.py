"""The object-store interface and what every implementation shares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

# Keys are relative, slash-separated, without empty, "." or ".." parts: the same key names the same
# object in S3 and in a local directory, and can never escape the local root.
_KEY_PART = re.compile(r"^[A-Za-z0-9._=-]+$")


class StorageError(RuntimeError):
    """The store could not be reached or refused the operation (a transient or configuration error)."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise ``ValueError`` naming it."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") or not _KEY_PART.match(p) for p in parts):
        raise ValueError(f"invalid object key {key!r}: use relative a/b/c names of letters, digits and ._=-")
    return key


def content_type(key: str) -> str:
    """The Content-Type to store ``key`` with.

    ``.nii.gz`` is ``application/gzip`` and is never given ``Content-Encoding: gzip``: with that header,
    browsers and HTTP clients decompress on the fly and save a file that is not what its name says.
    """
    lowered = key.lower()
    if lowered.endswith(".gz"):
        return "application/gzip"
    if lowered.endswith(".nii"):
        return "application/octet-stream"
    if lowered.endswith(".json"):
        return "application/json"
    if lowered.endswith(".tar"):
        return "application/x-tar"
    if lowered.endswith(".png"):
        return "image/png"
    if lowered.endswith(".npz"):
        return "application/octet-stream"
    if lowered.endswith((".md", ".txt")):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


@runtime_checkable
class ObjectStore(Protocol):
    """What the workers and the gateway need of an object store."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key`` (replacing any object there; readers see old or new, never half)."""

    def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key``, streamed (never read whole into memory: a job's
        archive can be gigabytes); readers see the old object or the whole new one."""

    def get_bytes(self, key: str) -> bytes:
        """The object at ``key``; ``KeyError`` when there is none."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is absent."""

    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""

    def download_url(self, key: str, expires_s: int) -> str:
        """A URL the user's machine can GET ``key`` from until ``expires_s`` seconds from now."""

    def ping(self) -> None:
        """Raise :class:`StorageError` when the store is not usable."""
