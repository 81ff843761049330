"""A local directory as object store (the embedded mode), with signed, expiring download links.

Objects are files under ``root``; writes go to a temporary file and are renamed into place.
Download URLs point at the gateway (``base_url``), which checks the HMAC signature and the expiry
with :meth:`LocalStore.verify` before serving the file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from cardiosynth.storage.base import StorageError, check_key


class LocalStore:
    """Object store over a directory."""

    def __init__(self, root: Path, *, signing_key: bytes, base_url: str = "http://127.0.0.1:8000") -> None:
        if len(signing_key) < 16:
            raise ValueError("signing_key must be at least 16 bytes")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._key = signing_key
        self.base_url = base_url.rstrip("/")

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle, Path(path).open("rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)  # renamed into place whole: never half an object under ``key``
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, key: str) -> bytes:
        target = self.path(key)
        if not target.is_file():
            raise KeyError(key)
        return target.read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list_keys(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        if prefix:
            check_key(prefix.rstrip("/"))
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def download_url(self, key: str, expires_s: int) -> str:
        check_key(key)
        if expires_s < 1:
            raise ValueError(f"expires_s must be positive, got {expires_s}")
        expires = int(time.time()) + expires_s
        return (
            f"{self.base_url}/files/{quote(key)}?expires={expires}&signature={self._signature(key, expires)}"
        )

    def verify(self, key: str, expires: int, signature: str, *, now: float | None = None) -> bool:
        """True when ``signature`` is this store's for ``key`` and ``expires`` has not passed."""
        if (now if now is not None else time.time()) > expires:
            return False
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a link is anyone's input.
        return hmac.compare_digest(
            self._signature(key, expires).encode(), signature.encode("utf-8", "replace")
        )

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage directory {self.root} is not writable")
